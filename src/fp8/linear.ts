/**
 * FP8 linear layer for training (DeepSeek-V3 report §3.3), as an autograd op: y = x·Wᵀ.
 *
 * Contract (x [..., K] f32, W [N, K] f32 master weight, y [..., N] f32; E4M3 everywhere, online
 * `amax / 448` scales, optional power-of-two `ue8m0` scales):
 * - Fprop: x quantised per 1×128 tile (per token, 128 channels of K), W per 128×128 block.
 * - Dgrad: dX = dY·W. dY quantised 1×128 along its K (= out) axis; W's own codes and block scales
 *   serve as the [N, K] operand (the GEMM reads B as [reduction, out]), so nothing is re-tiled.
 * - Wgrad: dW = dYᵀ·X. dY and X quantised in 128×1 tiles along the token axis: dY from its f32,
 *   X re-tiled from the saved FP8 x (decoded with its row scales, re-quantised along tokens).
 * - Every GEMM: FP8 operands with scales, the partial sums of each 128-wide K block in fp32, then
 *   scaled and promoted into an fp32 accumulator (src/fp8/kernels.ts scaledGemm). Gradients are f32.
 *   `Fp8LinearOptions.gemm`: 'ts' = the TypeScript reference kernels, 'native' = the active
 *   backend's fused kernels (native C++: quantisers bit-exact with the reference, GEMM codes
 *   decoded to BF16, AVX-512 BF16 dot products; webgpu: WGSL, quantisers bit-exact too), 'auto'
 *   (default) = those when the active backend has them.
 * - Weight: quantised once per optimizer step, not per use: the FP8 copy (codes, block scales,
 *   codes transposed for Fprop) is cached per weight tensor and reused until `w.version` (bumped by
 *   AdamW.step) or its data array changes. The copy used in forward is kept until backward.
 * - Saved for backward: only the FP8 codes of x (1 byte per value) + its tile scales; never the f32
 *   x. Counted by `savedActivationStats()`.
 * - Ablations (`dgrad` / `wgrad: 'bf16'`): that GEMM takes BF16-rounded operands and f32
 *   accumulation instead; with `wgrad: 'bf16'` x is saved as BF16 (2 bytes per value, counted).
 * - K need not be a multiple of 128: the last tile/block is partial (ragged).
 * Emulated on the CPU: FP8 values are decoded (to f32 or BF16) before arithmetic.
 */
import { Tensor, fmtShape } from '../autograd/tensor.js';
import { graphHandle, needsGrad, record } from '../autograd/tape.js';
import { getBackend, kernel } from '../backend/registry.js';
import { decodeBf16, encodeBf16 } from './codec.js';
import { type Fp8Weight, nativeFp8Available, quantizeCols, quantizeRows, quantizeWeight, requantizeCols, scaledGemm } from './kernels.js';
import { FP8_BLOCK, type Fp8Quantized, type ScaleFormat } from './quant.js';

/** Which implementation runs fp8Linear's kernels (see the file comment). */
export type Fp8GemmPath = 'auto' | 'ts' | 'native';

/** Options of {@link fp8Linear}. */
export interface Fp8LinearOptions {
  /** Scale format of every quantisation: 'fp32' (amax/448, default) or 'ue8m0' (power of two). */
  scaleFmt?: ScaleFormat | undefined;
  /** Kernels: 'auto' (default), 'ts' (reference) or 'native' (error when not active). */
  gemm?: Fp8GemmPath | undefined;
  /** Activation-gradient GEMM: 'fp8' (default) or 'bf16' (ablation). */
  dgrad?: 'fp8' | 'bf16' | undefined;
  /** Weight-gradient GEMM: 'fp8' (default) or 'bf16' (ablation; x is then saved as BF16). */
  wgrad?: 'fp8' | 'bf16' | undefined;
  /** GEMM accumulator (ablation, Fp8GemmArgs.accum): 0 fp32 (default), 1 14-bit promoted every 128, 2 14-bit never promoted. */
  accum?: 0 | 1 | 2 | undefined;
}

/** The implementation `path` resolves to under the active backend; 'native' throws when unavailable. */
export function resolveFp8Gemm(path: Fp8GemmPath = 'auto'): 'ts' | 'native' {
  if (path === 'ts') return 'ts';
  if (nativeFp8Available()) return 'native';
  if (path === 'native') throw new Error(`fp8Linear: gemm 'native' needs the native backend (or webgpu) active with its FP8 kernels (active: '${getBackend().name}'); use --backend native or gemm 'auto'`);
  return 'ts';
}

// ---------------------------------------------------------------------------------------------
// Saved-activation accounting (shared by every recipe's linear, so recipes compare like for like)

const stats = { live: 0, peak: 0, total: 0 };

/** Bytes of activations currently saved for backward by the recipe linears, their peak, and the total ever saved. */
export function savedActivationStats(): { live: number; peak: number; total: number } {
  return { ...stats };
}

/** Resets the peak and total to the live count (call at the start of a measured step). */
export function resetSavedActivationStats(): void {
  stats.peak = stats.live;
  stats.total = 0;
}

/** Records `bytes` saved for backward; returns the function that releases them (idempotent). */
export function trackSaved(bytes: number): () => void {
  stats.live += bytes;
  stats.total += bytes;
  if (stats.live > stats.peak) stats.peak = stats.live;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    stats.live -= bytes;
  };
}

// ---------------------------------------------------------------------------------------------
// Time spent in the FP8 kernels (for the experiment's "share spent quantising")

const timing = { quantizeMs: 0, gemmMs: 0 };

/** Milliseconds spent quantising (activations, gradients, weights) and in FP8 GEMMs since the last reset. */
export function fp8KernelTime(): { quantizeMs: number; gemmMs: number } { return { ...timing }; }
/** Zeroes {@link fp8KernelTime}. */
export function resetFp8KernelTime(): void { timing.quantizeMs = 0; timing.gemmMs = 0; }

function timedQ<T>(f: () => T): T { const t0 = performance.now(); const r = f(); timing.quantizeMs += performance.now() - t0; return r; }
function timedG<T>(f: () => T): T { const t0 = performance.now(); const r = f(); timing.gemmMs += performance.now() - t0; return r; }

// ---------------------------------------------------------------------------------------------
// The weight cache: one FP8 copy per weight and optimizer step

interface WeightEntry { version: number; data: unknown; scaleFmt: ScaleFormat; q: Fp8Weight; pins: number }
const weights = new WeakMap<Tensor, WeightEntry>();
const weightCounts = { quantized: 0, reused: 0 };

/** How often fp8Linear quantised a weight and how often it reused the cached FP8 copy. */
export function fp8WeightStats(): { quantized: number; reused: number } { return { ...weightCounts }; }

/**
 * W's FP8 copy, re-quantised only when W changed (version or data array) or the scale format
 * differs. A re-quantisation writes into the old copy's arrays unless a pending backward still
 * holds that copy (`pin`: the caller keeps it until its release).
 */
export function fp8Weight(w: Tensor, scaleFmt: ScaleFormat, path: 'ts' | 'native', pin = false): { q: Fp8Weight; unpin: () => void } {
  let e = weights.get(w);
  if (e && e.version === w.version && e.data === w.data && e.scaleFmt === scaleFmt) weightCounts.reused++;
  else {
    const [N, K] = w.shape as [number, number];
    const reuse = e && e.pins === 0 && e.q.codes.length === N * K ? e.q : undefined;
    const t0 = performance.now();
    const q = quantizeWeight(w.f32, N, K, scaleFmt, path, reuse);
    timing.quantizeMs += performance.now() - t0;
    e = { version: w.version, data: w.data, scaleFmt, q, pins: 0 };
    weights.set(w, e);
    weightCounts.quantized++;
  }
  const entry = e;
  if (!pin) return { q: entry.q, unpin: () => {} };
  entry.pins++;
  let done = false;
  return { q: entry.q, unpin: () => { if (!done) { done = true; entry.pins--; } } };
}

// Scratch for the transient FP8 operands of backward (dY's two quantisations, X re-tiled): they
// live only during one backward call, and backward calls never nest.
const scratch = [0, 1, 2].map(() => ({ codes: new Uint8Array(0), scales: new Float32Array(0) }));
function scratchInto(i: number, n: number, ns: number): { codes: Uint8Array; scales: Float32Array } {
  const s = scratch[i]!;
  if (s.codes.length < n) s.codes = new Uint8Array(n);
  if (s.scales.length < ns) s.scales = new Float32Array(ns);
  return s;
}

// ---------------------------------------------------------------------------------------------
// The three GEMMs

const KBOf = (n: number): number => Math.ceil(n / FP8_BLOCK);

/** y[M,N] = x·Wᵀ: A = x [M,K] (1×128 tiles), B = Wᵀ codes [K,N] (block scales). */
function fprop(qx: Fp8Quantized, wq: Fp8Weight, M: number, N: number, K: number, path: 'ts' | 'native', accum: 0 | 1 | 2): Float32Array {
  const KB = KBOf(K);
  return timedG(() => scaledGemm({ a: qx.codes, aTrans: false, sa: qx.scales, saKb: 1, saRow: KB, b: wq.codesT, sb: wq.scales, sbKb: 1, sbDiv: FP8_BLOCK, sbCol: KB, m: M, n: N, k: K, accum }, path));
}

/** dX[M,K] = dY·W: A = dY [M,N] (1×128 tiles along N), B = W codes [N,K] (block scales). */
function dgradFp8(qg: Fp8Quantized, wq: Fp8Weight, M: number, N: number, K: number, path: 'ts' | 'native', accum: 0 | 1 | 2): Float32Array {
  return timedG(() => scaledGemm({ a: qg.codes, aTrans: false, sa: qg.scales, saKb: 1, saRow: KBOf(N), b: wq.codes, sb: wq.scales, sbKb: KBOf(K), sbDiv: FP8_BLOCK, sbCol: 1, m: M, n: K, k: N, accum }, path));
}

/** dW[N,K] = dYᵀ·X: A = dY [M,N] read as [reduction, out], B = X [M,K]; both in 128×1 tiles along tokens. */
function wgradFp8(qgc: Fp8Quantized, qxc: Fp8Quantized, M: number, N: number, K: number, path: 'ts' | 'native', accum: 0 | 1 | 2): Float32Array {
  return timedG(() => scaledGemm({ a: qgc.codes, aTrans: true, sa: qgc.scales, saKb: N, saRow: 1, b: qxc.codes, sb: qxc.scales, sbKb: K, sbDiv: 1, sbCol: 1, m: N, n: K, k: M, accum }, path));
}

function roundBf16(x: Float32Array): Float32Array { return decodeBf16(encodeBf16(x)); }
function mm(a: Float32Array, b: Float32Array, m: number, n: number, k: number, transA: boolean): Float32Array {
  const c = new Float32Array(m * n);
  kernel('MatMul')({ a, b, c, batch: 1, m, n, k, transA, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
  return c;
}

// ---------------------------------------------------------------------------------------------
// The op

/**
 * y = x·Wᵀ with DeepSeek-V3's FP8 recipe (see the file comment). x [..., K], W [N, K] → y [..., N].
 * Records a backward (Dgrad, Wgrad in FP8) when x or W requires grad; saves only x's FP8 bytes.
 */
export function fp8Linear(x: Tensor, w: Tensor, opts: Fp8LinearOptions = {}): Tensor {
  if (w.rank !== 2) throw new Error(`fp8Linear: weight must be [out, in], got ${fmtShape(w.shape)}${w.name ? ' ' + w.name : ''}`);
  const [N, K] = w.shape as [number, number];
  if (x.rank < 1 || x.shape[x.rank - 1] !== K) {
    throw new Error(`fp8Linear: input ${fmtShape(x.shape)} does not end in ${K} (weight ${fmtShape(w.shape)}${w.name ? ' ' + w.name : ''})`);
  }
  const scaleFmt = opts.scaleFmt ?? 'fp32';
  const path = resolveFp8Gemm(opts.gemm);
  const dgradBf16 = opts.dgrad === 'bf16', wgradBf16 = opts.wgrad === 'bf16', accum = opts.accum ?? 0;
  const M = K === 0 ? 0 : x.size / K;
  // No closure in this function may mention x: V8 would keep it (and its f32 data) alive with the
  // backward closure's context. Hence the explicit timing instead of timedQ here.
  const t0 = performance.now();
  const qx = quantizeRows(x.f32, M, K, scaleFmt, path);
  timing.quantizeMs += performance.now() - t0;
  const grad = needsGrad(x, w);
  const { q: wq, unpin } = fp8Weight(w, scaleFmt, path, grad);
  const out = new Tensor(fprop(qx, wq, M, N, K, path, accum), [...x.shape.slice(0, -1), N]);
  if (!grad) return out;

  // Saved for backward: x's FP8 codes + tile scales (BF16 bits for a BF16 Wgrad), and W's FP8 copy.
  let saved: Fp8Quantized | null = wgradBf16 ? null : qx;
  let savedBf16: Uint16Array | null = wgradBf16 && w.requiresGrad ? encodeBf16(x.f32) : null;
  let wq1: Fp8Weight | null = wq;
  const release = trackSaved(savedBf16 ? savedBf16.byteLength : qx.codes.byteLength + qx.scales.byteLength);
  const xNeeds = x.requiresGrad, wNeeds = w.requiresGrad;
  // The graph keeps a data-less handle of x: its f32 values are not held for backward.
  return record(out, 'Fp8Linear', [graphHandle(x), w], (g) => {
    if (!wq1 || (!saved && !savedBf16 && wNeeds)) throw new Error('fp8Linear: backward ran twice (saved FP8 activations were already released)');
    let gx: Float32Array | null = null, gw: Float32Array | null = null;
    const gb = dgradBf16 || wgradBf16 ? roundBf16(g) : null;
    if (xNeeds) {
      if (dgradBf16) gx = mm(gb!, roundBf16(w.f32), M, K, N, false);
      else gx = dgradFp8(timedQ(() => quantizeRows(g, M, N, scaleFmt, path, scratchInto(0, M * N, M * KBOf(N)))), wq1, M, N, K, path, accum);
    }
    if (wNeeds) {
      if (wgradBf16) gw = mm(gb!, decodeBf16(savedBf16!), N, K, M, true);
      else {
        const sx = saved!;
        const qgc = timedQ(() => quantizeCols(g, M, N, scaleFmt, path, scratchInto(1, M * N, KBOf(M) * N)));
        const qxc = timedQ(() => requantizeCols(sx, M, K, scaleFmt, path, scratchInto(2, M * K, KBOf(M) * K)));
        gw = wgradFp8(qgc, qxc, M, N, K, path, accum);
      }
    }
    return [gx, gw];
  }, () => {
    saved = null;
    savedBf16 = null;
    wq1 = null;
    unpin();
    release();
  });
}

/** Bytes fp8Linear saves for backward for an input of `rows` tokens × `k` channels (codes + fp32 tile scales). */
export function fp8SavedBytes(rows: number, k: number): number {
  return rows * k + rows * Math.ceil(k / FP8_BLOCK) * 4;
}
