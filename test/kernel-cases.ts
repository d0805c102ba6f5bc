// The kernel cases every backend must agree with `ts` on (browser-safe: test/backends.test.ts runs
// them in Node, test/browser-gpu.test.ts in a page on webgpu and wasm): every op that dispatches
// to a kernel with odd shapes, fused attention in all its geometries, the whole-array kernels past
// the threading threshold, row scatter-add with repeats, the FP8 recipe's kernels (the backend's
// own where it has them: codes compare exactly at this tolerance), and a whole model
// forward/backward/decode.
import { kernel, optionalKernel, type MatMulArgs } from '../src/backend/registry.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad } from '../src/autograd/tape.js';
import * as op from '../src/ops/index.js';
import { randn } from '../src/ops/gradcheck.js';
import { initParams, lossFn, trainableParams, forward, KVCache } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { scaledGemm } from '../src/fp8/kernels.js';
import { resolveFp8Gemm } from '../src/fp8/linear.js';
import { edgy, gemmLayouts, quantAll } from './fp8-cases.js';

/** Runs every case on the active backend; one output array per checked quantity. */
export function kernelCases(): Float32Array[] {
  const outs: Float32Array[] = [];
  for (const [m, k, n] of [[1, 7, 5], [7, 129, 130], [33, 64, 17], [129, 1, 3]] as const) {
    for (const tA of [false, true]) for (const tB of [false, true]) {
      const a = randn(tA ? [2, k, m] : [2, m, k], m + k), b = randn(tB ? [n, k] : [k, n], n * 3 + k);
      outs.push(op.matmul(a, b, { transA: tA, transB: tB }).f32);
    }
  }
  const x = randn([13, 129], 5), w = randn([129], 6), u = randn([13, 129], 7);
  outs.push(op.rmsNorm(x, w).f32, op.softmax(x).f32, op.siluMul(x, u).f32, op.linear(x, randn([31, 129], 8)).f32);
  // Attention (fused kernels where a backend has them): per-head K/V, one shared K/V head, S > T,
  // a case past the threading threshold, and the latent form (values = a prefix of the keys).
  let seed = 20;
  for (const [B, T, S, H, KH, Dk, Dv] of [[2, 5, 7, 3, 3, 6, 5], [3, 4, 9, 4, 1, 7, 3], [2, 64, 64, 4, 4, 48, 32], [2, 40, 70, 4, 1, 24, 16], [1, 150, 170, 2, 2, 16, 8]] as const) {
    const q = randn([B, T, H, Dk], seed++), k = randn([B, S, KH, Dk], seed++), v = randn([B, S, KH, Dv], seed++);
    for (const t of [q, k, v]) t.requiresGrad = true;
    const o = op.causalAttention(q, k, v, 0.37);
    backward(op.sum(op.mul(o, randn([B, T, H, Dv], seed++))));
    outs.push(o.f32, q.grad!, k.grad!, v.grad!);
  }
  for (const [B, T, S, H, D, dv] of [[1, 1, 9, 4, 10, 7], [2, 33, 40, 3, 12, 8]] as const) {
    const q = randn([B, T, H, D], seed++), keys = randn([B, S, 1, D], seed++);
    q.requiresGrad = true; keys.requiresGrad = true;
    const o = op.latentAttention(q, keys, dv, 0.29);
    backward(op.sum(op.mul(o, randn([B, T, H, dv], seed++))));
    outs.push(o.f32, q.grad!, keys.grad!);
  }
  // Whole-array kernels on an odd length past the threading threshold (2^18).
  const n = 300_007;
  const wv = randn([n], 9).f32, gv = randn([n], 10).f32, mv = randn([n], 11).f32.map((v) => v * 0.1);
  const vv = randn([n], 12).f32.map((v) => v * v * 0.01);
  kernel('AdamW')(wv, gv, mv, vv, { beta1: 0.9, beta2: 0.95, eps: 1e-8, stepSize: 1e-3 / 0.1, decay: 1 - 1e-4, invBc2Sqrt: 1 / Math.sqrt(0.05) });
  const acc = randn([n], 13).f32;
  kernel('AddInto')(acc, gv);
  outs.push(wv, mv, vv, acc, Float32Array.of(kernel('SumSquares')(gv) / n));
  // Row scatter-add with repeated rows, gathers, scales, and an odd row width.
  const dstRows = randn([7, 19], 14).f32, srcRows = randn([5, 19], 15).f32;
  kernel('RowsAxpy')(dstRows, Int32Array.of(6, 0, 6, 3, 1), srcRows, Int32Array.of(4, 4, 0, 2, 1), Float32Array.of(0.5, -1, 2, 1, 3), 5, 19);
  kernel('RowsAxpy')(dstRows, null, srcRows, null, null, 5, 19);
  outs.push(dstRows);
  // Training-step row kernels: rope (forward, backward sign, a copied prefix), the per-head key
  // concat and its backward (take < width), cross-entropy rows with an ignored row, past the
  // threading threshold (2^18 work) too.
  for (const [B, T, H, D, off] of [[2, 5, 3, 10, 4], [4, 70, 8, 48, 32]] as const) {
    const half = (D - off) / 2, x = randn([B, T, H, D], seed++).f32, cos = randn([T * half], seed++).f32, sin = randn([T * half], seed++).f32;
    const y = new Float32Array(x.length), back = new Float32Array(x.length);
    kernel('Rope')(x, y, cos, sin, { B, T, H, D, offset: off }, 1);
    kernel('Rope')(x, back, cos, sin, { B, T, H, D, offset: off }, -1);
    outs.push(y, back);
  }
  for (const [R, H, Df, Da, Db] of [[3, 2, 9, 5, 4], [600, 8, 64, 32, 16]] as const) {
    const a = randn([R, H, Df], seed++).f32, b = randn([R, Db], seed++).f32, out = new Float32Array(R * H * (Da + Db));
    kernel('ConcatHeads')(a, b, out, R, H, Df, Da, Db);
    const ga = new Float32Array(a.length).fill(7), gb = new Float32Array(b.length).fill(7);
    kernel('ConcatHeadsBackward')(randn([R, H, Da + Db], seed++).f32, ga, gb, R, H, Df, Da, Db);
    outs.push(out, ga, gb);
  }
  for (const [rows, V] of [[5, 37], [80, 4096]] as const) {
    const tg = Int32Array.from({ length: rows }, (_, i) => (i === 1 ? -100 : (i * 7919) % V));
    const logits = randn([rows, V], seed++, 3).f32, grad = logits.slice();
    const l0 = kernel('CrossEntropyRows')(logits, rows, V, tg, -100, 0.25, false);
    const l1 = kernel('CrossEntropyRows')(grad, rows, V, tg, -100, 0.25, true);
    outs.push(Float32Array.of(l0, l1), grad);
  }
  // The fused output head (webgpu's LinearCrossEntropy kernel where the backend has it): two chunks
  // of 256 rows at V = 4096, ignored rows in both, loss and both gradients.
  {
    const N = 300, H = 5, V = 4096;
    const xh = randn([N, H], seed++), wh = randn([V, H], seed++);
    xh.requiresGrad = true; wh.requiresGrad = true;
    const loss = op.linearCrossEntropy(xh, wh, Tensor.ints(Array.from({ length: N }, (_, i) => (i % 37 === 5 ? -100 : (i * 7919) % V))));
    backward(op.mulScalar(loss, 2));
    outs.push(Float32Array.of(loss.item()), xh.grad!, wh.grad!);
  }
  // MatMulBatch (webgpu: one job) where a backend has it, else MatMul per item: a linear layer's
  // backward (dX, and a weight gradient accumulated over two uses), and a batch whose second item
  // reads the first one's output (so it must run in order).
  {
    const xl = randn([3, 7, 33], seed++), wl = randn([17, 33], seed++);
    xl.requiresGrad = true; wl.requiresGrad = true;
    const y = op.add(op.linear(xl, wl), op.linear(op.mulScalar(xl, 0.5), wl));
    backward(op.sum(op.mul(y, randn([3, 7, 17], seed++))));
    outs.push(xl.grad!, wl.grad!);
    const batch = (items: MatMulArgs[]): void => { const b = optionalKernel('MatMulBatch'); if (b) b(items); else for (const it of items) kernel('MatMul')(it); };
    const a = randn([5, 9], seed++).f32, b = randn([9, 4], seed++).f32, d = randn([5, 2], seed++).f32, c1 = new Float32Array(20), c2 = new Float32Array(8);
    const mk = (a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean): MatMulArgs =>
      ({ a, b, c, batch: 1, m, n, k, transA, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    batch([mk(a, b, c1, 5, 4, 9, false), mk(c1, d, c2, 4, 2, 5, true)]);
    outs.push(c1, c2);
  }
  // FP8 recipe kernels (native/webgpu's own, else the TS reference): every quantiser on ragged
  // shapes with zero tiles, −0, subnormal and saturating values and 1e30 outliers (finite: the
  // comparison counts NaN as an error), both scale formats; the scaled GEMM in its three layouts.
  const fp8 = resolveFp8Gemm();
  for (const fmt of ['fp32', 'ue8m0'] as const) {
    for (const [R, C] of [[130, 17], [7, 300]] as const) {
      const xq = edgy(R, C, R + C).map((v) => (Number.isFinite(v) ? v : 5e3));
      const q = quantAll(xq, R, C, fmt, fp8);
      for (const o of [q.rows, q.cols, q.w, q.requant]) outs.push(Float32Array.from(o.codes), o.scales);
      outs.push(Float32Array.from(q.w.codesT));
    }
    for (const g of Object.values(gemmLayouts(37, 70, 300, fmt, fp8))) outs.push(scaledGemm(g, fp8));
  }
  const cfg = presets.tiny!;
  const p = initParams(cfg, { seed: 3 });
  const inp = Tensor.ints(Array.from({ length: 2 * 9 }, (_, i) => (i * 37) % cfg.vocabSize), [2, 9]);
  const tgt = Tensor.ints(Array.from({ length: 2 * 9 }, (_, i) => (i * 91) % cfg.vocabSize), [18]);
  const r = lossFn(p, cfg, inp, tgt, { mtpWeight: 0.3 });
  backward(r.loss);
  outs.push(Float32Array.of(r.loss.item()));
  for (const t of trainableParams(p, cfg)) if (t.grad) outs.push(t.grad);
  // Absorbed-cache decode (latent attention): prefill 5 tokens, then 3 single steps.
  noGrad(() => {
    const cache = new KVCache(cfg, 1, 8, 'absorb');
    outs.push(forward(p, cfg, Tensor.ints([5, 9, 2, 7, 1], [1, 5]), { cache }).logits.f32);
    for (let i = 5; i < 8; i++) outs.push(forward(p, cfg, Tensor.ints([(i * 13) % cfg.vocabSize], [1, 1]), { cache, startPos: i }).logits.f32);
  });
  return outs;
}
