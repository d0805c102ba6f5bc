// The model benchmark suites: a `--quick --json` train run on the tiny config without the peer
// has the documented row shape and positive numbers; and, only where /usr/bin/python3 imports
// torch, the PyTorch peer computes the same logits as Frugal on reference/tiny-dsv3.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { run as runTrain } from '../bench/train.js';
import { Peer, peerUnavailable, lcgTokens, stats, tempModelDir, type BenchRow } from '../bench/common.js';
import { checkPeer, CHECK_TOLERANCE } from '../bench/harness.js';
import { loadModel } from '../src/model/load-node.js';
import { disposeBackends, useBackend } from '../src/backend/setup-node.js';

after(() => disposeBackends());

async function captureJson(fn: () => Promise<number>): Promise<BenchRow[]> {
  const lines: string[] = [];
  const log = console.log, err = console.error;
  console.log = (s: unknown) => { lines.push(String(s)); };
  console.error = () => {};
  let rc: number;
  try { rc = await fn(); } finally { console.log = log; console.error = err; }
  assert.equal(rc, 0);
  assert.equal(lines.length, 1, 'with --json the suite prints exactly one line');
  return JSON.parse(lines[0]!) as BenchRow[];
}

test('bench train --quick --json on tiny (no peer): rows have the documented shape and positive speeds', async () => {
  const rows = await captureJson(() => runTrain(['--config', 'tiny', '--quick', '--json', '--no-peer', '--threads', '1', '--reps', '2', '--backend', 'ts']));
  assert.equal(rows.length, 2);
  for (const r of rows) {
    for (const k of ['suite', 'config', 'threads', 'unit', 'frugal', 'pytorch', 'ratio'] as const) assert.ok(k in r, `row lacks ${k}`);
    assert.equal(r.suite, 'train');
    assert.equal(r.config, 'tiny');
    assert.equal(r.threads, 1);
    assert.equal(r.unit, 'tokens/s');
    assert.ok(r.frugal > 0 && Number.isFinite(r.frugal), `frugal ${r.frugal}`);
    assert.ok(r.frugalRange[0] <= r.frugal && r.frugal <= r.frugalRange[1]);
    assert.equal(r.pytorch, null);
    assert.equal(r.ratio, null);
  }
});

test('helpers: LCG tokens match the peer\'s stream; stats median/min/max', () => {
  // First values of s = s*1664525 + 1013904223 mod 2^32 from seed 1: 1015568748, 1586005467.
  assert.deepEqual([...lcgTokens(1, 2, 2 ** 31)], [1015568748 % 2 ** 31, 1586005467 % 2 ** 31]);
  assert.deepEqual(stats([3, 1, 2, 10]), { median: 2.5, min: 1, max: 10, n: 4 });
});

const why = peerUnavailable();
test('PyTorch peer computes Frugal\'s logits on reference/tiny-dsv3 (max abs diff < 1e-4)', { skip: why ?? false }, async () => {
  await useBackend('ts');
  const dir = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
  const m = await loadModel(dir);
  const peer = new Peer(dir, 1);
  const tmp = tempModelDir();
  try {
    const c = await checkPeer(peer, m.params, m.cfg, tmp.dir, 2, 12, true);
    assert.ok(c.maxAbsDiff < CHECK_TOLERANCE, `full-sequence logits differ by ${c.maxAbsDiff}`);
    assert.ok(c.maxAbsDiffDecode! < CHECK_TOLERANCE, `cached decode logits differ by ${c.maxAbsDiffDecode}`);
    assert.ok(c.maxAbsLogit > 0.1, 'the logits are not trivially zero');
  } finally {
    await peer.close();
    tmp.remove();
  }
});
