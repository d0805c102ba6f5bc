/**
 * FP8 linear layer for training (DeepSeek-V3 report §3.3), as an autograd op: y = x·Wᵀ.
 *
 * Contract (x [..., K] f32, W [N, K] f32 master weight, y [..., N] f32; E4M3 everywhere, online
 * `amax / 448` scales, optional power-of-two `ue8m0` scales):
 * - Fprop: x quantised per 1×128 tile (per token, 128 channels of K), W per 128×128 block.
 * - Dgrad: dX = dY·W. dY quantised 1×128 along its K (= out) axis; Wᵀ in 128×128 blocks, which are
 *   the transposes of W's blocks (same amax, same scales, same codes — re-tiling is a transpose).
 * - Wgrad: dW = dYᵀ·X. dYᵀ and Xᵀ quantised 1×128 along the token axis. Xᵀ comes from the saved
 *   FP8 x: decoded and re-quantised along tokens (the report's re-tiling of cached activations).
 * - Every GEMM: FP8 operands with scales, partial sums of each 128-wide K block computed in fp32
 *   (decoded panels through the `MatMul` kernel), then scaled and promoted into an fp32
 *   accumulator (fp8Gemm semantics). Gradients are returned in f32.
 * - Saved for backward: only the FP8 codes of x (1 byte per value) + its tile scales; never the f32
 *   x. Counted by `savedActivationStats()`. W is re-quantised each call (measured cheaper than
 *   tracking versions: ~1/M of the GEMM work) and its FP8 copy is kept until backward.
 * - K need not be a multiple of 128: the last tile/block is partial (ragged).
 * Emulated on the CPU: FP8 values are decoded to f32 before arithmetic; the saving is memory.
 * Engine caveat: the tape keeps each op's input Tensors (node.inputs), so the f32 x object stays
 * reachable until backward unless the engine stops holding inputs; the bytes counted here are the
 * buffers this op itself stores.
 */
import { Tensor, fmtShape } from '../autograd/tensor.js';
import { needsGrad, record } from '../autograd/tape.js';
import { kernel } from '../backend/registry.js';
import { E4M3_TO_F32 } from './codec.js';
import { FP8_BLOCK, type ScaleFormat, dequantizeTiles, quantizeBlocks, quantizeTiles } from './quant.js';

/** Options of {@link fp8Linear}. */
export interface Fp8LinearOptions {
  /** Scale format of every quantisation: 'fp32' (amax/448, default) or 'ue8m0' (power of two). */
  scaleFmt?: ScaleFormat | undefined;
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
// Scaled GEMM core

/**
 * C[M,N] = Σ_kb aS[m,kb]·bS[n,kb]·Σ_{k∈kb} fp8(a)[m,k]·fp8(b)[n,k] with one fp32 partial sum per
 * 128-wide K block (MatMul on decoded panels) promoted into an fp32 accumulator.
 * aCodes [M,K], bCodes [N,K] (e4m3); aS [M,KB], bS [N,KB] per-row-per-block dequant multipliers.
 */
export function scaledFp8Gemm(
  aCodes: Uint8Array, aS: Float32Array, bCodes: Uint8Array, bS: Float32Array,
  M: number, N: number, K: number,
): Float32Array {
  const B = FP8_BLOCK;
  const KB = Math.ceil(K / B);
  if (aCodes.length !== M * K || bCodes.length !== N * K || aS.length !== M * KB || bS.length !== N * KB) {
    throw new Error(`fp8.scaledFp8Gemm: operand sizes do not match M=${M} N=${N} K=${K} (a ${aCodes.length}, b ${bCodes.length}, aS ${aS.length}, bS ${bS.length})`);
  }
  const T = E4M3_TO_F32;
  const C = new Float32Array(M * N);
  if (K === 0) return C;
  const kw0 = Math.min(B, K);
  const ap = new Float32Array(M * kw0);
  const bp = new Float32Array(kw0 * N); // transposed panel [kw, N]: streams rows in the kernel
  const P = new Float32Array(M * N);
  const mm = kernel('MatMul');
  for (let kb = 0; kb < KB; kb++) {
    const k0 = kb * B;
    const kw = Math.min(B, K - k0);
    for (let m = 0; m < M; m++) {
      const src = m * K + k0, dst = m * kw;
      for (let j = 0; j < kw; j++) ap[dst + j] = T[aCodes[src + j]!]!;
    }
    for (let n = 0; n < N; n++) {
      const src = n * K + k0;
      for (let j = 0; j < kw; j++) bp[j * N + n] = T[bCodes[src + j]!]!;
    }
    mm({ a: ap, b: bp, c: P, batch: 1, m: M, n: N, k: kw, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    // Promotion: scale this block's fp32 partial sums and add them to the accumulator.
    for (let m = 0; m < M; m++) {
      const as = aS[m * KB + kb]!;
      const row = m * N;
      for (let n = 0; n < N; n++) C[row + n]! += as * bS[n * KB + kb]! * P[row + n]!;
    }
  }
  return C;
}

/** Expands 128×128 block scales [ceil(N/128), KB] to per-row scales [N, KB]. */
function rowScalesOfBlocks(blockScales: Float32Array, N: number, KB: number): Float32Array {
  const out = new Float32Array(N * KB);
  for (let n = 0; n < N; n++) {
    const src = ((n / FP8_BLOCK) | 0) * KB;
    for (let kb = 0; kb < KB; kb++) out[n * KB + kb] = blockScales[src + kb]!;
  }
  return out;
}

/** Wᵀ's 128×128 blocks from W's: codes transposed [K,N], per-row scales [K, ceil(N/128)]. */
function transposeBlocks(codes: Uint8Array, blockScales: Float32Array, N: number, K: number): { codes: Uint8Array; rowScales: Float32Array } {
  const t = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = codes[n * K + k]!;
  const KB = Math.ceil(K / FP8_BLOCK), NB = Math.ceil(N / FP8_BLOCK);
  const rs = new Float32Array(K * NB);
  for (let k = 0; k < K; k++) {
    const kb = (k / FP8_BLOCK) | 0;
    for (let nb = 0; nb < NB; nb++) rs[k * NB + nb] = blockScales[nb * KB + kb]!;
  }
  return { codes: t, rowScales: rs };
}

function transposeF32(x: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = x[r * cols + c]!;
  return t;
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
  const M = K === 0 ? 0 : x.size / K;
  const KB = Math.ceil(K / FP8_BLOCK);
  const qx = quantizeTiles(x.f32, M, K, { scaleFmt });
  const qw = quantizeBlocks(w.f32, N, K, { scaleFmt });
  const y = scaledFp8Gemm(qx.codes, qx.scales, qw.codes, rowScalesOfBlocks(qw.scales, N, KB), M, N, K);
  const out = new Tensor(y, [...x.shape.slice(0, -1), N]);
  if (!needsGrad(x, w)) return out;

  // Saved for backward: x's FP8 codes + tile scales, and W's FP8 copy (a weight, not an activation).
  let saved: { codes: Uint8Array; scales: Float32Array } | null = qx;
  let wq: { codes: Uint8Array; scales: Float32Array } | null = qw;
  const release = trackSaved(qx.codes.byteLength + qx.scales.byteLength);
  const xNeeds = x.requiresGrad, wNeeds = w.requiresGrad;
  return record(out, 'Fp8Linear', [x, w], (g) => {
    if (!saved || !wq) throw new Error('fp8Linear: backward ran twice (saved FP8 activations were already released)');
    let gx: Float32Array | null = null, gw: Float32Array | null = null;
    if (xNeeds) {
      // Dgrad: dX[M,K] = dY[M,N] · W[N,K]; A = dY (1×128 along N), B = Wᵀ [K,N] (128×128 blocks).
      const qg = quantizeTiles(g, M, N, { scaleFmt });
      const wt = transposeBlocks(wq.codes, wq.scales, N, K);
      gx = scaledFp8Gemm(qg.codes, qg.scales, wt.codes, wt.rowScales, M, K, N);
    }
    if (wNeeds) {
      // Wgrad: dW[N,K] = dYᵀ[N,M] · X[M,K]; both transposed operands quantised 1×128 along tokens.
      const qgt = quantizeTiles(transposeF32(g, M, N), N, M, { scaleFmt });
      const xd = dequantizeTiles(saved.codes, saved.scales, M, K);
      const qxt = quantizeTiles(transposeF32(xd, M, K), K, M, { scaleFmt });
      gw = scaledFp8Gemm(qgt.codes, qgt.scales, qxt.codes, qxt.scales, N, K, M);
    }
    return [gx, gw];
  }, () => {
    saved = null;
    wq = null;
    release();
  });
}

/** Bytes fp8Linear saves for backward for an input of `rows` tokens × `k` channels (codes + fp32 tile scales). */
export function fp8SavedBytes(rows: number, k: number): number {
  return rows * k + rows * Math.ceil(k / FP8_BLOCK) * 4;
}
