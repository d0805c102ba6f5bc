// Prompt prefill on the native decode engine (Generation.rowPrefill) and its rows mixed into the
// scheduler's decode passes: a prompt prefilled in chunks of any size, placed anywhere in passes
// shared with other sequences' prompt and decode rows, writes the same cache rows and gives the
// same last-row logits as one pass over the whole prompt, bit for bit; that pass agrees with
// `forward`'s prefill to float32 rounding (relative worst error ≤ 1e-4); a Generation's tokens do
// not depend on its prefill chunk; 16 requests whose prompts share passes with decode rows give
// exactly their lone tokens; engine prefill is used only where it should be. Native only where
// the engine is needed (skipped with the reason without the addon).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import '../backend/index.js';
import { backendsUnderTest, withBackend, whyNotUnderTest } from '../backend/testing-node.js';
import { noGrad } from '../autograd/tape.js';
import { Tensor } from '../autograd/tensor.js';
import { maxAbsDiff } from '../ops/compare.js';
import { loadModel } from '../model/load-node.js';
import { makeConfig, presets } from '../model/config.js';
import { forward, initParams, KVCache } from '../model/deepseek.js';
import { RowDecoder, type Segment } from '../model/decode.js';
import { ENGINE_MAX_ROWS } from '../model/decode-engine.js';
import { Generation, generate, type Model } from './generate.js';
import { Scheduler, type Sequence, type SequenceOptions } from './scheduler.js';
import { KvBlockPool } from './kv-blocks.js';
import { PrefixCache, prefixRowWidth } from './prefix-cache.js';
import { withQ8Weights } from './q8-node.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const hasRef = existsSync(REF);
const hasNative = async (): Promise<boolean> => (await backendsUnderTest()).includes('native');
const promptOf = (i: number, n: number, V: number): number[] => Array.from({ length: n }, (_, j) => (j * 37 + i * 101 + 11) % V);
const rel = (a: Float32Array, b: Float32Array): number => maxAbsDiff(a, b) / Math.max(1e-30, maxAbsDiff(b, new Float32Array(b.length)));
const same = (a: Float32Array, b: Float32Array): boolean => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
/** Engine prefill vs forward prefill: float32 rounding of different summation orders. */
const FORWARD_TOL = 1e-4;

async function models(): Promise<Array<[string, Model]>> {
  const out: Array<[string, Model]> = [];
  if (hasRef) out.push(['tiny-dsv3', await loadModel(REF)]);
  // Hidden 256 puts the products past the small-matrix sizes where any order might agree by chance.
  const cfg = makeConfig({ ...presets.small!, hiddenSize: 256, intermediateSize: 512, moeIntermediateSize: 128, numHiddenLayers: 2, vocabSize: 512 });
  out.push(['small hidden 256', { cfg, params: initParams(cfg, { seed: 7 }) }]);
  return out;
}

/** Rows [0, n) of every main layer of a cache, concatenated. */
function cacheRows(c: KVCache, layers: number, n: number): Float32Array {
  const D = c.layers[0]!.a.length / c.capacity;
  const out = new Float32Array(layers * n * D);
  for (let l = 0; l < layers; l++) out.set(c.layers[l]!.a.subarray(0, n * D), l * n * D);
  return out;
}

test('engine prefill: any chunking, anywhere in passes shared with other rows, gives the one-pass cache rows and logits bit for bit, and forward\'s within 1e-4', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const list = await models();
  await withBackend('native', () => noGrad(() => {
    for (const [name, m] of list) {
      const { cfg } = m, V = cfg.vocabSize, L = cfg.numHiddenLayers, P = 37;
      const prompt = promptOf(3, P, V), other = promptOf(9, 23, V);
      const dec = new RowDecoder(m.params, cfg);
      assert.ok(dec.usesEngine(P), `${name}: a ${P}-row pass runs on the engine`);
      const one = new KVCache(cfg, 1, 64, 'absorb');
      const oneLogits = dec.main(prompt, [{ cache: one, start: 0, rows: P }], P - 1).logits.slice();
      const oneRows = cacheRows(one, L, P);
      // Against forward's prefill (GEMM products, the attention kernel): float32 rounding only.
      const fw = new KVCache(cfg, 1, 64, 'absorb');
      const f = forward(m.params, cfg, Tensor.ints(prompt, [1, P]), { cache: fw });
      const fLogits = f.logits.f32.slice((P - 1) * V);
      assert.ok(rel(oneRows, cacheRows(fw, L, P)) < FORWARD_TOL, `${name}: cache rows vs forward ${rel(oneRows, cacheRows(fw, L, P))}`);
      assert.ok(rel(oneLogits, fLogits) < FORWARD_TOL, `${name}: last logits vs forward ${rel(oneLogits, fLogits)}`);
      const chunkings = [[1], [2], [3], [5], [8], [16], [36], [P], [7, 1, 12, 2, 30], [4, 19, 1, 1, 9]];
      chunkings.forEach((sizes, ci) => {
        // Companions in every pass: a decoding sequence (one row with logits) and another prompt (4 rows a pass, no logits).
        const c = new KVCache(cfg, 1, 64, 'absorb'), q = new KVCache(cfg, 1, 64, 'absorb'), d = new KVCache(cfg, 1, 96, 'absorb');
        forward(m.params, cfg, Tensor.ints(other.slice(0, 10), [1, 10]), { cache: d });
        let pos = 0, qpos = 0, k = 0, got: Float32Array | null = null;
        while (pos < P) {
          const n = Math.min(P - pos, sizes[k % sizes.length]!), last = pos + n === P, keep = last ? n - 1 : n;
          const head: Array<[number[], Segment]> = [], tail: Array<[number[], Segment]> = [];
          if (keep > 0) head.push([prompt.slice(pos, pos + keep), { cache: c, start: pos, rows: keep }]);
          if (qpos + 4 <= other.length) { head.push([other.slice(qpos, qpos + 4), { cache: q, start: qpos, rows: 4 }]); qpos += 4; }
          if (k % 2 === 1) head.reverse(); // the prompt's rows first or after the other prompt's
          tail.push([[other[(d.length + k) % V]!], { cache: d, start: d.length, rows: 1 }]);
          if (last) tail.push([[prompt[P - 1]!], { cache: c, start: P - 1, rows: 1 }]);
          if (k % 3 === 2) tail.reverse(); // the prompt-ending row before or after the decode row
          const rows = [...head, ...tail], from = head.reduce((s, [tk]) => s + tk.length, 0);
          const logits = dec.main(rows.flatMap(([tk]) => tk), rows.map(([, s]) => s), from).logits;
          if (last) { const at = tail.findIndex(([, s]) => s.cache === c); got = logits.slice(at * V, (at + 1) * V); }
          d.length++;
          pos += n; k++;
        }
        assert.ok(same(cacheRows(c, L, P), oneRows), `${name}: chunking ${ci} (${sizes.join(',')}): cache rows differ from the one-pass prefill`);
        assert.ok(got && same(got, oneLogits), `${name}: chunking ${ci} (${sizes.join(',')}): last logits differ from the one-pass prefill`);
      });
    }
  }));
});

test('Generation.rowPrefill: engine prefill where the engine runs f32 weights, and its tokens do not depend on the prefill chunk', async (t) => {
  if (!hasRef) { t.skip('no reference model in ../shared/reference'); return; }
  const model = await loadModel(REF);
  const V = model.cfg.vocabSize;
  for (const be of await backendsUnderTest()) {
    await withBackend(be, () => {
      const g = new Generation(model, promptOf(1, 30, V), { greedy: true, maxTokens: 4 });
      assert.equal(g.rowPrefill, be === 'native', `${be}: engine prefill only on native`);
      if (be !== 'native') { assert.throws(() => g.prefillRows(8), /prefills with forward/); return; }
      // Not for speculative generations (MTP prefill needs forward's hidden) nor an inference linear.
      assert.equal(new Generation(model, promptOf(1, 30, V), { greedy: true, maxTokens: 4, speculative: true }).rowPrefill, false);
      assert.equal(new Generation(withQ8Weights(model).model, promptOf(1, 30, V), { greedy: true, maxTokens: 4 }).rowPrefill, false);
      for (const i of [0, 1, 2]) {
        const prompt = promptOf(i, 29 + 17 * i, V);
        const opts = i === 1 ? { temperature: 0.8, topK: 30, seed: 5, maxTokens: 12, vocabLimit: V } : { greedy: true, maxTokens: 12, vocabLimit: V };
        const want = generate(model, prompt, opts);
        for (const chunk of [1, 3, 16, 64]) {
          assert.deepEqual(generate(model, prompt, { ...opts, prefillChunk: chunk }).tokens, want.tokens, `prompt ${i}, prefill chunk ${chunk}`);
        }
      }
    });
  }
});

test('16 greedy requests whose prompts share passes with decode rows give exactly their lone tokens (native: engine rows per pass)', { skip: !hasRef }, async () => {
  const model = await loadModel(REF);
  const V = model.cfg.vocabSize;
  const prompts = Array.from({ length: 16 }, (_, i) => promptOf(i + 40, 3 + ((i * 13) % 41), V));
  const opts = (i: number): SequenceOptions => ({ greedy: true, maxTokens: 6 + ((i * 5) % 17), vocabLimit: V });
  for (const be of await backendsUnderTest()) {
    await withBackend(be, () => {
      const want = prompts.map((p, i) => generate(model, p, opts(i)).tokens);
      const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 24 });
      const cache = new PrefixCache(prefixRowWidth(model.cfg), 1 << 24);
      // 11 prompt positions a step: prompts split at odd places, several in one pass with decode rows.
      const s = new Scheduler(model, { maxBatch: 16, pool, prefixCache: cache, prefillTokens: 11 });
      const seqs: Sequence[] = [];
      for (let i = 0; i < 16; i++) {
        seqs.push(s.submit(prompts[i]!, opts(i)));
        if (i % 3 === 2) s.step();
      }
      // Native: a repeat of prompt 0 with one more token, a prefix-cache hit whose remaining row is
      // prefilled in a shared pass (forward prefill is not chunk-exact on every backend).
      const again = be === 'native' ? s.submit([...prompts[0]!, 5], opts(0)) : null;
      let steps = 0;
      while (s.busy) { s.step(); if (++steps > 10_000) throw new Error('scheduler did not finish'); }
      seqs.forEach((q, i) => assert.deepEqual(q.gen!.tokens, want[i], `${be}: request ${i} differs from its lone run`));
      if (again) {
        assert.deepEqual(again.gen!.tokens, generate(model, [...prompts[0]!, 5], opts(0)).tokens, `${be}: the prefix-cache hit`);
        assert.equal(again.gen!.result().cachedTokens, prompts[0]!.length);
      }
      const st = s.stats();
      assert.equal(st.prefillTokens, prompts.reduce((n, p) => n + p.length, 0) + (again ? 1 : 0));
      if (be === 'native') {
        assert.equal(st.rowsPerPass, ENGINE_MAX_ROWS);
        assert.ok(st.mixedPasses >= 5, `native: ${st.mixedPasses} passes carried prompt and decode rows together`);
        assert.ok(st.decodePasses < st.steps + 2, `native: one pass per step (${st.decodePasses} passes, ${st.steps} steps)`);
      } else assert.equal(st.mixedPasses, 0, `${be}: prompts prefill with forward`);
    });
  }
});
