// The native decode engine (native/src/decode_*.cc through model/decode-engine.ts) against the
// TypeScript path of RowDecoder on the same backend: main and MTP passes of the reference models
// and of configs that exercise q LoRA / no q LoRA, YaRN, group-limited and greedy routing, 8 heads;
// f32, bf16 and Q8_0 weights; cache rows; row exactness (2 rows, several sequences in one pass,
// 1 vs 2 threads: bit for bit); greedy speculative decoding equal to plain decoding on the engine;
// the one-matrix product (engineLinear) against the reference linears; and bad input rejected with
// errors that name it. Skipped (with the reason) without the addon.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import '../backend/index.js';
import { noGrad } from '../autograd/tape.js';
import { Tensor } from '../autograd/tensor.js';
import { kernel, kernelCounts, resetKernelCounts } from '../backend/registry.js';
import { backendsUnderTest, withBackend, whyNotUnderTest } from '../backend/testing-node.js';
import { loadNativeBackend } from '../backend/native-node.js';
import { maxAbsDiff } from '../ops/compare.js';
import { loadModel } from './load-node.js';
import { makeConfig, presets, type DeepSeekConfig } from './config.js';
import { initParams, KVCache, type ModelParams } from './deepseek.js';
import { RowDecoder, type RowsLinear } from './decode.js';
import { engineArrays, engineLinear, f32EngineWeights } from './decode-engine.js';
import * as op from '../ops/index.js';
import { bf16Linear } from '../infer/bf16-node.js';
import { DEFAULT_DRAFT_TOKENS, generate, Generation, MAX_DRAFT_TOKENS, type Model } from '../infer/generate.js';
import { withBf16Weights } from '../infer/bf16-node.js';
import { q8Linear, withQ8Drafts, withQ8Weights } from '../infer/q8-node.js';
import { copyCache, prefilled } from './cache-testing.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const REFS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn'].filter((d) => existsSync(path.join(REF, d, 'config.json')));
const hasNative = async (): Promise<boolean> => (await backendsUnderTest()).includes('native');

/** Extra configs: 8 heads and widths that are multiples of 32 (Q8_0), softmax + greedy routing, no q LoRA. */
const configs: Array<[string, DeepSeekConfig]> = [
  ['8 heads, sigmoid group-limited', makeConfig({ ...presets.tiny!, hiddenSize: 96, numAttentionHeads: 8, moeIntermediateSize: 64, intermediateSize: 160, kvLoraRank: 64, qLoraRank: 64 })],
  ['softmax greedy, no q LoRA', makeConfig({ ...presets.tiny!, hiddenSize: 64, qLoraRank: null, scoringFunc: 'softmax', topkMethod: 'greedy', normTopkProb: false, routedScalingFactor: 1.5 })],
];

async function models(): Promise<Array<[string, Model]>> {
  const out: Array<[string, Model]> = [];
  for (const d of REFS) out.push([d, await loadModel(path.join(REF, d))]);
  configs.forEach(([name, cfg], i) => out.push([name, { cfg, params: initParams(cfg, { seed: 11 + i }) }]));
  return out;
}

const rel = (a: Float32Array, b: Float32Array): number => maxAbsDiff(a, b) / Math.max(1e-30, maxAbsDiff(b, new Float32Array(b.length)));

test('engine passes match the TypeScript path: main, 2 rows, MTP with fill rows, cache rows (f32, bf16, Q8_0)', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  await withBackend('native', async () => {
    for (const [name, base] of await models()) {
      const forms: Array<[string, Model, number]> = [['f32', base, 2e-5], ['bf16', withBf16Weights(base).model, 2e-5], ['q8_0', withQ8Weights(base).model, 2e-5]];
      for (const [form, m, tol] of forms) {
        noGrad(() => {
          const prompt = [5, 17, 42, 9, 3, 11];
          const P = prompt.length, H = m.cfg.hiddenSize, V = m.cfg.vocabSize;
          const ca = prefilled(m, prompt), cb = copyCache(ca);
          const opts: { linear?: RowsLinear } = m.rowsLinear ? { linear: m.rowsLinear } : {};
          const eng = new RowDecoder(m.params, m.cfg, { ...opts, engine: true }), ts = new RowDecoder(m.params, m.cfg, { ...opts, engine: false });
          resetKernelCounts();
          const a = eng.main([8, 9], [{ cache: ca, start: P, rows: 2 }]);
          assert.equal(kernelCounts()['native:DecodeEngineMain'], 1, `${name} ${form}: one engine call per pass`);
          const ah = a.hidden.slice(), al = a.logits.slice();
          const b = ts.main([8, 9], [{ cache: cb, start: P, rows: 2 }]);
          assert.ok(rel(al, b.logits) < tol && rel(ah, b.hidden) < tol, `${name} ${form}: main logits ${rel(al, b.logits)}, hidden ${rel(ah, b.hidden)}`);
          for (let l = 0; l < m.cfg.numHiddenLayers; l++) {
            const D = m.cfg.kvLoraRank + m.cfg.qkRopeHeadDim;
            assert.ok(maxAbsDiff(ca.layers[l]!.a.subarray(P * D, (P + 2) * D), cb.layers[l]!.a.subarray(P * D, (P + 2) * D)) < 1e-4, `${name} ${form}: cache rows of layer ${l}`);
          }
          // MTP: 3 rows of which the first 2 only fill the cache.
          const hin = Float32Array.from({ length: 3 * H }, (_, i) => Math.sin(i));
          const x = eng.mtp(0, hin, [4, 8, 9], [{ cache: ca, start: P - 1, rows: 3 }], 2);
          const xh = x.hidden.slice(), xl = x.logits.slice();
          const y = ts.mtp(0, hin, [4, 8, 9], [{ cache: cb, start: P - 1, rows: 3 }], 2);
          assert.equal(xl.length, V);
          assert.ok(rel(xl, y.logits) < tol && rel(xh, y.hidden) < tol, `${name} ${form}: MTP logits ${rel(xl, y.logits)}`);
        });
      }
    }
  });
});

test('engine rows are exact: 2 rows = two 1-row passes, 3 sequences in one pass = each alone, 2 threads = 1 thread (bit for bit)', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const native = loadNativeBackend()!;
  await withBackend('native', async () => {
    for (const [name, base] of await models()) {
      for (const [form, m] of [['f32', base], ['q8_0', withQ8Weights(base).model]] as Array<[string, Model]>) {
        noGrad(() => {
          const V = m.cfg.vocabSize;
          const dec = new RowDecoder(m.params, m.cfg, m.rowsLinear ? { linear: m.rowsLinear } : {});
          const p1 = [5, 17, 42, 9], p2 = [3, 1, 4, 1, 5, 9, 2], p3 = [7];
          const c1 = prefilled(m, p1), c2 = prefilled(m, p2), c3 = prefilled(m, p3);
          const d1 = copyCache(c1), d2 = copyCache(c2), d3 = copyCache(c3);
          const one = (c: KVCache, pos: number, tok: number): Float32Array => dec.main([tok], [{ cache: c, start: pos, rows: 1 }]).logits.slice();
          const a = [one(c1, 4, 8), one(c1, 5, 9), one(c2, 7, 2), one(c3, 1, 6)];
          const both = dec.main([8, 9, 2, 6], [{ cache: d1, start: 4, rows: 2 }, { cache: d2, start: 7, rows: 1 }, { cache: d3, start: 1, rows: 1 }]).logits;
          for (let r = 0; r < 4; r++) assert.deepEqual(both.subarray(r * V, (r + 1) * V), a[r], `${name} ${form}: row ${r} of the 3-sequence pass`);
          for (const [c, d] of [[c1, d1], [c2, d2], [c3, d3]] as const) c.layers.forEach((l, i) => assert.deepEqual(d.layers[i]!.a, l.a, `${name} ${form}: cache rows`));
          // Threads: at 200 tokens of context attention splits by heads too.
          const long = prefilled(m, Array.from({ length: 200 }, (_, i) => (i * 7) % m.cfg.vocabSize), 256);
          const s: Float32Array[] = [];
          for (const th of [1, 2]) {
            native.setThreads(th);
            s.push(dec.main([1, 2], [{ cache: copyCache(c2), start: 7, rows: 2 }]).logits.slice(), dec.main([3], [{ cache: copyCache(long), start: 200, rows: 1 }]).logits.slice());
          }
          assert.deepEqual(s.slice(2), s.slice(0, 2), `${name} ${form}: 2 threads = 1 thread`);
          // Team passes of 1–5 rows (the kernels' 3- and 5-row groups, attention units split inside
          // a row) at 1, 2 and 3 threads: each row equals its 1-row pass on 1 thread.
          native.setThreads(1);
          const toks = [11, 3, 7, 5, 2];
          const ref = toks.map((tok, i) => {
            const c = copyCache(long);
            if (i > 0) dec.main(toks.slice(0, i), [{ cache: c, start: 200, rows: i }]);
            return dec.main([tok], [{ cache: c, start: 200 + i, rows: 1 }]).logits.slice();
          });
          // Also without teams (a one-thread pass splitting large products over the pool, as when
          // the pool is busy), and a 3-sequence pass (rows of several caches) each way.
          const multi = (): Float32Array => dec.main([8, 9, 2, 6], [{ cache: copyCache(c1), start: 4, rows: 2 }, { cache: copyCache(c2), start: 7, rows: 1 }, { cache: copyCache(long), start: 200, rows: 1 }]).logits.slice();
          native.setThreads(1);
          const multiRef = multi();
          for (const [th, teams] of [[1, true], [2, true], [3, true], [2, false]] as const) {
            native.setThreads(th);
            native.addon.decodeSetTeams!(teams);
            // Q8_0 decode weights keep to decodeExactRows rows (longer passes take f32 weights).
            for (const R of [1, 2, 3, 4, 5].filter((r) => r <= (m.decodeExactRows ?? 5))) {
              const out = dec.main(toks.slice(0, R), [{ cache: copyCache(long), start: 200, rows: R }]).logits;
              for (let r = 0; r < R; r++) assert.deepEqual(out.subarray(r * V, (r + 1) * V), ref[r], `${name} ${form}: row ${r} of ${R} at ${th} threads${teams ? '' : ', no teams'}`);
            }
            assert.deepEqual(multi(), multiRef, `${name} ${form}: 3 sequences at ${th} threads${teams ? '' : ', no teams'}`);
          }
          native.addon.decodeSetTeams!(true);
          native.setThreads(1);
        });
      }
    }
  });
});

test('greedy speculative decoding on the engine gives the plain tokens (f32, bf16, Q8_0 weights; Q8_0 MTP drafts; 1 and 2 threads)', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const native = loadNativeBackend()!;
  await withBackend('native', async () => {
    for (const [name, base] of await models()) {
      const forms = [['f32', base], ['bf16', withBf16Weights(base).model], ['q8_0', withQ8Weights(base).model], ['f32, Q8_0 drafts', withQ8Drafts(base).model],
        ['bf16, Q8_0 drafts', withQ8Drafts(withBf16Weights(base).model).model]] as Array<[string, Model]>;
      for (const [form, m] of forms) {
        for (const prompt of [[5, 17, 42, 99 % m.cfg.vocabSize, 3], [1]]) {
          const a = generate(m, prompt, { greedy: true, maxTokens: 40 });
          for (const th of [1, 2]) {
            native.setThreads(th);
            resetKernelCounts();
            const b = generate(m, prompt, { greedy: true, maxTokens: 40, speculative: true });
            assert.deepEqual(b.tokens, a.tokens, `${name} ${form} prompt ${prompt.join(',')}, ${th} threads`);
            assert.ok((kernelCounts()['native:DecodeEngineSpecLoop'] ?? 0) > 0, `${name} ${form}: speculative steps ran in the engine's loop`);
            // With a KV source that grows the cache on demand (the server's pool): one loop step
            // per call, rows reserved first, the same tokens.
            const grow = { ensure: (c: KVCache | null, tokens: number, extra: number): KVCache =>
              (!c ? new KVCache(m.cfg, 1, tokens + 1, 'absorb', extra) : c.capacity >= tokens ? c : copyCache(c, tokens + 1)) };
            resetKernelCounts();
            const kv = generate(m, prompt, { greedy: true, maxTokens: 40, speculative: true, kv: grow });
            assert.deepEqual(kv.tokens, a.tokens, `${name} ${form} prompt ${prompt.join(',')}, ${th} threads, growing KV source`);
            assert.ok((kernelCounts()['native:DecodeEngineSpecLoop'] ?? 0) > 0, `${name} ${form}: the server's steps ran in the engine's loop`);
            // Every chain length: 1 to 4 drafts per step (a (K+1)-row verify), the same tokens.
            for (let K = 1; K <= MAX_DRAFT_TOKENS; K++) {
              const c = generate(m, prompt, { greedy: true, maxTokens: 40, speculative: true, draftTokens: K });
              assert.deepEqual(c.tokens, a.tokens, `${name} ${form} prompt ${prompt.join(',')}, ${th} threads, ${K} drafts per step`);
              assert.ok(c.speculative!.proposed > 0 && c.speculative!.accepted <= c.speculative!.proposed);
            }
            // Budgets and stop ids that end the generation inside a loop call: the same tokens, the same reason.
            for (const opts of [{ maxTokens: 7 }, { maxTokens: 40, stopTokenIds: [a.tokens[12]!] }, { maxTokens: 40, onToken: (id: number) => id === a.tokens[9] }]) {
              const pa = generate(m, prompt, { greedy: true, ...opts }), sb = generate(m, prompt, { greedy: true, speculative: true, ...opts });
              assert.deepEqual(sb.tokens, pa.tokens, `${name} ${form}: ${JSON.stringify(opts)}`);
              assert.equal(sb.finishReason, pa.finishReason);
            }
          }
        }
      }
    }
  });
});

test('the fused speculative step equals an MTP pass then a 2-row verify pass, bit for bit, at 1 and 2 threads (same and Q8_0 drafts)', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const native = loadNativeBackend()!;
  await withBackend('native', async () => {
    for (const [name, base] of await models()) {
      for (const [form, m] of [['f32', base], ['f32, Q8_0 drafts', withQ8Drafts(base).model], ['bf16', withBf16Weights(base).model]] as Array<[string, Model]>) {
        noGrad(() => {
          const H = m.cfg.hiddenSize, V = m.cfg.vocabSize, vocab = V - 3;
          const dec = new RowDecoder(m.params, m.cfg, m.rowsLinear ? { linear: m.rowsLinear } : {});
          const drafter = m.draftRowsLinear ? new RowDecoder(m.params, m.cfg, { linear: m.draftRowsLinear }) : dec;
          // 150 prompt tokens: long enough that 2-row attention would split over threads.
          const prompt = Array.from({ length: 150 }, (_, i) => (i * 13 + 5) % V);
          const base0 = prefilled(m, prompt, 256);
          const hin = Float32Array.from({ length: 2 * H }, (_, i) => Math.sin(i * 0.37) * 2);
          for (const [rows, mtpStart] of [[1, 149], [2, 148]] as const) {
            const next = rows === 1 ? [7] : [7, 11];
            // Reference: the two calls, as Generation's sampled path makes them.
            const ref = copyCache(base0);
            const mt = drafter.mtp(0, hin.subarray(0, rows * H), next, [{ cache: ref, start: mtpStart, rows }], rows - 1);
            let want = 0;
            for (let j = 1; j < vocab; j++) if (mt.logits[j]! > mt.logits[want]!) want = j;
            const mtpLogits = mt.logits.slice(0, V);
            const f = dec.main([3, want], [{ cache: ref, start: 150, rows: 2 }]);
            const hidden = f.hidden.slice(), logits = f.logits.slice();
            for (const th of [1, 2]) {
              native.setThreads(th);
              const c = copyCache(base0);
              const r = dec.specStep(drafter, hin, next, { cache: c, start: mtpStart, rows }, 3, { cache: c, start: 150, rows: 2 }, vocab);
              assert.ok(r, `${name} ${form}: the engine runs the fused step`);
              const tag = `${name} ${form}, ${rows} MTP rows, ${th} threads`;
              assert.equal(r.draft, want, `${tag}: draft`);
              const am = (row: number): number => { let b = 0; for (let j = 1; j < vocab; j++) if (logits[row * V + j]! > logits[row * V + b]!) b = j; return b; };
              assert.deepEqual([r.next0, r.next1], [am(0), am(1)], `${tag}: verify argmaxes`);
              assert.deepEqual(r.mtpLogits, mtpLogits, `${tag}: MTP logits`);
              assert.deepEqual(r.hidden, hidden, `${tag}: hidden rows`);
              assert.deepEqual(r.logits, logits, `${tag}: logits`);
              c.layers.forEach((l, i) => assert.deepEqual(l.a, ref.layers[i]!.a, `${tag}: cache layer ${i}`));
            }
          }
        });
      }
    }
  });
  native.setThreads(2);
});

test('the chained speculative loop equals the same MTP and verify passes orchestrated in TypeScript: drafts, tokens, state, cache rows (1-3 drafts, a draft window, 1 and 2 threads)', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const native = loadNativeBackend()!;
  const argmax = (x: Float32Array, off: number, n: number): number => { let b = 0; for (let j = 1; j < n; j++) if (x[off + j]! > x[off + b]!) b = j; return b; };
  await withBackend('native', async () => {
    for (const [name, base] of await models()) {
      for (const [form, m] of [['f32', base], ['f32, Q8_0 drafts', withQ8Drafts(base).model]] as Array<[string, Model]>) {
        noGrad(() => {
          const H = m.cfg.hiddenSize, V = m.cfg.vocabSize, vocab = V - 3, L = m.cfg.numHiddenLayers;
          const dec = new RowDecoder(m.params, m.cfg, m.rowsLinear ? { linear: m.rowsLinear } : {});
          const drafter = m.draftRowsLinear ? new RowDecoder(m.params, m.cfg, { linear: m.draftRowsLinear }) : dec;
          const headNorm = m.params.mtp[0]!.headNorm.f32;
          const prompt = Array.from({ length: 40 }, (_, i) => (i * 13 + 5) % V), P = prompt.length, steps = 6;
          const start = prefilled(m, prompt, 96);
          // The last 3 prompt rows pending: more than a 1-draft chain writes (the state a longer
          // chain leaves when `auto` shortens it).
          const first = dec.main(prompt.slice(P - 3), [{ cache: start, start: P - 3, rows: 3 }]);
          const x0 = argmax(first.logits, 2 * V, vocab), h0 = first.hidden.slice(0, 3 * H);
          for (const [K, window] of [[1, 0], [2, 0], [3, 0], [3, 16]] as const) {
            // TypeScript orchestration of the loop's steps (engine passes through RowDecoder).
            const ref = copyCache(start);
            let x = x0, n = P, ms = P - 3, mm = 3, acc = 0;
            let hin = h0.slice(), next = [...prompt.slice(P - 2), x0];
            const tokens: number[] = [], drafts: number[] = [];
            for (let s = 0; s < steps; s++) {
              const d: number[] = [];
              let mt = drafter.mtp(0, hin, next, [{ cache: ref, start: ms, rows: mm }], mm - 1, window);
              for (let k = 0; k < K; k++) {
                if (k > 0) {
                  const chain = new Float32Array(H);
                  kernel('RMSNorm')(mt.hidden.subarray(mt.hidden.length - H), headNorm, chain, 1, H, m.cfg.rmsNormEps);
                  mt = drafter.mtp(0, chain, [d[k - 1]!], [{ cache: ref, start: n + k - 1, rows: 1 }], 0, window);
                }
                d.push(argmax(mt.logits, 0, vocab));
              }
              const f = dec.main([x, ...d], [{ cache: ref, start: n, rows: K + 1 }]);
              const a = d.map((_, i) => argmax(f.logits, i * V, vocab)).concat(argmax(f.logits, K * V, vocab));
              let j = 0;
              while (j < K && a[j] === d[j]) j++;
              acc += j;
              drafts.push(...d);
              tokens.push(...a.slice(0, j + 1));
              hin = f.hidden.slice(0, (j + 1) * H);
              next = [...d.slice(0, j), a[j]!];
              ms = n; mm = j + 1; n += j + 1; x = a[j]!;
            }
            for (const th of [1, 2]) {
              native.setThreads(th);
              const c = copyCache(start);
              const hinE = new Float32Array(Math.max(K + 1, 3) * H), nextE = new Int32Array(Math.max(K + 1, 3)), state = Float64Array.of(x0, P, P - 3, 3, 0, 0);
              hinE.set(h0);
              nextE.set([...prompt.slice(P - 2), x0]);
              const out = new Int32Array((K + 1) * steps), tr = new Int32Array(K * steps);
              const count = dec.specLoop(drafter, hinE, nextE, state, c, steps, 1e9, new Int32Array(0), vocab, out, K, { trace: tr, exactHead: true, draftWindow: window });
              const tag = `${name} ${form}, ${K} drafts, window ${window}, ${th} threads`;
              assert.deepEqual(Array.from(tr), drafts, `${tag}: drafts`);
              assert.deepEqual(Array.from(out.subarray(0, count!)), tokens, `${tag}: tokens`);
              assert.deepEqual(Array.from(state), [x, n, ms, mm, K * steps, acc], `${tag}: state`);
              assert.deepEqual(Array.from(hinE.subarray(0, mm * H)), Array.from(hin), `${tag}: pending hidden rows`);
              assert.deepEqual(Array.from(nextE.subarray(0, mm)), next, `${tag}: pending tokens`);
              // Every row either wrote (kept, rejected and chained-draft rows alike) is the same.
              for (let l = 0; l <= L; l++) assert.deepEqual(c.layers[l]!.a, ref.layers[l]!.a, `${tag}: cache layer ${l}`);
            }
          }
        });
      }
    }
  });
  native.setThreads(2);
});

test("draftTokens 'auto' (the default) shortens the chain while drafts are rejected; an explicit count is kept; output stays plain greedy's", async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  await withBackend('native', async () => {
    // An untrained model: its MTP layer almost never agrees with the main model.
    const cfg = presets.tiny!, m: Model = { cfg, params: initParams(cfg, { seed: 11 }) };
    const prompt = [5, 17, 42];
    const plain = generate(m, prompt, { greedy: true, maxTokens: 60 });
    const auto = new Generation(m, prompt, { greedy: true, maxTokens: 60, speculative: true });
    assert.equal(auto.draftTokens, DEFAULT_DRAFT_TOKENS);
    while (!auto.done) auto.step();
    const r = auto.result();
    assert.ok(r.speculative!.acceptanceRate < 0.2, `acceptance ${r.speculative!.acceptanceRate}`);
    assert.equal(auto.draftTokens, 1, 'the chain shrank to one draft');
    assert.deepEqual(r.tokens, plain.tokens);
    const fixed = new Generation(m, prompt, { greedy: true, maxTokens: 60, speculative: true, draftTokens: 3 });
    while (!fixed.done) fixed.step();
    assert.equal(fixed.draftTokens, 3);
    assert.deepEqual(fixed.result().tokens, plain.tokens);
    assert.throws(() => new Generation(m, prompt, { speculative: true, draftTokens: 5 }), /draftTokens must be 'auto' or an integer from 1 to 4/);
  });
});

test('the int8 draft head: logits close to the exact product (within 3% of their range: int8 codes of both operands), the clear argmax kept; bad shapes rejected', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const lib = loadNativeBackend()!.addon;
  for (const [n, k] of [[2048, 128], [37, 64], [16, 4]] as const) {
    const w = Float32Array.from({ length: n * k }, (_, i) => Math.sin(i * 0.731) * (1 + (i % 7) / 3));
    const x = Float32Array.from({ length: k }, (_, i) => Math.cos(i * 0.29) * 3 - 0.5);
    x[k - 1] = 0;
    const exact = new Float32Array(n);
    lib.decodeMatRows!(w, n, k, x, 1, exact);
    const y = new Float32Array(n).fill(NaN);
    if (!lib.decodeDraftHead!(w, n, k, x, y)) { t.diagnostic('no AVX-512 VNNI: the loop drafts with the exact head'); return; }
    let lo = Infinity, hi = -Infinity, err = 0;
    for (let j = 0; j < n; j++) { lo = Math.min(lo, exact[j]!); hi = Math.max(hi, exact[j]!); err = Math.max(err, Math.abs(y[j]! - exact[j]!)); }
    assert.ok(err <= 0.03 * (hi - lo), `${n}×${k}: max error ${err} of range ${hi - lo}`);
    // A clear winner (a row that is x itself) stays the argmax.
    const w2 = w.slice();
    w2.set(x, (n >> 1) * k);
    const y2 = new Float32Array(n);
    lib.decodeDraftHead!(w2, n, k, x, y2);
    let b = 0;
    for (let j = 1; j < n; j++) if (y2[j]! > y2[b]!) b = j;
    if (n > 16) assert.equal(b, n >> 1, `${n}×${k}: argmax`);
  }
  assert.throws(() => lib.decodeDraftHead!(new Float32Array(30), 5, 6, new Float32Array(6), new Float32Array(5)), /multiple of 4/);
  assert.throws(() => lib.decodeDraftHead!(new Float32Array(30), 5, 8, new Float32Array(8), new Float32Array(5)), /w has 30 elements|needs 40/);
});

test('the engine rejects bad input with errors naming it', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const lib = loadNativeBackend()!.addon;
  const cfg = presets.tiny!, p: ModelParams = initParams(cfg, { seed: 2 });
  const lay = engineArrays(p, cfg, f32EngineWeights);
  const bad = lay.arrays.slice();
  bad[2] = new Float32Array(7);
  assert.throws(() => lib.decodeEngineCreate!(lay.cfg, lay.kinds, bad), /arrays\[2\] has 7 elements, expected/);
  assert.throws(() => lib.decodeEngineCreate!(lay.cfg, lay.kinds, lay.arrays.slice(0, 10)), /too few/);
  assert.throws(() => lib.decodeEngineCreate!(lay.cfg, lay.kinds, [...lay.arrays, null]), /given, \d+ expected/);
  const eng = lib.decodeEngineCreate!(lay.cfg, lay.kinds, lay.arrays);
  const c = new KVCache(cfg, 1, 4, 'absorb', 1);
  const caches = c.layers.slice(0, cfg.numHiddenLayers).map((l) => l.a);
  const h = new Float32Array(2 * cfg.hiddenSize), lg = new Float32Array(2 * cfg.vocabSize), cs = new Float32Array(16);
  const run = (tok: number[], start: number, rows: number, e: object = eng): void =>
    lib.decodeEngineMain!(e, Int32Array.from(tok), Int32Array.of(start, rows), caches, cs, cs, 0, h, lg);
  run([1], 0, 1);
  assert.throws(() => run([cfg.vocabSize], 0, 1), /token id 512 out of range \[0, 512\)/);
  assert.throws(() => run([1, 2], 3, 2), /KV cache full/);
  assert.throws(() => run([1], 0, 1, {}), /engine must come from decodeEngineCreate/);
  assert.throws(() => lib.decodeEngineMain!(eng, Int32Array.of(1), Int32Array.of(0, 1), caches.slice(1), cs, cs, 0, h, lg), /caches must be an Array of 3/);
  assert.throws(() => lib.decodeEngineMtp!(eng, 1, h, Int32Array.of(1), Int32Array.of(0, 1), [c.layers[3]!.a], cs, cs, 0, h, lg), /1 MTP layers, depth 1/);
  // The fused speculative step: a verify segment of 2 rows, a draft engine for the same model.
  const ml = new Float32Array(cfg.vocabSize), picks = new Int32Array(3);
  const spec = (e2: object, mainRows: number, vocab = cfg.vocabSize): void =>
    lib.decodeEngineSpec!(eng, e2, h, Int32Array.of(1), Int32Array.of(0, 1), [c.layers[3]!.a], cs, cs, 2, Int32Array.of(1, mainRows), caches, cs, cs, vocab, h, lg, ml, picks);
  spec(eng, 2);
  assert.ok(picks.every((v) => v >= 0 && v < cfg.vocabSize), 'picks are token ids');
  assert.throws(() => spec(eng, 1), /mainSegs must be one segment of 2 rows/);
  assert.throws(() => spec(eng, 2, 0), /vocab must be at least 1/);
  const other = makeConfig({ ...cfg, hiddenSize: 2 * cfg.hiddenSize });
  const o = engineArrays(initParams(other, { seed: 3 }), other, f32EngineWeights);
  assert.throws(() => spec(lib.decodeEngineCreate!(o.cfg, o.kinds, o.arrays), 2), /draft engine is for another model/);
  // The loop: chain length, its arrays and options.
  const lc = new KVCache(cfg, 1, 16, 'absorb', 1), lcaches = lc.layers.slice(0, cfg.numHiddenLayers).map((l) => l.a), half = cfg.qkRopeHeadDim / 2;
  const loop = (K: unknown, hin: number, draftsOut: unknown = null, exact: unknown = false, win: unknown = 0): number =>
    lib.decodeEngineSpecLoop!(eng, eng, new Float32Array(hin * cfg.hiddenSize), new Int32Array(5), Float64Array.of(1, 2, 1, 1, 0, 0), lcaches, lc.layers[3]!.a,
      new Float32Array(16 * half), new Float32Array(16 * half), cfg.vocabSize, 2, 100, new Int32Array(0), new Int32Array(10), K as number, draftsOut as Int32Array, exact as boolean, win as number);
  assert.ok(loop(4, 5) >= 2, 'a 4-draft loop runs');
  assert.throws(() => loop(5, 6), /drafts/);
  assert.throws(() => loop(0, 1), /drafts must be 1 to 4/);
  assert.throws(() => loop(3, 2), /hin has \d+ elements, needs/);
  assert.throws(() => loop(2, 3, new Int32Array(3)), /draftsOut/);
  assert.throws(() => loop(1, 2, null, 'yes'), /exactHead must be a boolean/);
  assert.throws(() => loop(1, 2, null, false, -1), /draftWindow/);
});

test('engineLinear (the engine product for one matrix): f32 / bf16 / Q8_0 against the reference linears, rows exact, bad input rejected', async (t) => {
  if (!(await hasNative())) { t.skip(`native backend: ${whyNotUnderTest('native')}`); return; }
  const lib = loadNativeBackend()!.addon;
  await withBackend('native', async () => {
    const w = new Tensor(Float32Array.from({ length: 200 * 96 }, (_, i) => Math.sin(i * 0.37)), [200, 96]);
    const x = new Tensor(Float32Array.from({ length: 3 * 96 }, (_, i) => Math.cos(i * 0.11)), [3, 96]);
    const ref = op.linear(x, w).f32;
    const f32 = engineLinear(f32EngineWeights, op.linear)(x, w).f32;
    assert.ok(rel(f32, ref) < 1e-6, `f32 ${rel(f32, ref)}`);
    const b = bf16Linear(), q = q8Linear();
    const eb = engineLinear(b.rowsLinear!.engine!, b.linear!)(x, w).f32, rb = b.linear!(x, w).f32;
    assert.ok(rel(eb, rb) < 1e-6 && rel(eb, ref) > 1e-5, `bf16 ${rel(eb, rb)} (vs f32 ${rel(eb, ref)})`);
    const eq = engineLinear(q.rowsLinear.engine!, q.linear)(x, w).f32, rq = q.linear(x, w).f32;
    assert.ok(rel(eq, rq) < 1e-6 && rel(eq, ref) > 1e-4, `q8_0 ${rel(eq, rq)} (vs f32 ${rel(eq, ref)})`);
    // Row r of a 3-row product equals the row alone, bit for bit.
    for (let r = 0; r < 3; r++) {
      const one = engineLinear(q.rowsLinear.engine!, q.linear)(new Tensor(x.f32.slice(r * 96, (r + 1) * 96), [1, 96]), w).f32;
      assert.deepEqual(one, eq.subarray(r * 200, (r + 1) * 200), `q8_0 row ${r}`);
    }
  });
  const y = new Float32Array(10);
  assert.throws(() => lib.decodeMatRows!(new Uint8Array(34 * 10), 10, 40, new Float32Array(40), 1, y), /multiple of 32/);
  assert.throws(() => lib.decodeMatRows!(new Float32Array(10 * 31), 10, 32, new Float32Array(32), 1, y), /w has 310 elements, needs 320/);
  assert.throws(() => lib.decodeMatRows!(new Float32Array(320), 10, 32, new Float32Array(31), 1, y), /x has 31 elements, needs 32/);
});
