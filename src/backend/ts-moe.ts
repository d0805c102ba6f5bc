/**
 * Reference (`ts`) loops for the grouped MoE feed-forward kernels (MoeFfnForward/MoeFfnBackward,
 * registry.ts MoeFfnArgs), in the native kernel's order of work: per routed expert its gathered
 * rows, gate/up products, SiLU·mul and down product; the shared expert over all rows; then the
 * per-token combine in slot order. The `ts` backend does not register them (src/ops/moe.ts composes
 * the same function from generic ops there); the webgpu backend runs them for a layer whose
 * operands exceed the device's binding limit, and `checkMoeArgs` is its argument check.
 *
 * Contract:
 * - `checkMoeArgs` throws a RangeError naming the field (the native addon's messages) when order is
 *   not a permutation of the N·k slots, offsets not a partition of it, or an array is too short;
 *   it returns pos, the inverse of order (pos[order[p]] = p).
 * - Forward overwrites out, g, u, y (and sg, su); backward overwrites gradX, gradW and adds into
 *   the weight gradients that are not null.
 */
import type { MoeFfnArgs, MoeFfnGrads } from './registry.js';
import { tsMatMul, tsSiluMul, tsSiluMulBackward } from './ts.js';

/** Validates the routing and sizes of a MoE call; returns the slot positions (inverse of order). */
export function checkMoeArgs(a: MoeFfnArgs, what: string, grads?: MoeFfnGrads): Int32Array {
  const { N, H, I, k, Is } = a, E = a.gate.length, M = N * k;
  const need = (name: string, arr: { length: number } | null | undefined, n: number, optional = false): void => {
    if (!arr) { if (!optional) throw new RangeError(`${what}: ${name} is missing`); return; }
    if (arr.length < n) throw new RangeError(`${what}: ${name} has ${arr.length} elements, needs ${n}`);
  };
  if (!(H >= 1 && I >= 1 && k >= 1 && N >= 0)) throw new RangeError(`${what}: N=${N} H=${H} I=${I} k=${k} must be counts (H, I, k >= 1)`);
  if (a.up.length !== E || a.down.length !== E) throw new RangeError(`${what}: gate, up and down must list the same ${E} experts`);
  for (let e = 0; e < E; e++) { need(`gate[${e}]`, a.gate[e], I * H); need(`up[${e}]`, a.up[e], I * H); need(`down[${e}]`, a.down[e], H * I); }
  if (a.sGate) {
    if (!(Is >= 1)) throw new RangeError(`${what}: Is must be >= 1 with a shared expert`);
    need('sGate', a.sGate, Is * H); need('sUp', a.sUp, Is * H); need('sDown', a.sDown, H * Is); need('sg', a.sg, N * Is); need('su', a.su, N * Is);
  }
  need('x', a.x, N * H); need('slotW', a.slotW, M); need('g', a.g, M * I); need('u', a.u, M * I); need('y', a.y, M * H);
  need('order', a.order, M); need('offsets', a.offsets, E + 1);
  const pos = new Int32Array(M).fill(-1);
  for (let p = 0; p < M; p++) {
    const s = a.order[p]!;
    if (!(s >= 0 && s < M) || pos[s] !== -1) throw new RangeError(`${what}: order must be a permutation of 0..${M - 1} (entry ${p} is ${s})`);
    pos[s] = p;
  }
  if (a.offsets[0] !== 0 || a.offsets[E] !== M) throw new RangeError(`${what}: offsets must start at 0 and end at N*k`);
  for (let e = 0; e < E; e++) if (a.offsets[e + 1]! < a.offsets[e]!) throw new RangeError(`${what}: offsets must be non-decreasing`);
  if (grads) {
    need('gradOut', grads.gradOut, N * H); need('gradX', grads.gradX, N * H); need('gradW', grads.gradW, M);
    for (let e = 0; e < E; e++) { need(`gGate[${e}]`, grads.gGate[e], I * H, true); need(`gUp[${e}]`, grads.gUp[e], I * H, true); need(`gDown[${e}]`, grads.gDown[e], H * I, true); }
    if (a.sGate) { need('gsGate', grads.gsGate, Is * H, true); need('gsUp', grads.gsUp, Is * H, true); need('gsDown', grads.gsDown, H * Is, true); }
  }
  return pos;
}

/** C (+)= op(A)·op(B) on flat arrays (one batch entry). */
function mm(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
  tsMatMul({ a, b, c, batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0, strideC: 0, accumulate });
}

/** Rows of x for slots order[p0 .. p0+r) as a panel [r, H]. */
function gather(a: MoeFfnArgs, p0: number, r: number): Float32Array {
  const xe = new Float32Array(r * a.H);
  for (let i = 0; i < r; i++) { const n = Math.floor(a.order[p0 + i]! / a.k); xe.set(a.x.subarray(n * a.H, (n + 1) * a.H), i * a.H); }
  return xe;
}

/** out[n] = Σ_j (w ? w[s] : 1) · rows[pos[s]] over s = n·k + j, added to out[n] when base. */
function combine(out: Float32Array, rows: Float32Array, pos: Int32Array, w: Float32Array | null, N: number, H: number, k: number, base: boolean): void {
  if (!base) out.fill(0, 0, N * H);
  for (let n = 0; n < N; n++) for (let j = 0; j < k; j++) {
    const s = n * k + j, sc = w ? w[s]! : 1, o = pos[s]! * H;
    for (let c = 0; c < H; c++) out[n * H + c]! += sc * rows[o + c]!;
  }
}

/** MoeFfnForward on plain loops (see the file contract). */
export function tsMoeFfnForward(a: MoeFfnArgs, out: Float32Array): void {
  const pos = checkMoeArgs(a, 'MoeFfnForward');
  const { N, H, I, k, Is } = a;
  for (let e = 0; e < a.gate.length; e++) {
    const p0 = a.offsets[e]!, r = a.offsets[e + 1]! - p0;
    if (r === 0) continue;
    const xe = gather(a, p0, r), g = a.g.subarray(p0 * I, (p0 + r) * I), u = a.u.subarray(p0 * I, (p0 + r) * I), h = new Float32Array(r * I);
    mm(xe, a.gate[e]!, g, r, I, H, false, true, false);
    mm(xe, a.up[e]!, u, r, I, H, false, true, false);
    tsSiluMul(g, u, h);
    mm(h, a.down[e]!, a.y.subarray(p0 * H, (p0 + r) * H), r, H, I, false, true, false);
  }
  if (a.sGate) {
    const hs = new Float32Array(N * Is);
    mm(a.x, a.sGate, a.sg!, N, Is, H, false, true, false);
    mm(a.x, a.sUp!, a.su!, N, Is, H, false, true, false);
    tsSiluMul(a.sg!.subarray(0, N * Is), a.su!, hs);
    mm(hs, a.sDown!, out, N, H, Is, false, true, false);
  }
  combine(out, a.y, pos, a.slotW, N, H, k, !!a.sGate);
}

/** MoeFfnBackward on plain loops (see the file contract). */
export function tsMoeFfnBackward(a: MoeFfnArgs, d: MoeFfnGrads): void {
  const pos = checkMoeArgs(a, 'MoeFfnBackward', d);
  const { N, H, I, k, Is } = a, M = N * k;
  const dxs = new Float32Array(M * H);
  for (let e = 0; e < a.gate.length; e++) {
    const p0 = a.offsets[e]!, r = a.offsets[e + 1]! - p0;
    if (r === 0) continue;
    const dy = new Float32Array(r * H), dh = new Float32Array(r * I), dg = new Float32Array(r * I), du = new Float32Array(r * I);
    for (let i = 0; i < r; i++) {
      const s = a.order[p0 + i]!, go = Math.floor(s / k) * H, w = a.slotW[s]!, yo = (p0 + i) * H;
      let dot = 0;
      for (let c = 0; c < H; c++) { const v = d.gradOut[go + c]!; dy[i * H + c] = w * v; dot += v * a.y[yo + c]!; }
      d.gradW[s] = dot;
    }
    const g = a.g.subarray(p0 * I, (p0 + r) * I), u = a.u.subarray(p0 * I, (p0 + r) * I);
    mm(dy, a.down[e]!, dh, r, I, H, false, false, false);
    tsSiluMulBackward(g, u, dh, dg, du);
    if (d.gDown[e]) { const h = new Float32Array(r * I); tsSiluMul(g, u, h); mm(dy, h, d.gDown[e]!, H, I, r, true, false, true); }
    const xe = gather(a, p0, r);
    if (d.gGate[e]) mm(dg, xe, d.gGate[e]!, I, H, r, true, false, true);
    if (d.gUp[e]) mm(du, xe, d.gUp[e]!, I, H, r, true, false, true);
    const dx = dxs.subarray(p0 * H, (p0 + r) * H);
    mm(dg, a.gate[e]!, dx, r, H, I, false, false, false);
    mm(du, a.up[e]!, dx, r, H, I, false, false, true);
  }
  if (a.sGate) {
    const n = N * Is, sg = a.sg!.subarray(0, n), su = a.su!.subarray(0, n);
    const dh = new Float32Array(n), dg = new Float32Array(n), du = new Float32Array(n);
    mm(d.gradOut, a.sDown!, dh, N, Is, H, false, false, false);
    tsSiluMulBackward(sg, su, dh, dg, du);
    mm(dg, a.sGate, d.gradX, N, H, Is, false, false, false);
    mm(du, a.sUp!, d.gradX, N, H, Is, false, false, true);
    if (d.gsDown) { const hs = new Float32Array(n); tsSiluMul(sg, su, hs); mm(d.gradOut, hs, d.gsDown, H, Is, N, true, false, true); }
    if (d.gsGate) mm(dg, a.x, d.gsGate, Is, H, N, true, false, true);
    if (d.gsUp) mm(du, a.x, d.gsUp, Is, H, N, true, false, true);
  }
  combine(d.gradX, dxs, pos, null, N, H, k, !!a.sGate);
}
