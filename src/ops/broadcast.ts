/**
 * Broadcasting helpers (NumPy rules): the output shape of two shapes, per-operand strides with
 * zeros on broadcast axes, and the reduction of a gradient back to an operand's shape.
 */
import { fmtShape, sizeOf, stridesOf } from '../autograd/tensor.js';

export function broadcastShape(a: readonly number[], b: readonly number[], op = 'broadcast'): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of `shape` viewed as `outShape` (0 on broadcast axes). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const s = stridesOf(shape);
  const n = outShape.length;
  const r = new Array<number>(n).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const oi = n - shape.length + i;
    r[oi] = shape[i] === 1 ? 0 : s[i]!;
  }
  return r;
}

/** For each flat output index, the flat index into a source with the given strides (0 on broadcast axes; permuted strides for permute/expand). */
export function broadcastIndex(outShape: readonly number[], strides: readonly number[]): Int32Array {
  const n = sizeOf(outShape);
  const idx = new Int32Array(n);
  const rank = outShape.length;
  const ctr = new Array<number>(rank).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      ctr[d]!++;
      off += strides[d]!;
      if (ctr[d]! < outShape[d]!) break;
      off -= strides[d]! * outShape[d]!;
      ctr[d] = 0;
    }
  }
  return idx;
}

/** Sums g (shaped outShape) down to `shape` (an operand broadcast to outShape). */
export function reduceTo(g: Float32Array, outShape: readonly number[], shape: readonly number[]): Float32Array {
  const n = sizeOf(shape);
  if (n === g.length) return g;
  const out = new Float32Array(n);
  // Fast path: shape is a suffix of outShape (e.g. bias [D] over [N, D]).
  if (n > 0 && g.length % n === 0 && sizeOf(outShape.slice(outShape.length - shape.length)) === n &&
      shape.every((d, i) => d === outShape[outShape.length - shape.length + i])) {
    for (let i = 0; i < g.length; i += n) for (let j = 0; j < n; j++) out[j]! += g[i + j]!;
    return out;
  }
  // Fast path: shape is outShape with the last axis 1 (a per-row value).
  const r = outShape.length;
  if (shape.length === r && shape[r - 1] === 1 && shape.every((d, i) => i === r - 1 || d === outShape[i])) {
    const D = outShape[r - 1]!;
    for (let i = 0, k = 0; i < n; i++) { let s = 0; for (let j = 0; j < D; j++, k++) s += g[k]!; out[i] = s; }
    return out;
  }
  const idx = broadcastIndex(outShape, broadcastStrides(shape, outShape));
  for (let i = 0; i < g.length; i++) out[idx[i]!]! += g[i]!;
  return out;
}
