// The webgpu decode engine (src/backend/webgpu/decode-engine.ts through model/decode-engine.ts), on
// Dawn in Node (SwiftShader without a GPU), against RowDecoder's TypeScript path on the same backend
// and the official vectors: main and MTP passes of the reference models and of configs with 8
// heads, no q LoRA, no shared expert, softmax greedy routing and exact router ties; one job per
// pass that reads back only hidden, logits and the cache rows it wrote; the fused speculative step
// (DecodeEngineSpec); incremental logits and greedy tokens of the official sets, speculative =
// plain greedy; host cache writes between passes (restores, rollback) seen and uploaded as changed
// rows only; rows exact; non-f32 weights keep the TypeScript path; bad input named.
// Sizes are the reference models': every SwiftShader pass costs tens of milliseconds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { disposeBackends } from '../src/backend/setup-node.js';
import { backendsUnderTest, whyNotUnderTest, withBackend } from '../src/backend/testing-node.js';
import { getBackendByName, kernelCounts, resetKernelCounts } from '../src/backend/registry.js';
import type { WebGPUBackend } from '../src/backend/webgpu/index.js';
import { noGrad } from '../src/autograd/tape.js';
import { Tensor } from '../src/autograd/tensor.js';
import { maxAbsDiff } from '../src/ops/compare.js';
import { loadModel } from '../src/model/load-node.js';
import { makeConfig, presets, type DeepSeekConfig } from '../src/model/config.js';
import { initParams, KVCache } from '../src/model/deepseek.js';
import { f32RowsLinear, RowDecoder, type RowsLinear } from '../src/model/decode.js';
import { decodeEngine, engineArrays, f32EngineWeights } from '../src/model/decode-engine.js';
import { residentVersion } from '../src/backend/residency.js';
import { generate, type Model } from '../src/infer/generate.js';
import { argmax } from '../src/infer/sampling.js';
import { copyCache, prefilled } from '../src/model/cache-testing.js';

after(() => disposeBackends());

const names = await backendsUnderTest({ webgpu: true });
const skip = names.includes('webgpu') ? false : `webgpu not under test: ${whyNotUnderTest('webgpu')}`;
const gpu = (): WebGPUBackend => getBackendByName('webgpu') as WebGPUBackend;
const REF = path.resolve(process.cwd(), '../shared/reference');
const REFS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn'].filter((d) => existsSync(path.join(REF, d, 'config.json')));

/** 8 heads with router ties (experts 2 = 3 in one group, = 5 in another, same bias); softmax greedy routing without q LoRA or shared expert. */
const configs: Array<[string, DeepSeekConfig]> = [
  ['8 heads, sigmoid group-limited, tied experts', makeConfig({ ...presets.tiny!, hiddenSize: 96, numAttentionHeads: 8, moeIntermediateSize: 64, intermediateSize: 160, kvLoraRank: 64, qLoraRank: 64 })],
  ['softmax greedy, no q LoRA, no shared expert', makeConfig({ ...presets.tiny!, hiddenSize: 64, qLoraRank: null, nSharedExperts: 0, scoringFunc: 'softmax', topkMethod: 'greedy', normTopkProb: false, routedScalingFactor: 1.5 })],
];

async function models(): Promise<Array<[string, Model]>> {
  const out: Array<[string, Model]> = [];
  for (const d of REFS) out.push([d, await loadModel(path.join(REF, d))]);
  configs.forEach(([name, cfg], i) => {
    const params = initParams(cfg, { seed: 11 + i });
    if (i === 0) {
      for (const l of [...params.layers, ...params.mtp.map((m) => m.layer)]) {
        if (!l.moe) continue;
        const H = cfg.hiddenSize, r = l.moe.router.f32;
        r.copyWithin(3 * H, 2 * H, 3 * H); r.copyWithin(5 * H, 2 * H, 3 * H);
        if (l.moe.bias) { const b = l.moe.bias.f32; b[3] = b[2]!; b[5] = b[2]!; }
        l.moe.router.version++;
        if (l.moe.bias) l.moe.bias.version++;
      }
    }
    out.push([name, { cfg, params }]);
  });
  return out;
}

type Stats = ReturnType<WebGPUBackend['stats']>;
/** Bytes of the main model's engine arrays that are not declared resident (the gate biases): uploaded with every pass. */
const undeclaredBytes = (m: Model): number => engineArrays({ ...m.params, mtp: [] }, m.cfg, f32EngineWeights).arrays
  .reduce((s, a) => s + (a instanceof Float32Array && residentVersion(a) === undefined ? 4 * a.length : 0), 0);
const moved = (a: Stats, b: Stats): { jobs: number; up: number; down: number } => ({ jobs: b.jobs - a.jobs, up: b.upBytes - a.upBytes, down: b.downBytes - a.downBytes });

test('webgpu decode engine = the TypeScript path: main (2 rows), MTP with fill rows, fused speculative step, cache rows; one job per pass, only hidden, logits and written rows read back', { skip, timeout: 600_000 }, async () => {
  await withBackend('webgpu', async () => {
    for (const [name, m] of await models()) {
      noGrad(() => {
        const { cfg } = m, H = cfg.hiddenSize, V = cfg.vocabSize, D = cfg.kvLoraRank + cfg.qkRopeHeadDim, L = cfg.numHiddenLayers, half = cfg.qkRopeHeadDim / 2;
        const prompt = [5, 17, 42, 9, 3, 11], P = prompt.length;
        const ca = prefilled(m, prompt), cb = copyCache(ca);
        const eng = new RowDecoder(m.params, cfg, { engine: true }), ts = new RowDecoder(m.params, cfg, { engine: false });
        assert.ok(eng.usesEngine(2), `${name}: webgpu runs the engine`);
        const pass = (dec: RowDecoder, c: KVCache, toks: number[], start: number): { h: Float32Array; l: Float32Array } => {
          const r = dec.main(toks, [{ cache: c, start, rows: toks.length }]);
          return { h: r.hidden.slice(), l: r.logits.slice() };
        };
        const checkMain = (a: { h: Float32Array; l: Float32Array }, b: { h: Float32Array; l: Float32Array }, rows: [number, number], what: string): void => {
          assert.ok(maxAbsDiff(a.l, b.l) <= 1e-4 && maxAbsDiff(a.h, b.h) <= 1e-4, `${name} ${what}: logits ${maxAbsDiff(a.l, b.l)}, hidden ${maxAbsDiff(a.h, b.h)}`);
          for (let l = 0; l < L; l++) {
            const d = maxAbsDiff(ca.layers[l]!.a.subarray(rows[0] * D, rows[1] * D), cb.layers[l]!.a.subarray(rows[0] * D, rows[1] * D));
            assert.ok(d <= 1e-5, `${name} ${what}: cache rows of layer ${l} differ by ${d}`);
          }
        };
        resetKernelCounts();
        let s0 = gpu().stats();
        const a = pass(eng, ca, [8, 9], P);
        let st = moved(s0, gpu().stats());
        assert.equal(kernelCounts()['webgpu:DecodeEngineMain'], 1, `${name}: one engine call`);
        assert.equal(st.jobs, 1, `${name}: one job per main pass`);
        assert.equal(st.down, 4 * (2 * H + 2 * V + 2 * D * L), `${name}: read back hidden, logits and the 2 written rows of each layer only`);
        checkMain(a, pass(ts, cb, [8, 9], P), [0, P + 2], 'main, 2 rows');
        // MTP: 3 rows of which the first 2 only fill the cache.
        const hin = Float32Array.from({ length: 3 * H }, (_, i) => Math.sin(i));
        s0 = gpu().stats();
        const x = eng.mtp(0, hin, [4, 8, 9], [{ cache: ca, start: P - 1, rows: 3 }], 2);
        st = moved(s0, gpu().stats());
        const xh = x.hidden.slice(), xl = x.logits.slice();
        const y = ts.mtp(0, hin, [4, 8, 9], [{ cache: cb, start: P - 1, rows: 3 }], 2);
        assert.equal(st.jobs, 1, `${name}: one job per MTP pass`);
        assert.equal(st.down, 4 * (H + V + 3 * D), `${name}: MTP reads back one row's hidden and logits and its 3 cache rows`);
        assert.equal(xl.length, V);
        assert.ok(maxAbsDiff(xl, y.logits) <= 1e-4 && maxAbsDiff(xh, y.hidden) <= 1e-4, `${name} MTP: logits ${maxAbsDiff(xl, y.logits)}, hidden ${maxAbsDiff(xh, y.hidden)}`);
        const dm = maxAbsDiff(ca.layers[L]!.a.subarray(0, (P + 2) * D), cb.layers[L]!.a.subarray(0, (P + 2) * D));
        assert.ok(dm <= 1e-5, `${name}: MTP cache rows differ by ${dm}`);
        // Steady state: weights resident, no host change to the cache: only ids and rope tables go up.
        s0 = gpu().stats();
        const c = pass(eng, ca, [7], P + 2);
        st = moved(s0, gpu().stats());
        assert.equal(st.up, 4 * (1 + 2 * half) + undeclaredBytes(m), `${name}: a steady decode pass uploads only its token id, rope row (and undeclared gate biases)`);
        checkMain(c, pass(ts, cb, [7], P + 2), [0, P + 3], 'main, steady');
        // One fused speculative step (draft, 2-row verify, argmaxes: one job) = the MTP pass, then the 2-row main pass.
        const h2 = hin.subarray(0, 2 * H);
        s0 = gpu().stats();
        const f = eng.specStep(eng, h2, [7, 5], { cache: ca, start: P + 1, rows: 2 }, 5, { cache: ca, start: P + 3, rows: 2 }, V)!;
        assert.ok(f, `${name}: specStep runs on the webgpu engine`);
        assert.equal(moved(s0, gpu().stats()).jobs, 1, `${name}: one job per speculative step`);
        const fl = f.logits.slice(), fm = f.mtpLogits.slice(), fh = f.hidden.slice();
        assert.equal(f.draft, argmax(fm, 0, V), `${name}: the draft is the argmax of the MTP logits`);
        assert.deepEqual([f.next0, f.next1], [argmax(fl, 0, V), argmax(fl, V, V)], `${name}: the verify rows' argmaxes`);
        const ym = ts.mtp(0, h2, [7, 5], [{ cache: cb, start: P + 1, rows: 2 }], 1).logits.slice();
        const yv = ts.main([5, f.draft], [{ cache: cb, start: P + 3, rows: 2 }]);
        assert.ok(maxAbsDiff(fm, ym) <= 1e-4 && maxAbsDiff(fl, yv.logits) <= 1e-4 && maxAbsDiff(fh, yv.hidden) <= 1e-4,
          `${name} speculative step: MTP logits ${maxAbsDiff(fm, ym)}, verify logits ${maxAbsDiff(fl, yv.logits)}`);
        for (const l of [...Array(L + 1).keys()]) assert.ok(maxAbsDiff(ca.layers[l]!.a, cb.layers[l]!.a) <= 1e-5, `${name} speculative step: cache layer ${l}`);
      });
    }
  });
});

type Tj = { data: number[] };
test('webgpu decode engine: official incremental logits (≤ 1e-4), greedy tokens, speculative greedy = plain greedy', { skip, timeout: 600_000 }, async () => {
  await withBackend('webgpu', async () => {
    for (const set of REFS) {
      const dir = path.join(REF, set);
      const v = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8'));
      const m = await loadModel(dir);
      noGrad(() => {
        const dec = new RowDecoder(m.params, m.cfg);
        for (const s of v.sequences as Array<{ name: string; tokens: number[]; logits_decode_absorb: Tj }>) {
          if (s.tokens.length > 8) continue; // SwiftShader: the 1- and 7-token sequences
          const cache = new KVCache(m.cfg, 1, s.tokens.length, 'absorb');
          const rows: number[] = [];
          resetKernelCounts();
          s.tokens.forEach((t, i) => rows.push(...dec.main([t], [{ cache, start: i, rows: 1 }]).logits));
          assert.equal(kernelCounts()['webgpu:DecodeEngineMain'], s.tokens.length, `${set} ${s.name}: every step on the engine`);
          const d = maxAbsDiff(rows, s.logits_decode_absorb.data);
          assert.ok(d <= 1e-4, `${set} ${s.name}: incremental logits on the engine differ by ${d}`);
        }
      });
      const g = v.greedy as { prompt: number[]; max_new_tokens: number; new_tokens: number[] };
      resetKernelCounts();
      const plain = generate(m, g.prompt, { greedy: true, maxTokens: g.max_new_tokens });
      assert.deepEqual(plain.tokens, g.new_tokens, `${set}: greedy tokens on the engine`);
      const k = kernelCounts();
      assert.ok((k['webgpu:DecodeEngineMain'] ?? 0) > 0, `${set}: plain steps ran on the engine (${JSON.stringify(k)})`);
      // Speculative: the prefill (forward: the MTP layer needs its hidden states) is a 1-token run; every step after it is one engine job.
      const run = (n: number): { tokens: number[]; jobs: number; calls: number; spec: number } => {
        resetKernelCounts();
        const j0 = gpu().stats().jobs;
        const r = generate(m, g.prompt, { greedy: true, maxTokens: n, speculative: true });
        const c = kernelCounts(), spec = c['webgpu:DecodeEngineSpec'] ?? 0;
        return { tokens: r.tokens, jobs: gpu().stats().jobs - j0, calls: spec + (c['webgpu:DecodeEngineMain'] ?? 0) + (c['webgpu:DecodeEngineMtp'] ?? 0), spec };
      };
      const one = run(1), spec = run(g.max_new_tokens);
      assert.deepEqual(spec.tokens, plain.tokens, `${set}: speculative greedy = plain greedy`);
      assert.ok(spec.spec > 0, `${set}: speculative steps ran fused (DecodeEngineSpec: draft, verify and argmaxes in one job)`);
      assert.equal(spec.jobs - one.jobs, spec.calls - one.calls, `${set}: one job per engine call after the prefill`);

    }
  });
});

test('webgpu decode engine keeps host caches current: host writes between passes are uploaded (changed rows only), rollback, new caches; rows are exact', { skip, timeout: 300_000 }, async () => {
  const dir = path.join(REF, REFS[0] ?? '');
  if (!REFS.length) return;
  const m = await loadModel(dir);
  await withBackend('webgpu', () => noGrad(() => {
    const { cfg } = m, D = cfg.kvLoraRank + cfg.qkRopeHeadDim, L = cfg.numHiddenLayers;
    const ca = prefilled(m, [5, 17, 42, 9]), cb = copyCache(ca);
    const eng = new RowDecoder(m.params, cfg), ts = new RowDecoder(m.params, cfg, { engine: false });
    const step = (tok: number, pos: number, what: string): number => {
      const s0 = gpu().stats();
      const a = eng.main([tok], [{ cache: ca, start: pos, rows: 1 }]).logits.slice();
      const up = gpu().stats().upBytes - s0.upBytes;
      const b = ts.main([tok], [{ cache: cb, start: pos, rows: 1 }]).logits;
      assert.ok(maxAbsDiff(a, b) <= 1e-4, `${what}: logits differ by ${maxAbsDiff(a, b)}`);
      for (let l = 0; l < L; l++) assert.ok(maxAbsDiff(ca.layers[l]!.a, cb.layers[l]!.a) <= 1e-5, `${what}: host cache layer ${l}`);
      return up;
    };
    const base = 4 * (1 + cfg.qkRopeHeadDim) + undeclaredBytes(m);
    step(8, 4, 'first pass');
    assert.equal(step(9, 5, 'second pass'), base, 'no host change: no cache upload');
    // A host write (a prefix-cache restore, say) to rows 1..2 of layer 1: exactly those rows go up.
    for (const c of [ca, cb]) for (let i = 1 * D; i < 3 * D; i++) c.layers[1]!.a[i] = Math.cos(i);
    assert.equal(step(3, 6, 'after a host write'), base + 4 * 2 * D, 'the two changed rows are uploaded, nothing else');
    // Rollback: rewrite position 5 with another token, then continue.
    step(4, 5, 'rollback to 5');
    step(6, 6, 'after the rollback');
    // Row-exact: a 2-row pass over two sequences gives each row bit for bit as that row alone.
    const p1 = prefilled(m, [5, 17, 42, 9]), p2 = prefilled(m, [3, 1, 4]), q1 = copyCache(p1), q2 = copyCache(p2);
    const alone = [eng.main([8], [{ cache: p1, start: 4, rows: 1 }]).logits.slice(), eng.main([2], [{ cache: p2, start: 3, rows: 1 }]).logits.slice()];
    const both = eng.main([8, 2], [{ cache: q1, start: 4, rows: 1 }, { cache: q2, start: 3, rows: 1 }]).logits;
    assert.deepEqual([both.slice(0, cfg.vocabSize), both.slice(cfg.vocabSize)], alone, 'two sequences in one pass = each alone, bit for bit');
    // The same positions in a fresh cache (a new sequence): its own device copy.
    const cc = prefilled(m, [5, 17, 42, 9]), cd = copyCache(cc);
    const a = eng.main([8], [{ cache: cc, start: 4, rows: 1 }]).logits.slice();
    assert.ok(maxAbsDiff(a, ts.main([8], [{ cache: cd, start: 4, rows: 1 }]).logits) <= 1e-4, 'a new cache');
  }));
});

test('webgpu decode engine: bf16 weights keep the TypeScript path; bad input is an error naming it', { skip, timeout: 300_000 }, async () => {
  const cfg = presets.tiny!, params = initParams(cfg, { seed: 3 });
  await withBackend('webgpu', () => noGrad(() => {
    // A linear whose engine weights are bf16 bits (as the native bf16 linear's are): no webgpu engine, the TypeScript path.
    const bits = new WeakMap<Tensor, Uint16Array>();
    const bf16: RowsLinear = Object.assign((x: Float32Array, rows: number, w: Tensor, out: Float32Array) => f32RowsLinear(x, rows, w, out),
      { engine: { weightOf: (w: Tensor) => { let b = bits.get(w); if (!b) bits.set(w, (b = new Uint16Array(w.size))); return b; }, maxRows: Infinity } });
    assert.equal(decodeEngine(params, cfg, bf16.engine!), null, 'bf16 arrays: DecodeEngineCreate gives null');
    assert.equal(new RowDecoder(params, cfg, { linear: bf16 }).usesEngine(1), false, 'bf16 engine weights: RowDecoder keeps its TypeScript path');
    const eng = decodeEngine(params, cfg, f32EngineWeights)!;
    assert.ok(eng, 'f32 weights build an engine');
    const k = gpu().kernels;
    const c = new KVCache(cfg, 1, 4, 'absorb', 1);
    const caches = c.layers.slice(0, cfg.numHiddenLayers).map((l) => l.a);
    const h = new Float32Array(2 * cfg.hiddenSize), lg = new Float32Array(2 * cfg.vocabSize), cs = new Float32Array(16);
    const run = (tok: number[], start: number, rows: number, e: object = eng, cc = caches): void => k.DecodeEngineMain!(e, Int32Array.from(tok), Int32Array.of(start, rows), cc, cs, cs, 0, h, lg);
    run([1], 0, 1);
    assert.throws(() => run([cfg.vocabSize], 0, 1), /token id 512 out of range \[0, 512\)/);
    assert.throws(() => run([1, 2], 3, 2), /KV cache full/);
    assert.throws(() => run([1], 0, 1, {}), /engine must come from this backend's DecodeEngineCreate/);
    assert.throws(() => run([1], 0, 1, eng, caches.slice(1)), /caches must be an Array of 3/);
    assert.throws(() => k.DecodeEngineMtp!(eng, 1, h, Int32Array.of(1), Int32Array.of(0, 1), [c.layers[3]!.a], cs, cs, 0, h, lg), /1 MTP layers, depth 1/);
  }));
});
