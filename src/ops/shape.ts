/**
 * Shape ops (all produce contiguous tensors): reshape (a view on the same storage), permute and
 * transpose, slice along an axis, concat and split, and broadcast-expansion.
 */
import { Tensor, fmtShape, sizeOf, stridesOf, allocUninitF32 } from '../autograd/tensor.js';
import { record } from '../autograd/tape.js';
import { broadcastIndex } from './broadcast.js';

function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Same data, new shape; one dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = shape.slice();
  const neg = s.indexOf(-1);
  if (neg >= 0) {
    const rest = sizeOf(s.filter((_, i) => i !== neg));
    if (rest === 0 || x.size % rest !== 0) throw new Error(`reshape: cannot infer -1 for ${fmtShape(x.shape)} -> ${fmtShape(shape)}`);
    s[neg] = x.size / rest;
  }
  if (sizeOf(s) !== x.size) throw new Error(`reshape: ${fmtShape(x.shape)} (${x.size} elements) cannot become ${fmtShape(shape)}`);
  const t = new Tensor(x.data, s, x.dtype);
  return record(t, 'Reshape', [x], (g) => [g]);
}

/** Reorders axes: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const r = x.rank;
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => p < 0 || p >= r)) throw new Error(`permute: bad permutation [${perm}] for rank ${r}`);
  const outShape = perm.map((p) => x.shape[p]!);
  const inStr = stridesOf(x.shape);
  const srcStr = perm.map((p) => inStr[p]!);
  const idx = broadcastIndex(outShape, srcStr);
  const X = x.data;
  const out = new (X.constructor as Float32ArrayConstructor)(X.length) as unknown as typeof X;
  for (let i = 0; i < idx.length; i++) out[i] = X[idx[i]!]!;
  const t = new Tensor(out, outShape, x.dtype);
  return record(t, 'Permute', [x], (g) => {
    const gi = new Float32Array(g.length);
    for (let i = 0; i < idx.length; i++) gi[idx[i]!] = g[i]!;
    return [gi];
  });
}

/** Swaps two axes (default: the last two). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const r = x.rank;
  const ia = normAxis(a, r, 'transpose'), ib = normAxis(b, r, 'transpose');
  const perm = [...Array(r).keys()];
  perm[ia] = ib; perm[ib] = ia;
  return permute(x, perm);
}

/** x[..., start:end, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis(axis, x.rank, 'slice');
  const d = x.shape[ax]!;
  if (start < 0 || end > d || start > end) throw new Error(`slice: range ${start}:${end} out of bounds for axis ${ax} of size ${d}`);
  const outer = sizeOf(x.shape.slice(0, ax));
  const inner = sizeOf(x.shape.slice(ax + 1));
  const w = end - start;
  const outShape = x.shape.slice(); outShape[ax] = w;
  const X = x.f32;
  const out = allocUninitF32(outer * w * inner); // every row is copied below
  const len = w * inner;
  // Short rows (a slice of the last axis: MLA's k_nope/v, k_pe) copy element by element — a
  // subarray + set per row costs more than the row.
  if (len < 64) for (let o = 0, i = 0; o < outer; o++) { const s0 = (o * d + start) * inner; for (let j = 0; j < len; j++, i++) out[i] = X[s0 + j]!; }
  else for (let o = 0; o < outer; o++) out.set(X.subarray((o * d + start) * inner, (o * d + end) * inner), o * len);
  const t = new Tensor(out, outShape);
  return record(t, 'Slice', [x], (g) => [{
    addInto(gi: Float32Array): void {
      const len = w * inner;
      for (let o = 0; o < outer; o++) {
        const src = o * len, dst = (o * d + start) * inner;
        for (let j = 0; j < len; j++) gi[dst + j]! += g[src + j]!;
      }
    },
  }]);
}

/** Concatenates along `axis`; all other dimensions must match. */
export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const first = xs[0]!;
  const ax = normAxis(axis, first.rank, 'concat');
  for (const x of xs) {
    if (x.rank !== first.rank || x.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
      throw new Error(`concat: shapes ${xs.map((t) => fmtShape(t.shape)).join(', ')} differ outside axis ${ax}`);
    }
  }
  const outer = sizeOf(first.shape.slice(0, ax));
  const inner = sizeOf(first.shape.slice(ax + 1));
  const widths = xs.map((x) => x.shape[ax]!);
  const total = widths.reduce((s, w) => s + w, 0);
  const outShape = first.shape.slice(); outShape[ax] = total;
  const out = allocUninitF32(outer * total * inner); // every input's rows written below
  let off = 0;
  xs.forEach((x, k) => {
    const X = x.f32, w = widths[k]!;
    for (let o = 0; o < outer; o++) out.set(X.subarray(o * w * inner, (o + 1) * w * inner), (o * total + off) * inner);
    off += w;
  });
  const t = new Tensor(out, outShape);
  return record(t, 'Concat', xs, (g) => {
    let o2 = 0;
    return xs.map((x, k) => {
      const w = widths[k]!;
      const gi = allocUninitF32(x.size);
      for (let o = 0; o < outer; o++) gi.set(g.subarray((o * total + o2) * inner, (o * total + o2 + w) * inner), o * w * inner);
      o2 += w;
      return gi;
    });
  });
}

/** Splits along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  const ax = normAxis(axis, x.rank, 'split');
  const total = sizes.reduce((s, w) => s + w, 0);
  if (total !== x.shape[ax]) throw new Error(`split: sizes [${sizes}] sum to ${total}, axis ${ax} has ${x.shape[ax]}`);
  const out: Tensor[] = [];
  let off = 0;
  for (const w of sizes) { out.push(slice(x, ax, off, off + w)); off += w; }
  return out;
}

/** Materialises x broadcast to `shape`. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const n = shape.length;
  if (x.rank > n) throw new Error(`expand: ${fmtShape(x.shape)} has more axes than ${fmtShape(shape)}`);
  const src = stridesOf(x.shape);
  const str = new Array<number>(n).fill(0);
  for (let i = 0; i < x.rank; i++) {
    const oi = n - x.rank + i;
    if (x.shape[i] !== 1 && x.shape[i] !== shape[oi]) throw new Error(`expand: ${fmtShape(x.shape)} cannot broadcast to ${fmtShape(shape)}`);
    str[oi] = x.shape[i] === 1 ? 0 : src[i]!;
  }
  const idx = broadcastIndex(shape, str);
  const X = x.f32;
  const out = new Float32Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = X[idx[i]!]!;
  return record(new Tensor(out, shape), 'Expand', [x], (g) => {
    const gi = new Float32Array(x.size);
    for (let i = 0; i < idx.length; i++) gi[idx[i]!]! += g[i]!;
    return [gi];
  });
}
