/**
 * Matrix products: batched matmul with transposes (batch dims of one operand may be absent, i.e.
 * broadcast) and `linear(x, W)` = x·Wᵀ with PyTorch's [out, in] weight layout. Both dispatch to
 * the `MatMul` kernel for forward and backward; linear's two backward products go to `MatMulBatch`
 * in one call where the backend has it (webgpu: one submission).
 */
import { Tensor, fmtShape, sizeOf, allocUninitF32 } from '../autograd/tensor.js';

/** An output the MatMul kernel overwrites whole: uninitialised when the inner size is > 0. */
function gemmOut(len: number, inner: number): Float32Array { return inner > 0 ? allocUninitF32(len) : new Float32Array(len); }
import { record } from '../autograd/tape.js';
import { kernel, optionalKernel, type MatMulArgs } from '../backend/registry.js';

function mm(a: Float32Array, b: Float32Array, c: Float32Array, batch: number, m: number, n: number, k: number,
  transA: boolean, transB: boolean, strideA: number, strideB: number, accumulate = false): void {
  kernel('MatMul')({ a, b, c, batch, m, n, k, transA, transB, strideA, strideB, strideC: m * n, accumulate });
}

export interface MatMulOptions { transA?: boolean; transB?: boolean }

/**
 * C = op(A)·op(B) over the last two axes. A is [..., M, K] ([..., K, M] if transA), B is
 * [..., K, N] ([..., N, K] if transB); batch dims must be equal, or B (or A) rank 2 (shared).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatMulOptions = {}): Tensor {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  if (a.rank < 2 || b.rank < 2) throw new Error(`matmul: operands need rank >= 2, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const [a0, a1] = a.shape.slice(-2) as [number, number];
  const [b0, b1] = b.shape.slice(-2) as [number, number];
  const m = transA ? a1 : a0, k = transA ? a0 : a1;
  const kb = transB ? b1 : b0, n = transB ? b0 : b1;
  if (k !== kb) throw new Error(`matmul: inner dimensions differ: ${fmtShape(a.shape)}${transA ? 'ᵀ' : ''} · ${fmtShape(b.shape)}${transB ? 'ᵀ' : ''}`);
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  let batchShape: readonly number[];
  if (aBatch.length && bBatch.length) {
    if (aBatch.length !== bBatch.length || aBatch.some((d, i) => d !== bBatch[i])) throw new Error(`matmul: batch dims ${fmtShape(aBatch)} and ${fmtShape(bBatch)} differ`);
    batchShape = aBatch;
  } else batchShape = aBatch.length ? aBatch : bBatch;
  const batch = sizeOf(batchShape);
  const sA = aBatch.length ? m * k : 0, sB = bBatch.length ? k * n : 0;
  const A = a.f32, B = b.f32;
  const out = gemmOut(batch * m * n, k);
  mm(A, B, out, batch, m, n, k, transA, transB, sA, sB);
  const t = new Tensor(out, [...batchShape, m, n]);
  return record(t, 'MatMul', [a, b], (g) => {
    let gA: Float32Array | null = null, gB: Float32Array | null = null;
    if (a.requiresGrad) {
      gA = gemmOut(A.length, batch > 0 ? n : 0);
      const accumulate = sA === 0;
      // dA: see the derivation in docs/ARCHITECTURE.md (four transpose cases).
      for (let bi = 0; bi < (sA === 0 ? batch : 1); bi++) {
        const gs = sA === 0 ? g.subarray(bi * m * n, (bi + 1) * m * n) : g;
        const bs = sA === 0 ? B.subarray(bi * sB, bi * sB + k * n) : B;
        const nb = sA === 0 ? 1 : batch;
        const strideB1 = sA === 0 ? 0 : sB;
        if (!transA) kernel('MatMul')({ a: gs, b: bs, c: gA, batch: nb, m, n: k, k: n, transA: false, transB: !transB, strideA: m * n, strideB: strideB1, strideC: sA === 0 ? 0 : m * k, accumulate: accumulate && bi > 0 });
        else kernel('MatMul')({ a: bs, b: gs, c: gA, batch: nb, m: k, n: m, k: n, transA: transB, transB: true, strideA: strideB1, strideB: m * n, strideC: sA === 0 ? 0 : m * k, accumulate: accumulate && bi > 0 });
      }
    }
    if (b.requiresGrad) {
      gB = gemmOut(B.length, batch > 0 ? m : 0);
      const shared = sB === 0;
      for (let bi = 0; bi < (shared ? batch : 1); bi++) {
        const gs = shared ? g.subarray(bi * m * n, (bi + 1) * m * n) : g;
        const as = shared ? A.subarray(bi * sA, bi * sA + m * k) : A;
        const nb = shared ? 1 : batch;
        const strideA1 = shared ? 0 : sA;
        if (!transB) kernel('MatMul')({ a: as, b: gs, c: gB, batch: nb, m: k, n, k: m, transA: !transA, transB: false, strideA: strideA1, strideB: m * n, strideC: shared ? 0 : k * n, accumulate: shared && bi > 0 });
        else kernel('MatMul')({ a: gs, b: as, c: gB, batch: nb, m: n, n: k, k: m, transA: true, transB: transA, strideA: m * n, strideB: strideA1, strideC: shared ? 0 : k * n, accumulate: shared && bi > 0 });
      }
    }
    return [gA, gB];
  });
}

/** y = x·Wᵀ for x [..., in] and W [out, in] (PyTorch Linear layout, no bias). */
export function linear(x: Tensor, w: Tensor): Tensor {
  if (w.rank !== 2) throw new Error(`linear: weight must be [out, in], got ${fmtShape(w.shape)}`);
  const [outF, inF] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== inF) throw new Error(`linear: input ${fmtShape(x.shape)} does not end in ${inF} (weight ${fmtShape(w.shape)}${w.name ? ' ' + w.name : ''})`);
  const rows = x.size / inF;
  const X = x.f32, W = w.f32;
  const out = gemmOut(rows * outF, inF);
  mm(X, W, out, 1, rows, outF, inF, false, true, 0, 0);
  const t = new Tensor(out, [...x.shape.slice(0, -1), outF]);
  return record(t, 'Linear', [x, w], (g) => {
    const args = (a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean, acc: boolean): MatMulArgs =>
      ({ a, b, c, batch: 1, m, n, k, transA, transB: false, strideA: 0, strideB: 0, strideC: m * n, accumulate: acc });
    const work: MatMulArgs[] = [];
    let gx: Float32Array | null = null, gw: Float32Array | null = null;
    if (x.requiresGrad) { gx = gemmOut(X.length, outF); work.push(args(g, W, gx, rows, inF, outF, false, false)); }
    if (w.requiresGrad && !w.node) {
      // A parameter: its gradient is summed straight into .grad (what the tape would do with a
      // fresh array), saving a [out, in] array and a pass over it per call.
      const acc = w.grad !== null;
      w.grad ??= gemmOut(W.length, rows);
      work.push(args(g, X, w.grad, outF, inF, rows, true, acc));
    } else if (w.requiresGrad) { gw = gemmOut(W.length, rows); work.push(args(g, X, gw, outF, inF, rows, true, false)); }
    // Both products in one call where the backend batches them (webgpu: one submission).
    const batch = work.length > 1 ? optionalKernel('MatMulBatch') : null;
    if (batch) batch(work); else { const one = kernel('MatMul'); for (const a of work) one(a); }
    return [gx, gw];
  });
}
