/**
 * Reference (`ts`) kernels for the training-step row work that the native backend runs fused:
 * rotary embedding, MLA's per-head key concat and its backward, and the cross-entropy rows of the
 * fused output head. They are the plain loops the ops used to run inline; every other backend is
 * tested against them (test/backends.test.ts).
 *
 * Contract:
 * - Outputs are overwritten whole (no accumulation); inputs are never modified, except
 *   `tsCrossEntropyRows`, which turns its logits into their gradient in place when asked.
 * - Shapes are the caller's (the ops validate them); these loops only index.
 */
import type { RopeGeometry } from './registry.js';

/** y[2i] = x[2i]c − x[2i+1]s', y[2i+1] = x[2i]s' + x[2i+1]c (s' = sign·s) over features [offset, D); the rest copied. */
export function tsRope(x: Float32Array, out: Float32Array, cos: Float32Array, sin: Float32Array, g: RopeGeometry, sign: number): void {
  const { B, T, H, D, offset } = g, half = (D - offset) / 2;
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) {
    const row = ((b * T + t) * H + h) * D, o = row + offset;
    for (let j = row; j < o; j++) out[j] = x[j]!;
    for (let i = 0; i < half; i++) {
      const c = cos[t * half + i]!, s = sign * sin[t * half + i]!;
      const x0 = x[o + 2 * i]!, x1 = x[o + 2 * i + 1]!;
      out[o + 2 * i] = x0 * c - x1 * s;
      out[o + 2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

/** out [R, H, Da+Db] = [a[r, h, :Da] | b[r, :]] for a [R, H, Dfull], b [R, Db]. */
export function tsConcatHeads(a: Float32Array, b: Float32Array, out: Float32Array, R: number, H: number, Dfull: number, Da: number, Db: number): void {
  const D = Da + Db;
  for (let r = 0; r < R; r++) for (let h = 0; h < H; h++) {
    const o = (r * H + h) * D, ai = (r * H + h) * Dfull;
    for (let j = 0; j < Da; j++) out[o + j] = a[ai + j]!;
    for (let j = 0; j < Db; j++) out[o + Da + j] = b[r * Db + j]!;
  }
}

/** ga [R, H, Dfull] = g's first Da features per head (zeros after); gb [R, Db] = Σ_h g's last Db. */
export function tsConcatHeadsBackward(g: Float32Array, ga: Float32Array | null, gb: Float32Array | null, R: number, H: number, Dfull: number, Da: number, Db: number): void {
  const D = Da + Db;
  if (ga) ga.fill(0);
  if (gb) gb.fill(0);
  for (let r = 0; r < R; r++) for (let h = 0; h < H; h++) {
    const o = (r * H + h) * D;
    if (ga) for (let j = 0; j < Da; j++) ga[(r * H + h) * Dfull + j] = g[o + j]!;
    if (gb) for (let j = 0; j < Db; j++) gb[r * Db + j]! += g[o + Da + j]!;
  }
}

/** Σ over rows (targets ≠ ignoreIndex) of log Σ_j exp p[r,j] − p[r,y]; with grad, p ← (softmax − onehot)·inv, ignored rows 0. */
export function tsCrossEntropyRows(p: Float32Array, rows: number, V: number, targets: Int32Array, ignoreIndex: number, inv: number, grad: boolean): number {
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * V, y = targets[r]!;
    if (y === ignoreIndex) { if (grad) p.fill(0, o, o + V); continue; }
    if (!(y >= 0 && y < V)) throw new RangeError(`CrossEntropyRows: target ${y} out of range [0, ${V})`);
    let mx = -Infinity;
    for (let j = 0; j < V; j++) if (p[o + j]! > mx) mx = p[o + j]!;
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(p[o + j]! - mx);
    total += Math.log(sum) + mx - p[o + y]!;
    if (grad) {
      const s = inv / sum;
      for (let j = 0; j < V; j++) p[o + j] = Math.exp(p[o + j]! - mx) * s;
      p[o + y]! -= inv;
    }
  }
  return total;
}
