/**
 * AdamW as DeepSeek-V3 trains with it (report §4.2): β1 0.9, β2 0.95, decoupled weight decay 0.1
 * on matrices only (rank ≥ 2; norms and vectors are not decayed), bias-corrected moments, plus the
 * gradient utilities a trainer needs: global-norm clipping and a non-finite check (browser-safe).
 *
 * Moments are f32 by default; `momentDtype: 'bf16'` stores them as bfloat16 codes (Uint16Array),
 * decoded, updated in f32 and re-encoded each step — the FP8 recipe's memory saving (report §3.3).
 * The state (`state()` / `loadState()`) is exact: restoring it continues bit-for-bit.
 */
import type { Tensor } from '../autograd/tensor.js';
import { decodeBf16, encodeBf16 } from '../fp8/codec.js';
import { kernel, kernelBackend, optionalKernel, type AdamWItem } from '../backend/registry.js';
import { declareResident, hostWrote, syncHost } from '../backend/residency.js';

/** AdamW hyper-parameters (lr comes per step from the schedule). */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay applied to matrices (rank ≥ 2) only. */
  weightDecay: number;
  /** Storage of the first/second moments. */
  momentDtype: 'f32' | 'bf16';
  /**
   * Per-parameter learning-rate multipliers (a parameter group, as PyTorch's `param_groups`):
   * parameter i steps with lr·lrScale[i] (its decay too). Absent or shorter: 1.
   */
  lrScale?: readonly number[];
}

export const defaultAdamW: Readonly<AdamWOptions> = Object.freeze({ beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, momentDtype: 'f32' });

type Moment = Float32Array | Uint16Array;

/** Saved optimizer state: step count and both moments per parameter, in parameter order. */
export interface AdamWState {
  step: number;
  momentDtype: 'f32' | 'bf16';
  m: Moment[];
  v: Moment[];
}

/** AdamW over a fixed list of parameters (their `.grad` must be set before `step`). */
export class AdamW {
  readonly params: Tensor[];
  readonly opts: AdamWOptions;
  /** Optimizer steps taken (for bias correction). */
  stepCount = 0;
  private m: Moment[];
  private v: Moment[];
  private scratchM = new Float32Array(0);
  private scratchV = new Float32Array(0);

  constructor(params: Tensor[], opts: Partial<AdamWOptions> = {}) {
    this.params = params;
    this.opts = { ...defaultAdamW, ...opts };
    const alloc = (n: number): Moment => (this.opts.momentDtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n));
    this.m = params.map((p) => alloc(p.size));
    this.v = params.map((p) => alloc(p.size));
    // f32 moments are written only here (announced below), so a device backend may keep them resident.
    for (const a of [...this.m, ...this.v]) if (a instanceof Float32Array) declareResident(a);
  }

  /** One update with learning rate `lr`; parameters without a gradient are left alone. */
  step(lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.opts;
    this.stepCount++;
    const bc1 = 1 - Math.pow(beta1, this.stepCount), bc2 = 1 - Math.pow(beta2, this.stepCount);
    const bc2Sqrt = Math.sqrt(bc2);
    // f32 moments on a backend with a batched AdamW (webgpu: one submission for every parameter).
    const batch = this.opts.momentDtype === 'f32' ? optionalKernel('AdamWBatch') : null;
    // The backend that runs AdamW; a device backend (webgpu) may hold the newest moments (residency.ts).
    const by = kernelBackend(batch ? 'AdamWBatch' : 'AdamW');
    const items: AdamWItem[] = [], stepped: Tensor[] = [];
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i]!;
      const g = p.grad;
      if (!g) continue;
      const w = p.f32;
      const lrI = lr * (this.opts.lrScale?.[i] ?? 1);
      const stepSize = lrI / bc1;
      const decay = p.rank >= 2 ? 1 - lrI * weightDecay : 1;
      const h = { beta1, beta2, eps, stepSize, decay, invBc2Sqrt: 1 / bc2Sqrt };
      // BF16 moments: the backend's fused kernel where it has one (native: same bits as below).
      const fused = this.opts.momentDtype === 'bf16' ? optionalKernel('AdamWBf16') : null;
      if (fused) { fused(w, g, this.m[i] as Uint16Array, this.v[i] as Uint16Array, h); p.wrote(kernelBackend('AdamWBf16')); continue; }
      const [m, v] = this.moments(i, w.length, by);
      syncHost(w, by);
      if (batch) { items.push({ w, g, m, v, h }); stepped.push(p); continue; }
      // The backend's AdamW kernel (native: vectorised and threaded; ts: the same formula in f64).
      kernel('AdamW')(w, g, m, v, h);
      // The data changed in place: caches of it (FP8 weight copies, other devices' copies) are stale now.
      p.wrote(by);
      if (this.opts.momentDtype === 'bf16') {
        (this.m[i] as Uint16Array).set(encodeBf16(m));
        (this.v[i] as Uint16Array).set(encodeBf16(v));
      } else {
        hostWrote(m, by);
        hostWrote(v, by);
      }
    }
    if (batch && items.length) {
      batch(items);
      items.forEach((it, k) => { stepped[k]!.wrote(by); hostWrote(it.m, by); hostWrote(it.v, by); });
    }
  }

  /** f32 views of parameter i's moments (decoded into scratch for bf16 storage). */
  private moments(i: number, n: number, by: string | null): [Float32Array, Float32Array] {
    if (this.opts.momentDtype === 'f32') {
      const m = this.m[i] as Float32Array, v = this.v[i] as Float32Array;
      syncHost(m, by); syncHost(v, by);
      return [m, v];
    }
    if (this.scratchM.length < n) { this.scratchM = new Float32Array(n); this.scratchV = new Float32Array(n); }
    const m = this.scratchM.subarray(0, n), v = this.scratchV.subarray(0, n);
    decodeBf16(this.m[i] as Uint16Array, m);
    decodeBf16(this.v[i] as Uint16Array, v);
    return [m, v];
  }

  /** Bytes held by the moments (what the bf16 recipe halves). */
  stateBytes(): number {
    let n = 0;
    for (const a of this.m) n += a.byteLength;
    for (const a of this.v) n += a.byteLength;
    return n;
  }

  /** The exact state (arrays are the live ones, brought up to date from a device; copy before mutating). */
  state(): AdamWState {
    for (const a of [...this.m, ...this.v]) if (a instanceof Float32Array) syncHost(a);
    return { step: this.stepCount, momentDtype: this.opts.momentDtype, m: this.m, v: this.v };
  }

  /** Restores a saved state; throws naming the first mismatch (count, dtype, size). */
  loadState(s: AdamWState): void {
    if (s.momentDtype !== this.opts.momentDtype) throw new Error(`optimizer state: moments are ${s.momentDtype} but this run uses ${this.opts.momentDtype} (same --precision as the checkpoint?)`);
    if (s.m.length !== this.params.length || s.v.length !== this.params.length) {
      throw new Error(`optimizer state: ${s.m.length} moment tensors for ${this.params.length} parameters (different model config?)`);
    }
    for (let i = 0; i < this.params.length; i++) {
      const n = this.params[i]!.size;
      if (s.m[i]!.length !== n || s.v[i]!.length !== n) throw new Error(`optimizer state: moment ${i} has ${s.m[i]!.length} values, parameter has ${n}`);
      this.m[i]!.set(s.m[i] as never);
      this.v[i]!.set(s.v[i] as never);
      for (const a of [this.m[i]!, this.v[i]!]) if (a instanceof Float32Array) hostWrote(a);
    }
    if (!(Number.isInteger(s.step) && s.step >= 0)) throw new Error(`optimizer state: bad step ${s.step}`);
    this.stepCount = s.step;
  }
}

/** Euclidean norm of all gradients together (NaN/Infinity when any gradient is not finite). */
export function gradNorm(params: readonly Tensor[]): number {
  let s = 0;
  const batch = optionalKernel('SumSquaresBatch');
  if (batch) {
    // One call (webgpu: one submission) for every gradient; summed in parameter order as below.
    for (const x of batch(params.flatMap((p) => (p.grad ? [p.grad] : [])))) s += x;
    return Math.sqrt(s);
  }
  const sumSq = kernel('SumSquares');
  for (const p of params) if (p.grad) s += sumSq(p.grad);
  return Math.sqrt(s);
}

/** Scales gradients so their global norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): number {
  const norm = gradNorm(params);
  if (Number.isFinite(norm) && maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const p of params) {
      const g = p.grad;
      if (g) for (let i = 0; i < g.length; i++) g[i]! *= scale;
    }
  }
  return norm;
}
