/**
 * Reductions and normalisers over an axis: sum, mean, max, argmax, softmax, log-softmax.
 * `axis` undefined reduces everything to a scalar.
 */
import { Tensor, sizeOf } from '../autograd/tensor.js';
import { record } from '../autograd/tape.js';
import { kernel } from '../backend/registry.js';

function geom(x: Tensor, axis: number): { outer: number; d: number; inner: number; ax: number } {
  const ax = axis < 0 ? axis + x.rank : axis;
  if (ax < 0 || ax >= x.rank) throw new Error(`reduce: axis ${axis} out of range for rank ${x.rank}`);
  return { outer: sizeOf(x.shape.slice(0, ax)), d: x.shape[ax]!, inner: sizeOf(x.shape.slice(ax + 1)), ax };
}
function outShape(x: Tensor, ax: number, keepDim: boolean): number[] {
  const s = x.shape.slice();
  if (keepDim) s[ax] = 1; else s.splice(ax, 1);
  return s;
}

export function sum(x: Tensor, axis?: number, keepDim = false): Tensor {
  const X = x.f32;
  if (axis === undefined) {
    let s = 0;
    for (let i = 0; i < X.length; i++) s += X[i]!;
    return record(new Tensor(Float32Array.of(s), []), 'Sum', [x], (g) => [new Float32Array(X.length).fill(g[0]!)]);
  }
  const { outer, d, inner, ax } = geom(x, axis);
  const out = new Float32Array(outer * inner);
  for (let o = 0; o < outer; o++) for (let j = 0; j < d; j++) {
    const base = (o * d + j) * inner;
    for (let i = 0; i < inner; i++) out[o * inner + i]! += X[base + i]!;
  }
  return record(new Tensor(out, outShape(x, ax, keepDim)), 'Sum', [x], (g) => {
    const gi = new Float32Array(X.length);
    for (let o = 0; o < outer; o++) for (let j = 0; j < d; j++) {
      const base = (o * d + j) * inner;
      for (let i = 0; i < inner; i++) gi[base + i] = g[o * inner + i]!;
    }
    return [gi];
  });
}

export function mean(x: Tensor, axis?: number, keepDim = false): Tensor {
  const n = axis === undefined ? x.size : x.shape[axis < 0 ? axis + x.rank : axis]!;
  const s = sum(x, axis, keepDim);
  const S = s.f32;
  const out = new Float32Array(S.length);
  for (let i = 0; i < S.length; i++) out[i] = S[i]! / n;
  return record(new Tensor(out, s.shape), 'Mean', [s], (g) => [g.map((v) => v / n)]);
}

/** Maximum along axis; the gradient flows to the (first) arg-max. */
export function max(x: Tensor, axis: number, keepDim = false): Tensor {
  const X = x.f32;
  const { outer, d, inner, ax } = geom(x, axis);
  const out = new Float32Array(outer * inner).fill(-Infinity);
  const arg = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) for (let j = 0; j < d; j++) for (let i = 0; i < inner; i++) {
    const v = X[(o * d + j) * inner + i]!;
    if (v > out[o * inner + i]!) { out[o * inner + i] = v; arg[o * inner + i] = j; }
  }
  return record(new Tensor(out, outShape(x, ax, keepDim)), 'Max', [x], (g) => {
    const gi = new Float32Array(X.length);
    for (let o = 0; o < outer; o++) for (let i = 0; i < inner; i++) gi[(o * d + arg[o * inner + i]!) * inner + i] = g[o * inner + i]!;
    return [gi];
  });
}

/** Index of the maximum along the last axis (i32, no gradient). */
export function argmax(x: Tensor): Tensor {
  const X = x.f32;
  const d = x.shape[x.rank - 1]!;
  const rows = X.length / d;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = -Infinity, bi = 0;
    for (let j = 0; j < d; j++) if (X[r * d + j]! > best) { best = X[r * d + j]!; bi = j; }
    out[r] = bi;
  }
  return new Tensor(out, x.shape.slice(0, -1), 'i32');
}

/** Softmax over the last axis. */
export function softmax(x: Tensor): Tensor {
  const X = x.f32;
  const d = x.shape[x.rank - 1]!;
  const rows = X.length / d;
  const out = new Float32Array(X.length);
  kernel('Softmax')(X, out, rows, d);
  return record(new Tensor(out, x.shape), 'Softmax', [x], (g) => {
    const gi = new Float32Array(X.length);
    kernel('SoftmaxBackward')(out, g, gi, rows, d, 1);
    return [gi];
  });
}

/** log(softmax(x)) over the last axis, computed stably. */
export function logSoftmax(x: Tensor): Tensor {
  const X = x.f32;
  const d = x.shape[x.rank - 1]!;
  const rows = X.length / d;
  const out = new Float32Array(X.length);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < d; j++) mx = Math.max(mx, X[r * d + j]!);
    let s = 0;
    for (let j = 0; j < d; j++) s += Math.exp(X[r * d + j]! - mx);
    const lse = mx + Math.log(s);
    for (let j = 0; j < d; j++) out[r * d + j] = X[r * d + j]! - lse;
  }
  return record(new Tensor(out, x.shape), 'LogSoftmax', [x], (g) => {
    const gi = new Float32Array(X.length);
    for (let r = 0; r < rows; r++) {
      let gs = 0;
      for (let j = 0; j < d; j++) gs += g[r * d + j]!;
      for (let j = 0; j < d; j++) gi[r * d + j] = g[r * d + j]! - Math.exp(out[r * d + j]!) * gs;
    }
    return [gi];
  });
}
