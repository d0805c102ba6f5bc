// Continuous batching at the engine level (no HTTP): the row-exact pass size per backend, 16
// sequences admitted at different steps giving exactly their lone `generate` tokens (greedy and
// seeded sampling, on every backend), chunked prefill interleaved with decode steps, the KV block
// pool (admission, first come first served, deadlines, cancel freeing blocks at once, the prefix
// cache living in the free blocks), prefix-cache hits per sequence, and speculative sequences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import '../backend/index.js';
import { backendsUnderTest, withBackend } from '../backend/testing-node.js';
import { noGrad } from '../autograd/tape.js';
import { Tensor } from '../autograd/tensor.js';
import { loadModel } from '../model/load-node.js';
import { makeConfig, presets } from '../model/config.js';
import { forward, initParams, KVCache } from '../model/deepseek.js';
import { RowDecoder } from '../model/decode.js';
import { ENGINE_MAX_ROWS } from '../model/decode-engine.js';
import { generate, type GenerateOptions, type Model } from './generate.js';
import { Scheduler, KvFullError, rowExactLimit, type Sequence, type SequenceOptions } from './scheduler.js';
import { KvBlockPool } from './kv-blocks.js';
import { PrefixCache, prefixRowWidth } from './prefix-cache.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(REF);
let tiny: Model | null = null;
const tinyModel = async (): Promise<Model> => (tiny ??= await loadModel(REF));

/** Deterministic prompt i of length n over vocab V. */
const promptOf = (i: number, n: number, V: number): number[] => Array.from({ length: n }, (_, j) => (j * 37 + i * 101 + 11) % V);

/** Steps the scheduler until it is idle (bounded). */
function drain(s: Scheduler, limit = 10_000): number {
  let steps = 0;
  while (s.busy) { s.step(); if (++steps > limit) throw new Error('scheduler did not finish'); }
  return steps;
}

test('rowExactLimit: a decode pass of that many rows computes every row bit-identically to the row alone (with and without the native engine)', async () => {
  // Hidden 256 puts the products past the small-matrix sizes where any kernel order might agree by chance.
  const cfg = makeConfig({ ...presets.small!, hiddenSize: 256, intermediateSize: 512, moeIntermediateSize: 128, numHiddenLayers: 2, vocabSize: 512 });
  const params = initParams(cfg, { seed: 5 });
  const C = 24;
  for (const be of await backendsUnderTest()) {
    await withBackend(be, () => noGrad(() => {
      const caches = Array.from({ length: C }, (_, i) => {
        const c = new KVCache(cfg, 1, 48, 'absorb');
        forward(params, cfg, Tensor.ints(promptOf(i, 3 + i, cfg.vocabSize), [1, 3 + i]), { cache: c, startPos: 0 });
        return c;
      });
      const toks = caches.map((_, i) => (i * 13 + 5) % cfg.vocabSize);
      for (const engine of [false, true]) {
        const dec = new RowDecoder(params, cfg, { engine });
        if (engine && be === 'native') assert.equal(dec.engineRows(), ENGINE_MAX_ROWS, 'f32 weights run on the native engine');
        if (be !== 'native') assert.equal(dec.engineRows(), 0, `${be} has no decode engine`);
        const limit = rowExactLimit(be, dec.engineRows());
        const N = Math.min(C, limit);
        if (engine && be === 'native') assert.equal(N, C);
        const alone = caches.map((c, i) => dec.main([toks[i]!], [{ cache: c, start: c.length, rows: 1 }]).logits.slice());
        const both = dec.main(toks.slice(0, N), caches.slice(0, N).map((c) => ({ cache: c, start: c.length, rows: 1 }))).logits;
        for (let i = 0; i < N; i++) {
          const row = both.subarray(i * cfg.vocabSize, (i + 1) * cfg.vocabSize);
          assert.ok(row.every((x, j) => Object.is(x, alone[i]![j])), `${be}${engine ? ' engine' : ''}: row ${i} of a ${N}-row pass differs from the row alone`);
        }
      }
    }));
  }
});

/** Per-sequence options: greedy for even i, seeded sampling for odd i; varied lengths. */
function seqOpts(i: number, V: number): SequenceOptions {
  const base: SequenceOptions = { maxTokens: 4 + ((i * 7) % 23), vocabLimit: V };
  return i % 2 === 0 ? { ...base, greedy: true } : { ...base, temperature: 0.9, topK: 40, topP: 0.95, seed: 100 + i };
}

test('16 sequences admitted at different steps give exactly their lone generate() tokens, on every backend', { skip }, async () => {
  const model = await tinyModel();
  const V = model.cfg.vocabSize;
  const prompts = Array.from({ length: 16 }, (_, i) => promptOf(i, 2 + ((i * 11) % 37), V));
  for (const be of await backendsUnderTest()) {
    await withBackend(be, () => {
      const want = prompts.map((p, i) => generate(model, p, seqOpts(i, V)));
      const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 24 });
      const s = new Scheduler(model, { maxBatch: 16, pool });
      const seqs: Sequence[] = [];
      for (let i = 0; i < 10; i++) seqs.push(s.submit(prompts[i]!, seqOpts(i, V)));
      for (let k = 0; k < 3; k++) s.step();
      for (let i = 10; i < 16; i++) seqs.push(s.submit(prompts[i]!, seqOpts(i, V)));
      drain(s);
      seqs.forEach((q, i) => {
        const r = q.gen!.result();
        assert.deepEqual(r.tokens, want[i]!.tokens, `${be}: sequence ${i} (${i % 2 ? 'sampled' : 'greedy'}) differs from its lone run`);
        assert.equal(r.finishReason, want[i]!.finishReason);
      });
      const st = s.stats();
      assert.ok(st.peakBatch >= 14, `${be}: rows decoded in one step reached ${st.peakBatch}`);
      // Native: the engine's rows per pass (row-exact at any count), so one pass per step.
      assert.equal(st.rowsPerPass, be === 'native' ? ENGINE_MAX_ROWS : be === 'ts' ? Infinity : 1);
      assert.equal(st.generatedTokens, want.reduce((n, g) => n + g.tokens.length, 0));
      assert.equal(pool.stats().allocatedBlocks, 0, 'every block returned');
      assert.equal(pool.stats().reservedBlocks, 0);
    });
  }
});

test('chunked prefill: a long prompt is computed in chunks while a running stream gets a token every step', { skip }, async () => {
  const model = await tinyModel();
  const V = model.cfg.vocabSize;
  const short = promptOf(1, 5, V), long = promptOf(2, 200, V);
  const opts: SequenceOptions = { greedy: true, maxTokens: 30, vocabLimit: V };
  const s = new Scheduler(model, { maxBatch: 4, prefillTokens: 64, prefillChunk: 64 });
  const a = s.submit(short, opts);
  s.step(); s.step();
  const b = s.submit(long, { ...opts, maxTokens: 5 });
  const seen: Array<[number, number]> = [];
  while (b.state !== 'done' && (b.state === 'waiting' || b.gen!.prefilling)) { const t = a.tokens; s.step(); seen.push([t, a.tokens]); }
  assert.ok(seen.length >= 4, `the 200-token prompt took ${seen.length} steps of 64 positions`);
  assert.ok(seen.every(([x, y]) => y === x + 1), `the running stream got one token per step during the prefill: ${JSON.stringify(seen)}`);
  drain(s);
  assert.deepEqual(a.gen!.tokens, generate(model, short, opts).tokens);
  assert.deepEqual(b.gen!.tokens, generate(model, long, { ...opts, maxTokens: 5, prefillChunk: 64 } as GenerateOptions).tokens);
  assert.equal(s.stats().prefillTokens, 5 + 200);
});

test('KV pool: admission by reservation, first come first served, deadlines, cancel frees blocks at once', { skip }, async () => {
  const model = await tinyModel();
  const V = model.cfg.vocabSize;
  const probe = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 20, blockTokens: 8 });
  // A pool of 12 blocks of 8 positions: a 20-token prompt with 20 new tokens needs 42 positions = 6 blocks.
  const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 12 * probe.blockBytes, blockTokens: 8 });
  assert.equal(pool.totalBlocks, 12);
  const s = new Scheduler(model, { maxBatch: 8, pool });
  const opts: SequenceOptions = { greedy: true, maxTokens: 20, vocabLimit: V };
  assert.throws(() => s.submit(promptOf(0, 100, V), opts), /needs 16 KV blocks; the pool has 12/);
  const a = s.submit(promptOf(1, 20, V), opts), b = s.submit(promptOf(2, 20, V), opts);
  const big = s.submit(promptOf(3, 20, V), { ...opts, maxTokens: 40 }); // 8 blocks: waits for both
  const small = s.submit(promptOf(4, 4, V), { ...opts, maxTokens: 4 });  // fits, but comes after `big`
  s.step();
  assert.deepEqual([a.state, b.state, big.state, small.state], ['running', 'running', 'waiting', 'waiting']);
  assert.equal(pool.stats().reservedBlocks, 12);
  assert.ok(pool.stats().allocatedBlocks <= 12 && pool.stats().allocatedBlocks >= 6, 'blocks allocated as the prompts need them');
  assert.throws(() => s.submit(promptOf(5, 4, V), { ...opts, maxTokens: 4 }, 0), KvFullError, 'no waiting allowed: refused at once');
  // Cancel frees a's blocks before any further step; big still waits (b holds 6, big needs 8).
  const before = pool.stats().allocatedBlocks;
  s.cancel(a);
  assert.equal(a.state, 'done');
  assert.equal(pool.stats().reservedBlocks, 6);
  assert.ok(pool.stats().allocatedBlocks < before);
  assert.equal((await a.finished).finishReason, 'cancelled');
  s.step();
  assert.equal(big.state, 'waiting');
  assert.equal(small.state, 'waiting', 'first come, first served: the small request does not pass the big one');
  drain(s);
  for (const [q, i, n] of [[b, 2, 20], [big, 3, 40], [small, 4, 4]] as const) {
    assert.deepEqual((await q.finished).tokens, generate(model, promptOf(i, q.prompt.length, V), { ...opts, maxTokens: n }).tokens);
  }
  assert.deepEqual(pool.stats().reservedBlocks + pool.stats().allocatedBlocks, 0);
  // A request that waits past its deadline for blocks fails with KvFullError; the engine goes on.
  const c = s.submit(promptOf(6, 20, V), { ...opts, maxTokens: 60 });
  const late = s.submit(promptOf(7, 20, V), opts, 1);
  s.step();
  await new Promise((r) => setTimeout(r, 5));
  s.step();
  await assert.rejects(late.finished, KvFullError);
  drain(s);
  assert.equal((await c.finished).tokens.length, 60);
  assert.equal(s.stats().rejected, 2);
});

test('KV pool: the prefix cache lives in the blocks sequences do not hold, and is evicted as they grow', { skip }, async () => {
  const model = await tinyModel();
  const V = model.cfg.vocabSize;
  const probe = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 20, blockTokens: 16 });
  const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 20 * probe.blockBytes, blockTokens: 16 });
  const cache = new PrefixCache(prefixRowWidth(model.cfg), 1 << 30);
  pool.attachPrefixCache(cache, 1 << 30);
  const s = new Scheduler(model, { maxBatch: 4, pool, prefixCache: cache });
  const opts: SequenceOptions = { greedy: true, maxTokens: 8, vocabLimit: V };
  // Fill the prefix cache with 4 prompts of 60 tokens (4 blocks each).
  for (let i = 0; i < 4; i++) { s.submit(promptOf(10 + i, 60, V), opts); drain(s); }
  assert.ok(pool.stats().prefixBlocks >= 15, `prefix blocks ${pool.stats().prefixBlocks}`);
  // A sequence that grows to 200 positions (13 blocks) evicts least-recently-used prefixes as it grows.
  const big = s.submit(promptOf(20, 40, V), { ...opts, maxTokens: 160 });
  let worst = 0;
  while (s.busy) { s.step(); const st = pool.stats(); worst = Math.max(worst, st.allocatedBlocks + st.prefixBlocks); }
  assert.ok(worst <= pool.totalBlocks, `allocated + prefix blocks reached ${worst} of ${pool.totalBlocks}`);
  assert.ok(cache.stats().evictions > 0, 'prefix entries were evicted for the growing sequence');
  assert.deepEqual((await big.finished).tokens, generate(model, promptOf(20, 40, V), { ...opts, maxTokens: 160 }).tokens);
  // A repeated prompt still hits whatever stayed cached, and gives the same tokens.
  const again = s.submit(promptOf(20, 40, V), opts);
  drain(s);
  const r = await again.finished;
  assert.equal(r.cachedTokens, 39);
  assert.deepEqual(r.tokens, generate(model, promptOf(20, 40, V), opts).tokens);
});

test('speculative sequences run in the scheduler (their own 2-row steps) with plain decoding\'s greedy tokens', { skip }, async () => {
  const model = await tinyModel();
  const V = model.cfg.vocabSize;
  const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 24, extraLayers: 1 });
  const cache = new PrefixCache(prefixRowWidth(model.cfg, 1), 1 << 24);
  const s = new Scheduler(model, { maxBatch: 8, pool, prefixCache: cache, speculative: true });
  const prompts = Array.from({ length: 6 }, (_, i) => promptOf(i, 5 + i * 3, V));
  const seqs = prompts.map((p) => s.submit(p, { greedy: true, maxTokens: 12, vocabLimit: V }));
  drain(s);
  for (let i = 0; i < prompts.length; i++) {
    const r = await seqs[i]!.finished;
    assert.ok(r.speculative && r.speculative.proposed > 0, 'the sequence decoded speculatively');
    assert.deepEqual(r.tokens, generate(model, prompts[i]!, { greedy: true, maxTokens: 12, vocabLimit: V }).tokens);
  }
});
