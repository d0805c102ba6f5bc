// Device residency of the webgpu backend (src/backend/residency.ts, webgpu/index.ts), on Dawn in
// Node (SwiftShader without a GPU): parameters and AdamW moments stay on the device between kernel
// calls, results are those of the run without residency and of native, the transfers per training
// step and per decode token drop by (multiples of) the parameter bytes, and a parameter written on
// the host — announced by a version bump — is what the next kernel sees. Sizes are tiny: every
// SwiftShader kernel call costs milliseconds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { disposeBackends } from '../src/backend/setup-node.js';
import { backendsUnderTest, whyNotUnderTest, withBackend } from '../src/backend/testing-node.js';
import { getBackendByName, kernel, kernelCounts, resetKernelCounts, type MatMulArgs } from '../src/backend/registry.js';
import { tsAdamW, tsMatMul, tsSumSquares } from '../src/backend/ts.js';
import { isDeviceNewer } from '../src/backend/residency.js';
import type { WebGPUBackend } from '../src/backend/webgpu/index.js';
import { Tensor } from '../src/autograd/tensor.js';
import { maxAbsDiff } from '../src/ops/compare.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { Trainer, defaultTrainerOptions, sampleTokens } from '../src/train/trainer.js';
import { AdamW } from '../src/train/optim.js';

after(() => disposeBackends());

const names = await backendsUnderTest({ webgpu: true });
const skip = names.includes('webgpu') ? false : `webgpu not under test: ${whyNotUnderTest('webgpu')}`;
const gpu = (): WebGPUBackend => getBackendByName('webgpu') as WebGPUBackend;
const ref = names.includes('native') ? 'native' : 'ts';
type Stats = ReturnType<WebGPUBackend['stats']>;
const delta = (a: Stats, b: Stats): { jobs: number; up: number; down: number } => ({ jobs: b.jobs - a.jobs, up: b.upBytes - a.upBytes, down: b.downBytes - a.downBytes });

/** Trains `tiny` for 2 steps (batch 1 × seq 8) on the backend; the webgpu stats of the second (steady-state) step. */
async function train(be: string, resident: boolean): Promise<{ losses: number[]; last: { jobs: number; up: number; down: number } | null; paramBytes: number; m: Float32Array[]; w: Float32Array[]; ran: string[] }> {
  return withBackend(be, async () => {
    if (be === 'webgpu') gpu().setResidency(resident);
    resetKernelCounts();
    const cfg = structuredClone(presets.tiny!);
    const batch = 1, seq = 8, steps = 2;
    const tokens = new Int32Array(batch * (seq + 1) * 8).map((_, i) => (i * 7919) % cfg.vocabSize);
    const losses: number[] = [], st: Stats[] = [], stepped: number[] = [];
    const trainer = new Trainer({ cfg, params: initParams(cfg, { seed: 1 }), train: tokens, val: tokens.subarray(0, batch * (seq + 1) * 2), meter: { flopsPerToken: 0, peakFlops: 1, usdPerToken: 0 },
      options: { ...defaultTrainerOptions, steps, batch, seq, evalEvery: 10_000, logEvery: 10_000, saveEvery: 0, evalBatches: 1, warmup: 1 } }, {
      onStep: (_s, loss) => {
        losses.push(loss);
        if (be === 'webgpu') st.push(gpu().stats());
        // The bytes of the parameters this step updated (an expert no token was routed to has no gradient).
        stepped.push(trainer.trainable.reduce((s, p) => s + (p.grad ? p.size * 4 : 0), 0));
      },
    });
    await trainer.run();
    // state() copies the device-newer moments back: they must be the ones the device computed.
    const m = trainer.optimizer.state().m as Float32Array[];
    const paramBytes = stepped[stepped.length - 1]!;
    return { losses, last: st.length ? delta(st[st.length - 2]!, st[st.length - 1]!) : null, paramBytes, m: m.map((a) => a.slice()), w: trainer.trainable.map((p) => p.f32.slice()), ran: Object.keys(kernelCounts()) };
  });
}

test('training on webgpu with residency: same losses, parameters and moments, ≥ 3× the parameter bytes fewer uploads per step', { skip, timeout: 300_000 }, async () => {
  try {
    const base = await train(ref, true);
    const off = await train('webgpu', false);
    const on = await train('webgpu', true);
    for (const r of [off, on]) assert.ok(maxAbsDiff(r.losses, base.losses) <= 1e-4, `webgpu losses ${r.losses} vs ${ref} ${base.losses}`);
    // The MoE layers and the output heads ran as webgpu's fused kernels, not the composed ops.
    for (const k of ['MoeFfnForward', 'MoeFfnBackward', 'LinearCrossEntropy', 'AttentionBackward', 'AdamWBatch']) assert.ok(on.ran.includes(`webgpu:${k}`), `webgpu:${k} did not run: ${on.ran}`);
    // Residency changes where operands live, not what is computed: the same kernels in the same order.
    assert.ok(maxAbsDiff(on.losses, off.losses) <= 1e-6, `residency changed the losses: ${on.losses} vs ${off.losses}`);
    on.w.forEach((w, i) => assert.ok(maxAbsDiff(w, off.w[i]!) <= 1e-6, `parameter ${i} differs with residency`));
    on.m.forEach((m, i) => assert.ok(maxAbsDiff(m, off.m[i]!) <= 1e-7, `moment m ${i} differs with residency (device copy not synced back?)`));
    on.m.forEach((m, i) => assert.ok(maxAbsDiff(m, base.m[i]!) <= 1e-4, `moment m ${i} differs from ${ref} by ${maxAbsDiff(m, base.m[i]!)}`));
    const P = on.paramBytes, a = off.last!, b = on.last!;
    console.log(`# tiny train step (batch 1 × seq 8), stepped parameters ${(P / 1e6).toFixed(2)} MB: residency off ${a.jobs} jobs, ${(a.up / 1e6).toFixed(2)} MB up, ${(a.down / 1e6).toFixed(2)} MB down; on ${b.jobs} jobs, ${(b.up / 1e6).toFixed(2)} MB up, ${(b.down / 1e6).toFixed(2)} MB down`);
    // Off, every step uploads w (forward, backward, AdamW), m, v and copies w, m, v back; on, AdamW alone saves w + m + v up and m + v down.
    assert.ok(b.up <= a.up - 3 * P, `uploads per step with residency ${b.up} not ≥ 3 × ${P} below ${a.up}`);
    assert.ok(b.down <= a.down - 2 * P, `read-backs per step with residency ${b.down} not ≥ 2 × ${P} below ${a.down}`);
    assert.equal(b.jobs, a.jobs, 'residency changes no job count');
  } finally { gpu().setResidency(true); }
});

test('decode on webgpu with residency: same tokens, uploads per token a fraction of the parameter bytes', { skip, timeout: 300_000 }, async () => {
  const cfg = structuredClone(presets.tiny!);
  const params = initParams(cfg, { seed: 3 });
  const P = [...collect(params)].reduce((s, t) => s + t.size * 4, 0);
  const prompt = [5, 17, 99, 3], gen = 3, o = { temperature: 0, topK: 1, seed: 1 };
  const want = await withBackend(ref, () => sampleTokens(params, cfg, prompt, gen, o));
  const per: Record<string, number> = {};
  try {
    for (const resident of [false, true]) {
      await withBackend('webgpu', () => {
        gpu().setResidency(resident);
        sampleTokens(params, cfg, prompt, gen, o); // warm: uploads the weights it reads (prefill, decode step, routed experts) once
        // Per decoded token: a run of gen tokens minus a run of the prefill alone, over gen − 1 steps.
        const s0 = gpu().stats();
        const got = sampleTokens(params, cfg, prompt, gen, o);
        const s1 = gpu().stats();
        sampleTokens(params, cfg, prompt, 1, o);
        per[String(resident)] = (delta(s0, s1).up - delta(s1, gpu().stats()).up) / (gen - 1);
        assert.deepEqual(got, want, `greedy tokens on webgpu (residency ${resident})`);
      });
    }
  } finally { gpu().setResidency(true); }
  console.log(`# tiny decode, parameters ${(P / 1e6).toFixed(2)} MB: ${(per.false! / 1e3).toFixed(0)} kB up per token without residency, ${(per.true! / 1e3).toFixed(0)} kB with`);
  // A token reads the dense weights and its 2 of 8 routed experts per MoE layer; with residency only activations and the KV cache travel.
  assert.ok(per.true! < per.false! / 10, `with residency a token uploads ${per.true} B, not < a tenth of the ${per.false} B without`);
  assert.ok(per.true! < P / 20, `with residency a token uploads ${per.true} B, not < a twentieth of the ${P} parameter bytes`);
});

test('a parameter written on the host (version bumped) is what the next webgpu kernel reads; an unannounced write is caught', { skip }, async () => {
  const p = new Tensor(Float32Array.from({ length: 12 }, (_, i) => i / 7), [3, 4]).param('w');
  const x = Float32Array.from({ length: 6 }, (_, i) => 1 + i);
  const args = (c: Float32Array): MatMulArgs => ({ a: x, b: p.f32, c, batch: 1, m: 2, n: 4, k: 3, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
  const mm = (c: Float32Array): void => kernel('MatMul')(args(c));
  const expect = (): Float32Array => { const c = new Float32Array(8); tsMatMul(args(c)); return c; };
  await withBackend('webgpu', () => {
    const c = new Float32Array(8);
    mm(c);
    const h0 = gpu().stats().residentHits;
    mm(c);
    assert.equal(gpu().stats().residentHits, h0 + 1, 'the unchanged parameter was not reused from the device');
    assert.ok(maxAbsDiff(c, expect()) <= 1e-4);
    p.f32.fill(0.5); p.version++;
    mm(c);
    assert.ok(maxAbsDiff(c, expect()) <= 1e-4, `after a host write the kernel read ${c} (stale device copy), want ${expect()}`);
    // Verify mode (on in tests unless FRUGAL_WEBGPU_VERIFY=0): a write without the bump is an error, never a silent stale read.
    // A view into a declared array (a weight block read in place) reads the parent's device copy through a binding window.
    const big = new Tensor(Float32Array.from({ length: 64 + 12 }, (_, i) => i / 5), [76]).param('blocks');
    const view = big.f32.subarray(64), vargs = (c2: Float32Array): MatMulArgs => ({ ...args(c2), b: view });
    const want2 = (): Float32Array => { const c2 = new Float32Array(8); tsMatMul(vargs(c2)); return c2; };
    kernel('MatMul')(vargs(c));
    const h1 = gpu().stats().residentHits;
    kernel('MatMul')(vargs(c));
    assert.ok(gpu().stats().residentHits > h1, 'the view was not read from its parent\'s device copy');
    assert.ok(maxAbsDiff(c, want2()) <= 1e-4, `view: ${c} vs ${want2()}`);
    big.f32.fill(-2, 60); big.version++;
    kernel('MatMul')(vargs(c));
    assert.ok(maxAbsDiff(c, want2()) <= 1e-4, `after a host write to the parent the view read ${c}, want ${want2()}`);
    if (process.env.FRUGAL_WEBGPU_VERIFY === '1') {
      p.f32[1] = 9;
      assert.throws(() => mm(c), /without an announced write/);
      p.version++;
      mm(c);
      assert.ok(maxAbsDiff(c, expect()) <= 1e-4);
    }
  });
});

test('AdamW on webgpu keeps moments on the device; state() and another backend\'s step sync them back', { skip }, async () => {
  const mk = (): Tensor[] => [new Tensor(Float32Array.from({ length: 300 }, (_, i) => Math.sin(i)), [20, 15]).param('a'), new Tensor(Float32Array.from({ length: 7 }, (_, i) => i / 10), [7]).param('b')];
  const grads = (ps: Tensor[], s: number): void => { for (const p of ps) p.grad = Float32Array.from({ length: p.size }, (_, i) => Math.cos(i * 0.3 + s)); };
  // Reference: three steps on ts.
  const r = mk(), ro = new AdamW(r);
  await withBackend('ts', () => { for (let s = 0; s < 3; s++) { grads(r, s); ro.step(1e-2); } });
  // Two steps on webgpu, then one on ts (moments must come back from the device first).
  const g = mk(), go = new AdamW(g);
  resetKernelCounts();
  await withBackend('webgpu', () => { for (let s = 0; s < 2; s++) { grads(g, s); go.step(1e-2); } });
  assert.ok(kernelCounts()['webgpu:AdamWBatch'], 'AdamW did not run on webgpu (batched)');
  const internal = (go as unknown as { m: Float32Array[] }).m;
  assert.ok(isDeviceNewer(internal[0]!), 'the moments were copied back every step (not resident)');
  await withBackend('ts', () => { grads(g, 2); go.step(1e-2); });
  g.forEach((p, i) => assert.ok(maxAbsDiff(p.f32, r[i]!.f32) <= 1e-6, `parameter ${i} after webgpu, webgpu, ts steps differs from ts by ${maxAbsDiff(p.f32, r[i]!.f32)}`));
  // Back on webgpu: the host moments (newer now) are uploaded again, and state() reads the device's.
  await withBackend('webgpu', () => { grads(g, 3); go.step(1e-2); });
  await withBackend('ts', () => { grads(r, 3); ro.step(1e-2); });
  const sg = go.state(), sr = ro.state();
  for (const k of ['m', 'v'] as const) sg[k].forEach((a, i) => assert.ok(maxAbsDiff(a as Float32Array, sr[k][i] as Float32Array) <= 1e-6, `${k} ${i} differs`));
  g.forEach((p, i) => assert.ok(maxAbsDiff(p.f32, r[i]!.f32) <= 1e-6, `parameter ${i} differs after 4 steps`));
  // A resume: loadState overwrites the device-newer moments (here with doubled ones); the next webgpu step must start from them.
  const doubled = { ...sr, m: sr.m.map((a) => (a as Float32Array).map((x) => 2 * x)), v: sr.v.map((a) => (a as Float32Array).slice()) };
  ro.loadState(doubled); go.loadState(doubled);
  await withBackend('webgpu', () => { grads(g, 4); go.step(1e-2); });
  await withBackend('ts', () => { grads(r, 4); ro.step(1e-2); });
  g.forEach((p, i) => assert.ok(maxAbsDiff(p.f32, r[i]!.f32) <= 1e-6, `parameter ${i} after loadState differs by ${maxAbsDiff(p.f32, r[i]!.f32)} (stale device moments?)`));
});

/** Every tensor of a params tree, once. */
function* collect(o: unknown, seen = new Set<unknown>()): Generator<Tensor> {
  if (!o || typeof o !== 'object' || seen.has(o)) return;
  seen.add(o);
  if (o instanceof Tensor) { yield o; return; }
  for (const v of Object.values(o as Record<string, unknown>)) yield* collect(v, seen);
}

test('AdamWBatch and SumSquaresBatch on webgpu: one job each, the per-item kernels\' results (declared and plain arrays)', { skip }, async () => {
  const sizes = [300, 7, 1025, 64, 2000];
  const mk = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
  const h = { beta1: 0.9, beta2: 0.95, eps: 1e-8, stepSize: 1e-2, decay: 1 - 1e-3, invBc2Sqrt: 1 / Math.sqrt(0.05) };
  // Items 0 and 2 are declared parameters (resident on webgpu), the rest plain arrays.
  const items = sizes.map((n, k) => {
    const w = k % 2 === 0 ? new Tensor(mk(n, k), [n]).param().f32 : mk(n, k);
    return { w, g: mk(n, k + 10), m: mk(n, k + 20).map(Math.abs), v: mk(n, k + 30).map((x) => x * x), h };
  });
  const want = items.map((it) => ({ w: it.w.slice(), g: it.g, m: it.m.slice(), v: it.v.slice(), h }));
  for (const it of want) tsAdamW(it.w, it.g, it.m, it.v, it.h);
  await withBackend('webgpu', () => {
    const j0 = gpu().stats().jobs;
    kernel('AdamWBatch')(items);
    assert.equal(gpu().stats().jobs, j0 + 1, 'AdamWBatch of 5 parameters is one job');
    const sums = kernel('SumSquaresBatch')(items.map((it) => it.g));
    assert.equal(gpu().stats().jobs, j0 + 2, 'SumSquaresBatch of 5 arrays is one job');
    sums.forEach((s, k) => { const r = tsSumSquares(items[k]!.g); assert.ok(Math.abs(s - r) <= 1e-5 * r, `sum ${k}: ${s} vs ${r}`); });
  });
  items.forEach((it, k) => {
    for (const key of ['w', 'm', 'v'] as const) assert.ok(maxAbsDiff(it[key], want[k]![key]) <= 1e-6, `item ${k} ${key} off by ${maxAbsDiff(it[key], want[k]![key])}`);
  });
});

test('MatMulBatch on webgpu: independent items in one job with a shared operand uploaded once; dependent items in order', { skip }, async () => {
  const mk = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
  const args = (a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean, acc: boolean): MatMulArgs =>
    ({ a, b, c, batch: 1, m, n, k, transA, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: acc });
  // A linear layer's backward: dX = g·W and dW += gᵀ·X share g [70, 40].
  const g = mk(70 * 40, 1), w = mk(40 * 33, 2), x = mk(70 * 33, 3), dW = mk(40 * 33, 4);
  const items = [args(g, w, new Float32Array(70 * 33), 70, 33, 40, false, false), args(g, x, dW.slice(), 40, 33, 70, true, true)];
  const want = items.map((it) => { const c = it.c.slice(); tsMatMul({ ...it, c }); return c; });
  await withBackend('webgpu', () => {
    const s0 = gpu().stats();
    kernel('MatMulBatch')(items);
    const s1 = gpu().stats();
    assert.equal(s1.jobs - s0.jobs, 1, 'two independent products: one job');
    // g once, w, x and dW (accumulated) up: not g twice.
    assert.equal(s1.upBytes - s0.upBytes, 4 * (g.length + w.length + x.length + dW.length), 'the shared operand is uploaded once');
    // The second item reads the first one's output: run one after the other, as MatMul would.
    const c1 = new Float32Array(70 * 33), c2 = new Float32Array(33 * 5), d = mk(70 * 5, 5);
    kernel('MatMulBatch')([args(g, w, c1, 70, 33, 40, false, false), args(c1, d, c2, 33, 5, 70, true, false)]);
    const r1 = new Float32Array(c1.length), r2 = new Float32Array(c2.length);
    tsMatMul(args(g, w, r1, 70, 33, 40, false, false)); tsMatMul(args(r1, d, r2, 33, 5, 70, true, false));
    assert.ok(maxAbsDiff(c2, r2) <= 1e-4, `dependent items: ${maxAbsDiff(c2, r2)}`);
  });
  items.forEach((it, k) => assert.ok(maxAbsDiff(it.c, want[k]!) <= 1e-4, `item ${k} off by ${maxAbsDiff(it.c, want[k]!)}`));
});
