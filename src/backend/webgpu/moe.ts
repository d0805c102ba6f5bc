/**
 * The webgpu backend's grouped MoE feed-forward kernels (registry.ts MoeFfnForward/MoeFfnBackward):
 * a whole DeepSeekMoE layer — every routed expert's gathered gate/up products, SiLU·mul and down
 * product, the shared expert, and the per-token combine — as ONE job (one submission) forward and
 * one backward, instead of a job per GEMM, gather, SiLU and scatter of the composed ops.
 *
 * Contract:
 * - Same values as the ts twin (src/backend/ts-moe.ts) within float summation order; the combine
 *   sums each token's slots in slot order, as the native kernel does.
 * - Expert weights are bound through `operand`, so parameters are read from their device-resident
 *   copies; x, the routing, the saved g/u/y (sg/su) and the upstream gradient are uploaded per call.
 *   The forward copies back out, g, u, y (sg, su) — the op saves them for the backward — and the
 *   backward copies back gradX, gradW and each weight gradient (accumulated on the device, +=).
 * - A weight gradient array that appears twice (one tensor used twice) is one device buffer, so
 *   both contributions add up as on the host.
 * - Bad routing or short arrays are RangeErrors (checkMoeArgs) before anything runs; a layer whose
 *   operands exceed the device's binding limit runs on the ts twin (counted by `tooBig`).
 */
import type { MoeFfnArgs, MoeFfnGrads } from '../registry.js';
import { checkMoeArgs, tsMoeFfnBackward, tsMoeFfnForward } from '../ts-moe.js';
import type { Job } from './job.js';

/** What the kernels need from the backend (index.ts). */
export interface MoeEnv {
  newJob(): Job;
  run(j: Job): void;
  operand(j: Job, name: string, arr: Float32Array | Int32Array, len: number): void;
  tooBig(...lens: number[]): boolean;
  eltGrid(n: number): [number, number, number];
  rowGrid(n: number): [number, number, number];
}

/** One MOE_GEMM pass: C (+)= op(A)·op(B) with offsets and an optional row gather through the slot order. */
interface Gemm { M: number; N: number; K: number; tA?: boolean; tB?: boolean; aOff?: number; bOff?: number; cOff?: number; acc?: boolean; gA?: boolean; gB?: boolean; gOff?: number }

/** The pair of kernels, bound to a backend's job machinery. */
export function moeKernels(env: MoeEnv): { MoeFfnForward(a: MoeFfnArgs, out: Float32Array): void; MoeFfnBackward(a: MoeFfnArgs, d: MoeFfnGrads): void } {
  const gemm = (j: Job, A: string, B: string, C: string, order: string, k: number, g: Gemm): void => {
    if (g.M === 0 || g.N === 0) return;
    j.pass('moeGemm', [A, B, C, order], [g.M, g.N, g.K, g.tA ? 1 : 0, g.tB ? 1 : 0, g.aOff ?? 0, g.bOff ?? 0, g.cOff ?? 0, g.acc ? 1 : 0, g.gA ? 1 : 0, g.gB ? 1 : 0, g.gOff ?? 0, k],
      [Math.ceil(g.N / 64), Math.ceil(g.M / 64), 1]);
  };
  /** True when an operand of this layer exceeds the binding limit (counted) or a GEMM grid the dispatch limit. */
  const oversize = (a: MoeFfnArgs): boolean => {
    const M = a.N * a.k, groups = Math.ceil(Math.max(M, a.H, a.I, a.Is) / 64);
    return env.tooBig(M * a.H, M * a.I, a.N * a.H, a.I * a.H, a.N * a.Is, a.Is * a.H) || groups > 65535;
  };
  /** Binds the routing shared by both directions; returns the expert ranges [e, first slot position, rows]. */
  const routing = (j: Job, a: MoeFfnArgs, pos: Int32Array, pre: string): Array<[number, number, number]> => {
    const M = a.N * a.k;
    env.operand(j, pre + 'x', a.x, a.N * a.H); env.operand(j, pre + 'ord', a.order, M);
    env.operand(j, pre + 'pos', pos, M); env.operand(j, pre + 'sw', a.slotW, M);
    const ranges: Array<[number, number, number]> = [];
    for (let e = 0; e < a.gate.length; e++) {
      const p0 = a.offsets[e]!, r = a.offsets[e + 1]! - p0;
      if (r === 0) continue;
      ranges.push([e, p0, r]);
      env.operand(j, `${pre}gt${e}`, a.gate[e]!, a.I * a.H); env.operand(j, `${pre}up${e}`, a.up[e]!, a.I * a.H); env.operand(j, `${pre}dn${e}`, a.down[e]!, a.H * a.I);
    }
    if (a.sGate) { env.operand(j, pre + 'sgt', a.sGate, a.Is * a.H); env.operand(j, pre + 'sup', a.sUp!, a.Is * a.H); env.operand(j, pre + 'sdn', a.sDown!, a.H * a.Is); }
    return ranges;
  };

  return {
    MoeFfnForward(a: MoeFfnArgs, out: Float32Array): void {
      const pos = checkMoeArgs(a, 'MoeFfnForward');
      if (out.length < a.N * a.H) throw new RangeError(`MoeFfnForward: out has ${out.length} elements, needs ${a.N * a.H}`);
      if (a.N === 0) return;
      if (oversize(a)) { tsMoeFfnForward(a, out); return; }
      const { N, H, I, k, Is } = a, M = N * k, j = env.newJob();
      const ranges = routing(j, a, pos, 'mf.');
      j.output('mf.g', M * I); j.output('mf.u', M * I); j.output('mf.y', M * H); j.scratch('mf.h', M * I); j.output('mf.o', N * H);
      for (const [e, p0, r] of ranges) {
        gemm(j, 'mf.x', `mf.gt${e}`, 'mf.g', 'mf.ord', k, { M: r, N: I, K: H, tB: true, cOff: p0 * I, gA: true, gOff: p0 });
        gemm(j, 'mf.x', `mf.up${e}`, 'mf.u', 'mf.ord', k, { M: r, N: I, K: H, tB: true, cOff: p0 * I, gA: true, gOff: p0 });
      }
      j.pass('silumul', ['mf.g', 'mf.u', 'mf.h'], [M * I], env.eltGrid(M * I));
      for (const [e, p0, r] of ranges) gemm(j, 'mf.h', `mf.dn${e}`, 'mf.y', 'mf.ord', k, { M: r, N: H, K: I, tB: true, aOff: p0 * I, cOff: p0 * H });
      if (a.sGate) {
        j.output('mf.sg', N * Is); j.output('mf.su', N * Is); j.scratch('mf.hs', N * Is);
        gemm(j, 'mf.x', 'mf.sgt', 'mf.sg', 'mf.ord', k, { M: N, N: Is, K: H, tB: true });
        gemm(j, 'mf.x', 'mf.sup', 'mf.su', 'mf.ord', k, { M: N, N: Is, K: H, tB: true });
        j.pass('silumul', ['mf.sg', 'mf.su', 'mf.hs'], [N * Is], env.eltGrid(N * Is));
        gemm(j, 'mf.hs', 'mf.sdn', 'mf.o', 'mf.ord', k, { M: N, N: H, K: Is, tB: true });
      }
      j.pass('moeCombine', ['mf.o', 'mf.y', 'mf.pos', 'mf.sw'], [N, H, k, a.sGate ? 1 : 0, 1], env.eltGrid(N * H));
      env.run(j);
      j.read('mf.o', out); j.read('mf.g', a.g); j.read('mf.u', a.u); j.read('mf.y', a.y);
      if (a.sGate) { j.read('mf.sg', a.sg!); j.read('mf.su', a.su!); }
    },

    MoeFfnBackward(a: MoeFfnArgs, d: MoeFfnGrads): void {
      const pos = checkMoeArgs(a, 'MoeFfnBackward', d);
      if (a.N === 0) return;
      if (oversize(a)) { tsMoeFfnBackward(a, d); return; }
      const { N, H, I, k, Is } = a, M = N * k, j = env.newJob();
      const ranges = routing(j, a, pos, 'mb.');
      env.operand(j, 'mb.go', d.gradOut, N * H); env.operand(j, 'mb.g', a.g, M * I); env.operand(j, 'mb.u', a.u, M * I); env.operand(j, 'mb.y', a.y, M * H);
      // Weight gradients: one inout buffer per distinct array, accumulated into on the device.
      const gradRoles = new Map<Float32Array, string>();
      const grad = (arr: Float32Array | null): string | null => {
        if (!arr) return null;
        let name = gradRoles.get(arr);
        if (!name) { name = `mb.gw${gradRoles.size}`; gradRoles.set(arr, name); j.inout(name, arr, arr.length); }
        return name;
      };
      for (const n of ['mb.dy', 'mb.dxs']) j.scratch(n, M * H);
      for (const n of ['mb.dh', 'mb.dg', 'mb.du', 'mb.h']) j.scratch(n, M * I);
      j.output('mb.gx', N * H); j.output('mb.sw.g', M);
      j.pass('moeDy', ['mb.go', 'mb.y', 'mb.ord', 'mb.sw', 'mb.dy', 'mb.sw.g'], [M, H, k], env.rowGrid(M));
      for (const [e, p0, r] of ranges) gemm(j, 'mb.dy', `mb.dn${e}`, 'mb.dh', 'mb.ord', k, { M: r, N: I, K: H, aOff: p0 * H, cOff: p0 * I });
      j.pass('silumulB', ['mb.g', 'mb.u', 'mb.dh', 'mb.dg', 'mb.du'], [M * I], env.eltGrid(M * I));
      if (ranges.some(([e]) => d.gDown[e])) j.pass('silumul', ['mb.g', 'mb.u', 'mb.h'], [M * I], env.eltGrid(M * I));
      for (const [e, p0, r] of ranges) {
        const gD = grad(d.gDown[e] ?? null), gG = grad(d.gGate[e] ?? null), gU = grad(d.gUp[e] ?? null);
        if (gD) gemm(j, 'mb.dy', 'mb.h', gD, 'mb.ord', k, { M: H, N: I, K: r, tA: true, aOff: p0 * H, bOff: p0 * I, acc: true });
        if (gG) gemm(j, 'mb.dg', 'mb.x', gG, 'mb.ord', k, { M: I, N: H, K: r, tA: true, aOff: p0 * I, gB: true, gOff: p0, acc: true });
        if (gU) gemm(j, 'mb.du', 'mb.x', gU, 'mb.ord', k, { M: I, N: H, K: r, tA: true, aOff: p0 * I, gB: true, gOff: p0, acc: true });
        gemm(j, 'mb.dg', `mb.gt${e}`, 'mb.dxs', 'mb.ord', k, { M: r, N: H, K: I, aOff: p0 * I, cOff: p0 * H });
        gemm(j, 'mb.du', `mb.up${e}`, 'mb.dxs', 'mb.ord', k, { M: r, N: H, K: I, aOff: p0 * I, cOff: p0 * H, acc: true });
      }
      if (a.sGate) {
        const n = N * Is;
        env.operand(j, 'mb.sg', a.sg!, n); env.operand(j, 'mb.su', a.su!, n);
        for (const s of ['mb.sdh', 'mb.sdg', 'mb.sdu', 'mb.hs']) j.scratch(s, n);
        gemm(j, 'mb.go', 'mb.sdn', 'mb.sdh', 'mb.ord', k, { M: N, N: Is, K: H });
        j.pass('silumulB', ['mb.sg', 'mb.su', 'mb.sdh', 'mb.sdg', 'mb.sdu'], [n], env.eltGrid(n));
        gemm(j, 'mb.sdg', 'mb.sgt', 'mb.gx', 'mb.ord', k, { M: N, N: H, K: Is });
        gemm(j, 'mb.sdu', 'mb.sup', 'mb.gx', 'mb.ord', k, { M: N, N: H, K: Is, acc: true });
        const gD = grad(d.gsDown), gG = grad(d.gsGate), gU = grad(d.gsUp);
        if (gD) {
          j.pass('silumul', ['mb.sg', 'mb.su', 'mb.hs'], [n], env.eltGrid(n));
          gemm(j, 'mb.go', 'mb.hs', gD, 'mb.ord', k, { M: H, N: Is, K: N, tA: true, acc: true });
        }
        if (gG) gemm(j, 'mb.sdg', 'mb.x', gG, 'mb.ord', k, { M: Is, N: H, K: N, tA: true, acc: true });
        if (gU) gemm(j, 'mb.sdu', 'mb.x', gU, 'mb.ord', k, { M: Is, N: H, K: N, tA: true, acc: true });
      }
      j.pass('moeCombine', ['mb.gx', 'mb.dxs', 'mb.pos', 'mb.sw'], [N, H, k, a.sGate ? 1 : 0, 0], env.eltGrid(N * H));
      env.run(j);
      j.read('mb.gx', d.gradX); j.read('mb.sw.g', d.gradW);
      for (const [arr, name] of gradRoles) j.read(name, arr);
    },
  };
}
