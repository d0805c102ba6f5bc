import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchSampler, packDocuments, splitDocuments, unigramEntropy } from './data.js';

test('packDocuments: eos after every document', () => {
  assert.deepEqual(Array.from(packDocuments([[5, 6], [], [7]], 0)), [5, 6, 0, 0, 7, 0]);
  assert.equal(packDocuments([], 3).length, 0);
  assert.throws(() => packDocuments([[1]], -1), /eosId/);
});

test('splitDocuments: by document, deterministic, order kept', () => {
  const docs = Array.from({ length: 100 }, (_, i) => i);
  const a = splitDocuments(docs, 0.1, 7);
  assert.equal(a.val.length, 10);
  assert.equal(a.train.length, 90);
  assert.deepEqual([...a.train, ...a.val].sort((x, y) => x - y), docs);
  assert.deepEqual(splitDocuments(docs, 0.1, 7), a);
  assert.notDeepEqual(splitDocuments(docs, 0.1, 8).val, a.val);
  assert.deepEqual(a.val, [...a.val].sort((x, y) => x - y));
  assert.deepEqual(splitDocuments(['only'], 0.1, 1), { train: ['only'], val: [] });
  assert.equal(splitDocuments(['a', 'b'], 0.01, 1).val.length, 1);
  assert.throws(() => splitDocuments(docs, 1, 0), /valFraction/);
});

test('BatchSampler: targets are inputs shifted by one, windows from the stream', () => {
  const tokens = Int32Array.from({ length: 1000 }, (_, i) => i);
  const s = new BatchSampler(tokens, 4, 16, 1);
  const { inputs, targets } = s.next();
  assert.equal(inputs.length, 64);
  for (let b = 0; b < 4; b++) {
    const start = inputs[b * 16]!;
    for (let t = 0; t < 16; t++) {
      assert.equal(inputs[b * 16 + t], start + t);
      assert.equal(targets[b * 16 + t], start + t + 1);
    }
  }
});

test('BatchSampler: one epoch covers every window once', () => {
  const tokens = Int32Array.from({ length: 16 * 10 + 1 }, (_, i) => i);
  const s = new BatchSampler(tokens, 1, 16, 3);
  assert.equal(s.windowsPerEpoch, 9); // a start shift in [0, 16) leaves room for 9 windows
  const starts = new Set<number>();
  let shift = -1;
  for (let i = 0; i < 9; i++) {
    const st = s.next().inputs[0]!;
    if (shift < 0) shift = st % 16;
    assert.equal(st % 16, shift, 'one shift per epoch');
    starts.add(st);
  }
  assert.equal(starts.size, 9);
});

test('BatchSampler: deterministic and resumable', () => {
  const tokens = Int32Array.from({ length: 5000 }, (_, i) => (i * 7919) % 503);
  const a = new BatchSampler(tokens, 3, 32, 42);
  for (let i = 0; i < 70; i++) a.next(); // crosses an epoch boundary (156 windows / 3 per batch)
  const saved = JSON.parse(JSON.stringify(a.state()));
  assert.deepEqual(saved, { position: 70, seed: 42 });
  const expected = [a.next(), a.next()];
  const b = new BatchSampler(tokens, 3, 32, 999);
  b.restore(saved);
  assert.deepEqual([b.next(), b.next()], expected);
  const c = new BatchSampler(tokens, 3, 32, 42);
  const d = new BatchSampler(tokens, 3, 32, 43);
  assert.deepEqual(c.next(), new BatchSampler(tokens, 3, 32, 42).next());
  assert.notDeepEqual(c.next().inputs, d.next().inputs);
  assert.throws(() => new BatchSampler(new Int32Array(10), 1, 10, 0), /cannot fill one window/);
});

test('unigramEntropy: nats of the token distribution', () => {
  assert.equal(unigramEntropy(Int32Array.from([1, 1, 1]), 4), 0);
  assert.ok(Math.abs(unigramEntropy(Int32Array.from([0, 1, 2, 3]), 4) - Math.log(4)) < 1e-12);
  assert.ok(Math.abs(unigramEntropy(Int32Array.from([0, 0, 0, 1]), 2) - (-(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)))) < 1e-12);
  assert.throws(() => unigramEntropy(Int32Array.from([5]), 4), /outside/);
});
