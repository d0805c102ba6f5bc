// fp8Linear against the f32 linear, its memory accounting, ragged K, a whole tiny model, and the
// FP8 checkpoint's own FP8-GEMM logits.
//
// The bound tested (why 0.1 for y and dX, 0.14 for dW):
// E4M3 keeps 3 mantissa bits, so round-to-nearest gives a relative error |δ| ≤ u = 2^-4 per
// normal value (scales amax/448 keep all but values < amax·2^-15 normal; Gaussian tiles have
// essentially none). A product a·b then carries δa + δb (+ δa·δb). For a K-long dot product of
// random operands the errors do not line up with the signal: e = Σ a_k b_k (δa_k + δb_k), so
// ‖e‖/‖y‖ ≈ sqrt(E δa² + E δb²) ≤ sqrt(2)·u ≈ 0.088 < 0.1 — independent of K (FP32 accumulation
// adds only ~K·2^-24). Wgrad's X is rounded twice (1×128 along channels in Fprop, then re-tiled
// 1×128 along tokens), so its δ ≤ 2u + u²: sqrt((2u)² + u²) = sqrt(5)·u ≈ 0.14.
// The typical value is ~3x smaller (δ is spread over [-u, u]); the tests also require > 0.005:
// the operands really are quantised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import '../backend/index.js';
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad } from '../autograd/tape.js';
import * as op from '../ops/index.js';
import { presets } from '../model/config.js';
import { forward, initParams, lossFn, paramEntries } from '../model/deepseek.js';
import { loadModel } from '../model/load-node.js';
import { SafetensorsModel } from '../io/safetensors-node.js';
import { getBackend, setBackend } from '../backend/registry.js';
import { loadNativeBackend, nativeUnavailableReason } from '../backend/native-node.js';
import { fp8Linear, fp8SavedBytes, resetSavedActivationStats, resolveFp8Gemm, savedActivationStats } from './linear.js';
import { quantizeBlocks } from './quant.js';
import { AdamW } from '../train/optim.js';
import { RECIPES, bf16Linear, describeRecipe, fp32Linear, makeProjLinear, parseRecipe, recipeSettings } from './recipe.js';

const REF = path.resolve(process.cwd(), '../shared/reference');

function randn(shape: number[], seed: number, std = 1): Tensor {
  let s = seed >>> 0;
  const u = (): number => { s = (s + 0x6d2b79f5) >>> 0; let t = Math.imul(s ^ (s >>> 15), 1 | s); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296; };
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return new Tensor(d, shape);
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  return Math.sqrt(num / den);
}

/** y, dX, dW of `lin` for upstream gradient g. */
function run(lin: (x: Tensor, w: Tensor) => Tensor, x0: Tensor, w0: Tensor, g: Float32Array): { y: Float32Array; gx: Float32Array; gw: Float32Array } {
  const x = new Tensor(x0.f32.slice(), x0.shape).param();
  const w = new Tensor(w0.f32.slice(), w0.shape).param();
  const y = lin(x, w);
  backward(y, g);
  return { y: y.f32, gx: x.grad!, gw: w.grad! };
}

for (const [M, N, K, label] of [[40, 160, 256, 'K = 2·128'], [33, 150, 300, 'ragged K = 300, N = 150'], [5, 7, 64, 'K < 128']] as const) {
  test(`fp8Linear: y, dX, dW within the E4M3 bound of the f32 linear (${label})`, () => {
    const x = randn([M, K], 1 + K), w = randn([N, K], 2 + K, 0.05), g = randn([M, N], 3 + K).f32;
    const ref = run(op.linear, x, w, g);
    const q = run(fp8Linear, x, w, g);
    const ey = relErr(q.y, ref.y), ex = relErr(q.gx, ref.gx), ew = relErr(q.gw, ref.gw);
    assert.ok(ey < 0.1 && ey > 0.005, `y relative error ${ey}`);
    assert.ok(ex < 0.1 && ex > 0.005, `dX relative error ${ex}`);
    assert.ok(ew < 0.14 && ew > 0.005, `dW relative error ${ew}`);
  });
}

// The native path (codes decoded exactly to BF16, FP32 accumulation) computes the same sums as the
// TS reference (decoded to f32, FP32 accumulation): only the summation order differs, so the two
// agree to ~K·2^-24 relative, far below the E4M3 error (> 0.005) that both carry.
const nativeBe = loadNativeBackend({ threads: 2 });
test('fp8Linear: native fp8Gemm path agrees with the TS reference (Fprop, Dgrad, Wgrad)', { skip: nativeBe ? false : `native backend: ${nativeUnavailableReason()}` }, () => {
  const prev = getBackend().name;
  setBackend('native');
  try {
    assert.equal(resolveFp8Gemm(), 'native');
    assert.equal(resolveFp8Gemm('ts'), 'ts');
    // ragged K and N, M spanning two 128-token blocks (Wgrad runs one native call per block)
    for (const [M, N, K, fmt] of [[200, 150, 300, 'fp32'], [40, 160, 256, 'ue8m0'], [5, 7, 64, 'fp32']] as const) {
      const x = randn([M, K], 31 + K), w = randn([N, K], 32 + K, 0.05), g = randn([M, N], 33 + K).f32;
      const ts = run((a, b) => fp8Linear(a, b, { gemm: 'ts', scaleFmt: fmt }), x, w, g);
      const nat = run((a, b) => fp8Linear(a, b, { gemm: 'native', scaleFmt: fmt }), x, w, g);
      const f32 = run(op.linear, x, w, g);
      for (const k of ['y', 'gx', 'gw'] as const) {
        const e = relErr(nat[k], ts[k]);
        assert.ok(e < 1e-5, `${M}x${N}x${K} ${k}: native vs ts relative difference ${e}`);
        assert.ok(relErr(nat[k], f32[k]) > 0.005, `${k}: native path did not quantise`);
      }
    }
  } finally {
    setBackend(prev);
  }
  assert.equal(resolveFp8Gemm(), prev === 'native' ? 'native' : 'ts');
  if (prev !== 'native') assert.throws(() => resolveFp8Gemm('native'), /needs the native backend \(or webgpu\) active/);
});

test('fp8Linear: ue8m0 scales stay within the same bound; 3-D input keeps its leading shape', () => {
  const x = randn([2, 9, 200], 7), w = randn([70, 200], 8, 0.1), g = randn([2, 9, 70], 9).f32;
  const ref = run(op.linear, x, w, g);
  const q = run((a, b) => fp8Linear(a, b, { scaleFmt: 'ue8m0' }), x, w, g);
  assert.ok(relErr(q.y, ref.y) < 0.1 && relErr(q.gx, ref.gx) < 0.1 && relErr(q.gw, ref.gw) < 0.14);
  assert.deepEqual(fp8Linear(x, w).shape, [2, 9, 70]);
  assert.throws(() => fp8Linear(x, randn([70, 199], 1)), /does not end in 199/);
});

test('fp8Linear saves ~1/4 of the f32 activation bytes and releases them after backward', () => {
  const M = 64, K = 256, N = 96;
  const x = randn([M, K], 11).param(), w = randn([N, K], 12, 0.05).param();
  const before = savedActivationStats().live;
  resetSavedActivationStats();
  const y = fp8Linear(x, w);
  const saved = savedActivationStats().live - before;
  assert.equal(saved, fp8SavedBytes(M, K));
  const ratio = saved / (4 * M * K);
  assert.ok(ratio > 0.25 && ratio < 0.26, `saved/f32 = ${ratio}`); // 1 byte + 4/128 bytes of scale per value
  backward(op.sum(y));
  assert.equal(savedActivationStats().live, before);
  assert.equal(savedActivationStats().peak - before, saved);
  // Nothing is saved when no gradient is needed.
  noGrad(() => fp8Linear(x, w));
  assert.equal(savedActivationStats().live, before);
});

test('tiny DeepSeek model: loss with FP8 projections within 1% of f32 at init, and gradients flow', () => {
  const cfg = structuredClone(presets.tiny!);
  const p = initParams(cfg, { seed: 42 });
  const B = 2, T = 16;
  const toks = Array.from({ length: B * (T + 1) }, (_, i) => (i * 7919 + 13) % cfg.vocabSize);
  const inp = Tensor.ints(toks.filter((_, i) => i % (T + 1) < T), [B, T]);
  const tgt = Tensor.ints(toks.filter((_, i) => i % (T + 1) > 0), [B * T]);
  const f32 = noGrad(() => lossFn(p, cfg, inp, tgt, { mtpWeight: 0.3 })).loss.item();
  const r = lossFn(p, cfg, inp, tgt, { mtpWeight: 0.3, projLinear: fp8Linear, recompute: true });
  const fp8 = r.loss.item();
  assert.ok(Math.abs(fp8 - f32) / f32 < 0.01, `fp8 ${fp8} vs f32 ${f32}`);
  assert.ok(fp8 !== f32, 'FP8 loss identical to f32: nothing was quantised');
  backward(r.loss);
  const g = p.layers[0]!.mlp!.up.grad;
  assert.ok(g && g.some((v) => v !== 0), 'no gradient reached an FP8 projection weight');
});

test('FP8 checkpoint: re-quantised weights give the checkpoint codes; logits match its FP8-GEMM path', async () => {
  const dir = path.join(REF, 'tiny-dsv3-fp8');
  const { cfg, params } = await loadModel(dir);
  const st = await SafetensorsModel.open(dir);
  let checked = 0;
  try {
    for (const [name, t] of paramEntries(params, cfg)) {
      if (!st.has(name) || st.info(name).dtype !== 'F8_E4M3') continue;
      const [r, c] = t.shape as [number, number];
      const q = quantizeBlocks(t.f32, r, c);
      const raw = await st.bytes(name);
      const scales = await st.float32(name.replace(/weight$/, 'weight_scale_inv'));
      assert.deepEqual(q.scales, scales, `${name}: re-derived scales differ`);
      // Codes may differ only as ±0 (both decode to 0).
      for (let i = 0; i < raw.length; i++) if (raw[i] !== q.codes[i] && (raw[i]! & 0x7f) + (q.codes[i]! & 0x7f) !== 0) assert.fail(`${name}[${i}]: code ${q.codes[i]} vs checkpoint ${raw[i]}`);
      checked++;
    }
  } finally { st.close(); }
  assert.ok(checked > 20, `only ${checked} FP8 weights checked`);
  const vec = JSON.parse(await readFile(path.join(dir, 'vectors.json'), 'utf8')) as { fp8_gemm_path: { sequence: number[]; logits_gemm_fp8_path: { shape: [number, number]; data: number[] | number[][] } } };
  const ref = vec.fp8_gemm_path;
  const seq = ref.sequence;
  const want = Float32Array.from((ref.logits_gemm_fp8_path.data as number[][]).flat(2) as number[]);
  const got = noGrad(() => forward(params, cfg, Tensor.ints(seq, [1, seq.length]), { attn: 'absorb', projLinear: fp8Linear })).logits.f32;
  const V = cfg.vocabSize;
  assert.equal(got.length, want.length);
  let same = 0, maxd = 0;
  for (let r = 0; r < seq.length; r++) {
    let ag = 0, aw = 0;
    for (let j = 0; j < V; j++) {
      if (got[r * V + j]! > got[r * V + ag]!) ag = j;
      if (want[r * V + j]! > want[r * V + aw]!) aw = j;
      maxd = Math.max(maxd, Math.abs(got[r * V + j]! - want[r * V + j]!));
    }
    if (ag === aw) same++;
  }
  assert.ok(same >= seq.length - 1, `argmax agrees on ${same}/${seq.length} rows`);
  assert.ok(maxd < 1e-4, `max |Δlogit| ${maxd} (the official FP8 path, emulated exactly; quantisation noise alone is ~3)`);
});

// ---------------------------------------------------------------------------------------------
// Recipes (src/fp8/recipe.ts) and the experiment verb's command line

test('bf16Linear: within the BF16 bound (sqrt(2)·2^-8 ≈ 0.0055), saves 2 bytes per value; fp32Linear counts 4', () => {
  const M = 24, N = 50, K = 200;
  const x = randn([M, K], 21), w = randn([N, K], 22, 0.05), g = randn([M, N], 23).f32;
  const ref = run(op.linear, x, w, g);
  const b = run(bf16Linear, x, w, g);
  for (const [k, e] of [['y', relErr(b.y, ref.y)], ['dX', relErr(b.gx, ref.gx)], ['dW', relErr(b.gw, ref.gw)]] as const) {
    assert.ok(e < 0.0056 && e > 0, `bf16 ${k} relative error ${e}`);
  }
  for (const [lin, per] of [[bf16Linear, 2], [fp32Linear, 4], [makeProjLinear('fp8'), 0]] as const) {
    const before = savedActivationStats().live;
    const xx = new Tensor(x.f32.slice(), [M, K]).param();
    const y = lin(xx, w);
    const saved = savedActivationStats().live - before;
    if (per) assert.equal(saved, per * M * K);
    else assert.equal(saved, fp8SavedBytes(M, K));
    backward(op.sum(y));
    assert.equal(savedActivationStats().live, before);
  }
});

test('AdamW: BF16 moments take half the bytes and track the f32 optimizer; recipes are labelled honestly', () => {
  const mk = (): Tensor => new Tensor(Float32Array.from({ length: 300 }, (_, i) => Math.sin(i)), [10, 30]).param();
  const pa = mk(), pb = mk();
  const a = new AdamW([pa], { momentDtype: 'f32' }), b = new AdamW([pb], { momentDtype: 'bf16' });
  assert.equal(a.stateBytes(), 2 * 300 * 4);
  assert.equal(b.stateBytes(), 2 * 300 * 2);
  for (let s = 0; s < 50; s++) {
    for (const p of [pa, pb]) { p.grad = Float32Array.from(p.f32, (v) => 2 * (v - 0.5)); } // d/dw (w - 0.5)²
    a.step(0.01); b.step(0.01);
  }
  assert.ok(relErr(pb.f32, pa.f32) < 1e-2, 'bf16-moment AdamW drifted from the f32 one');
  assert.ok(Math.abs(pa.f32[7]! - 0.5) < Math.abs(Math.sin(7) - 0.5), 'AdamW did not move towards the minimum');
  assert.equal(recipeSettings('fp8').momentDtype, 'bf16');
  assert.equal(recipeSettings('fp8').recompute, true);
  for (const r of RECIPES) assert.ok(!/tensor core/i.test(describeRecipe(r)));
  assert.match(describeRecipe('fp8'), /emulated on CPU/);
  assert.throws(() => parseRecipe('fp4'), /use fp32, bf16, fp8/);
});

test('frugal experiment: --help, and bad command lines are usage errors', async () => {
  const { run: exp } = await import('../cli/experiment.js');
  const { UsageError } = await import('../errors.js');
  const log = console.log;
  let out = '';
  console.log = (s: string) => { out += s; };
  try { assert.equal(await exp(['--help']), 0); } finally { console.log = log; }
  assert.match(out, /experiment fp8/);
  await assert.rejects(exp(['fp9']), (e) => e instanceof UsageError && /unknown experiment 'fp9'/.test(e.message));
  await assert.rejects(exp(['fp8', '--config', 'huge']), UsageError);
  await assert.rejects(exp(['fp8', '--recipes', 'fp8,int4']), (e) => e instanceof UsageError && /int4/.test(e.message));
  await assert.rejects(exp(['fp8', '--steps', '0']), UsageError);
});
