/**
 * The DeepSeekMoE feed-forward as one op: shared(x) + Σ_j w[n,j] · expert_{ids[n,j]}(x[n]) over
 * SwiGLU experts. With the backend's grouped kernel (native) every expert of the layer runs in one
 * call forward and one backward — row gathers, combine and weight gradients fused; otherwise the
 * same sum is composed from the generic ops (index-select, linear, siluMul, index-add).
 *
 * Contract:
 * - x [N, H]; ids [N·k] expert ids in [0, E) (k distinct per token is the caller's business;
 *   repeats are allowed and summed); w [N, k] gate weights (may require grad); experts E entries
 *   of {gate [I, H], up [I, H], down [H, I]}; shared null or the same with its own width.
 * - Returns [N, H]. Gradients flow to x, w and every weight; a weight that is a leaf (a parameter)
 *   gets its gradient added straight into `.grad` (allocated zeroed on first use), as the tape
 *   would, without a temporary array.
 * - Both paths compute the same function; they differ only in float summation order.
 */
import { Tensor, fmtShape, allocUninitF32 } from '../autograd/tensor.js';
import { record, needsGrad } from '../autograd/tape.js';
import { kernel, optionalKernel, type MoeFfnArgs } from '../backend/registry.js';
import { recycleF32 } from '../backend/alloc.js';
import { linear } from './linalg.js';
import { siluMul } from './elementwise.js';
import { reshape } from './shape.js';
import { gather, indexSelect, indexAddMany } from './indexing.js';

/** One SwiGLU expert's weights (PyTorch Linear layout). */
export interface SwiGluWeights { gate: Tensor; up: Tensor; down: Tensor }

/** Slots (s = n·k + j) grouped by expert, stable by token: order [N·k] and offsets [E + 1]. */
export function groupSlots(ids: Int32Array, E: number): { order: Int32Array; offsets: Int32Array } {
  const offsets = new Int32Array(E + 1);
  for (let s = 0; s < ids.length; s++) {
    const e = ids[s]!;
    if (!(e >= 0 && e < E)) throw new Error(`moeFfn: expert id ${e} out of range [0, ${E})`);
    offsets[e + 1]!++;
  }
  for (let e = 0; e < E; e++) offsets[e + 1]! += offsets[e]!;
  const cursor = offsets.slice(0, E), order = new Int32Array(ids.length);
  for (let s = 0; s < ids.length; s++) order[cursor[ids[s]!]!++] = s;
  return { order, offsets };
}

type Linear = (x: Tensor, w: Tensor) => Tensor;

function swiglu(x: Tensor, m: SwiGluWeights, lin: Linear): Tensor {
  return lin(siluMul(lin(x, m.gate), lin(x, m.up)), m.down);
}

/**
 * The composed form (every backend): per expert index-select, SwiGLU, and one index-add of all.
 * `lin` replaces the f32 linear of the expert projections (the FP8 recipe passes its own).
 */
export function moeFfnComposed(x: Tensor, experts: SwiGluWeights[], shared: SwiGluWeights | null, ids: Int32Array, k: number, w: Tensor, lin: Linear = linear): Tensor {
  const [N, H] = x.shape as [number, number];
  const { order, offsets } = groupSlots(ids, experts.length);
  const base = shared ? swiglu(x, shared, lin) : new Tensor(new Float32Array(N * H), [N, H]);
  const wFlat = reshape(w, [1, N * k]);
  const idxs: Int32Array[] = [], parts: Tensor[] = [], scales: Tensor[] = [];
  for (let e = 0; e < experts.length; e++) {
    const slots = order.subarray(offsets[e]!, offsets[e + 1]!);
    if (slots.length === 0) continue;
    const rows = Int32Array.from(slots, (s) => Math.floor(s / k));
    idxs.push(rows);
    parts.push(swiglu(indexSelect(x, rows), experts[e]!, lin));
    scales.push(reshape(gather(wFlat, new Tensor(Int32Array.from(slots), [1, slots.length], 'i32')), [slots.length, 1]));
  }
  return parts.length ? indexAddMany(base, idxs, parts, scales) : base;
}

/** Gradient target for weight t: its `.grad` when it is a leaf, else a fresh array to hand back. */
function gradTarget(t: Tensor): { buf: Float32Array | null; ret: Float32Array | null } {
  if (!t.requiresGrad) return { buf: null, ret: null };
  if (!t.node) { t.grad ??= new Float32Array(t.size); return { buf: t.grad, ret: null }; }
  const fresh = new Float32Array(t.size);
  return { buf: fresh, ret: fresh };
}

/** shared(x) + Σ_j w[n,j] · expert_{ids[n·k+j]}(x[n]) (see the file contract). */
export function moeFfn(x: Tensor, experts: SwiGluWeights[], shared: SwiGluWeights | null, ids: Int32Array, k: number, w: Tensor): Tensor {
  if (x.rank !== 2) throw new Error(`moeFfn: x must be [N, H], got ${fmtShape(x.shape)}`);
  const [N, H] = x.shape as [number, number];
  const E = experts.length;
  if (E === 0) throw new Error('moeFfn: no routed experts');
  const I = experts[0]!.gate.shape[0]!;
  for (const [i, m] of experts.entries()) {
    if (m.gate.shape[0] !== I || m.gate.shape[1] !== H || m.up.shape[0] !== I || m.up.shape[1] !== H || m.down.shape[0] !== H || m.down.shape[1] !== I) {
      throw new Error(`moeFfn: expert ${i} has gate ${fmtShape(m.gate.shape)} up ${fmtShape(m.up.shape)} down ${fmtShape(m.down.shape)}; expected [${I}, ${H}], [${I}, ${H}], [${H}, ${I}]`);
    }
  }
  const Is = shared ? shared.gate.shape[0]! : 0;
  if (shared && (shared.gate.shape[1] !== H || shared.up.shape[0] !== Is || shared.up.shape[1] !== H || shared.down.shape[0] !== H || shared.down.shape[1] !== Is)) {
    throw new Error(`moeFfn: shared expert gate ${fmtShape(shared.gate.shape)} up ${fmtShape(shared.up.shape)} down ${fmtShape(shared.down.shape)} do not fit H = ${H}`);
  }
  if (ids.length !== N * k || w.size !== N * k) throw new Error(`moeFfn: ${N} tokens × k ${k} need ${N * k} ids and weights, got ${ids.length} and ${w.size}`);
  // Backends register the grouped kernel's forward and backward together.
  const fwd = optionalKernel('MoeFfnForward');
  if (!fwd) return moeFfnComposed(x, experts, shared, ids, k, w);
  const { order, offsets } = groupSlots(ids, E);
  const M = N * k;
  const args: MoeFfnArgs = {
    x: x.f32, N, H, I, k,
    gate: experts.map((m) => m.gate.f32), up: experts.map((m) => m.up.f32), down: experts.map((m) => m.down.f32),
    sGate: shared ? shared.gate.f32 : null, sUp: shared ? shared.up.f32 : null, sDown: shared ? shared.down.f32 : null, Is,
    order, offsets, slotW: w.f32,
    g: allocUninitF32(M * I), u: allocUninitF32(M * I), y: allocUninitF32(M * H),
    sg: shared ? allocUninitF32(N * Is) : null, su: shared ? allocUninitF32(N * Is) : null,
  };
  const out = allocUninitF32(N * H);
  fwd(args, out);
  const weights = [...experts.flatMap((m) => [m.gate, m.up, m.down]), ...(shared ? [shared.gate, shared.up, shared.down] : [])];
  if (!needsGrad(x, w, ...weights)) {
    // Inference: nothing is saved for a backward.
    for (const a of [args.g, args.u, args.y, args.sg, args.su]) if (a) recycleF32(a);
    return new Tensor(out, [N, H]);
  }
  return record(new Tensor(out, [N, H]), 'MoeFfn', [x, w, ...weights], (g) => {
    const targets = weights.map(gradTarget);
    const t = (i: number): Float32Array | null => targets[i]!.buf;
    const gradX = allocUninitF32(N * H), gradW = allocUninitF32(M);
    kernel('MoeFfnBackward')(args, {
      gradOut: g, gradX, gradW,
      gGate: experts.map((_, e) => t(3 * e)), gUp: experts.map((_, e) => t(3 * e + 1)), gDown: experts.map((_, e) => t(3 * e + 2)),
      gsGate: shared ? t(3 * E) : null, gsUp: shared ? t(3 * E + 1) : null, gsDown: shared ? t(3 * E + 2) : null,
    });
    return [x.requiresGrad ? gradX : null, w.requiresGrad ? gradW : null, ...targets.map((r) => r.ret)];
  }, () => {
    // The saved projections never leave this op: back to the pool once backward has run.
    for (const a of [args.g, args.u, args.y, args.sg, args.su]) if (a) recycleF32(a);
    args.g = args.u = args.y = new Float32Array(0); args.sg = args.su = null;
  });
}
