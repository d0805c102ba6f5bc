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
 * - Every GEMM: FP8 operands with scales, partial sums of each 128-wide K block computed in fp32,
 *   then scaled and promoted into an fp32 accumulator (fp8Gemm semantics). Gradients are f32.
 *   Two implementations (`Fp8LinearOptions.gemm`): 'ts' = `scaledFp8Gemm` (decoded f32 panels
 *   through the `MatMul` kernel; the reference), 'native' = the native backend's `fp8Gemm` (codes
 *   decoded exactly to BF16, AVX-512 BF16 dot products, FP32 accumulation). 'auto' (default) takes
 *   native when the active backend is `native` and offers `fp8Gemm`. Wgrad's B operand has 1×128
 *   scales, which the native kernel (128×128 weight blocks) cannot take: it runs one native call
 *   per 128-token block with unit B scales and applies B's per-row scale in the promotion.
 * - Saved for backward: only the FP8 codes of x (1 byte per value) + its tile scales; never the f32
 *   x. Counted by `savedActivationStats()`. W is re-quantised each call (measured cheaper than
 *   tracking versions: ~1/M of the GEMM work) and its FP8 copy is kept until backward.
 * - K need not be a multiple of 128: the last tile/block is partial (ragged).
 * Emulated on the CPU: FP8 values are decoded (to f32 or BF16) before arithmetic; the saving is memory.
 * Engine caveat: the tape keeps each op's input Tensors (node.inputs), so the f32 x object stays
 * reachable until backward unless the engine stops holding inputs; the bytes counted here are the
 * buffers this op itself stores.
 */
import { Tensor, fmtShape } from '../autograd/tensor.js';
import { graphHandle, needsGrad, record } from '../autograd/tape.js';
import { getBackend, kernel } from '../backend/registry.js';
import { E4M3_TO_F32 } from './codec.js';
import { FP8_BLOCK, type Fp8Quantized, type ScaleFormat, dequantizeTiles, quantizeBlocks, quantizeTiles } from './quant.js';

/** Which implementation runs fp8Linear's scaled GEMMs (see the file comment). */
export type Fp8GemmPath = 'auto' | 'ts' | 'native';

/** Options of {@link fp8Linear}. */
export interface Fp8LinearOptions {
  /** Scale format of every quantisation: 'fp32' (amax/448, default) or 'ue8m0' (power of two). */
  scaleFmt?: ScaleFormat | undefined;
  /** GEMM implementation: 'auto' (default), 'ts' (reference) or 'native' (error when not active). */
  gemm?: Fp8GemmPath | undefined;
}

/** The part of the native backend used here (structural: this file stays browser-safe). */
interface NativeFp8Gemm {
  fp8Gemm(a: Fp8Quantized, b: Fp8Quantized, m: number, n: number, k: number, out?: Float32Array, accumulate?: boolean): Float32Array;
}

function nativeFp8(): NativeFp8Gemm | null {
  const b = getBackend() as unknown as Partial<NativeFp8Gemm> & { name: string };
  return b.name === 'native' && typeof b.fp8Gemm === 'function' ? (b as NativeFp8Gemm) : null;
}

/** The implementation `path` resolves to under the active backend; 'native' throws when unavailable. */
export function resolveFp8Gemm(path: Fp8GemmPath = 'auto'): 'ts' | 'native' {
  if (path === 'ts') return 'ts';
  if (nativeFp8()) return 'native';
  if (path === 'native') throw new Error(`fp8Linear: gemm 'native' needs the native backend active (it is '${getBackend().name}'); use --backend native or gemm 'auto'`);
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

/** Wᵀ's 128×128 blocks from W's: codes transposed [K,N], block scales transposed [ceil(K/128), ceil(N/128)]. */
function transposeBlocks(codes: Uint8Array, blockScales: Float32Array, N: number, K: number): Fp8Quantized {
  const t = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) t[k * N + n] = codes[n * K + k]!;
  const KB = Math.ceil(K / FP8_BLOCK), NB = Math.ceil(N / FP8_BLOCK);
  const bs = new Float32Array(KB * NB);
  for (let kb = 0; kb < KB; kb++) for (let nb = 0; nb < NB; nb++) bs[kb * NB + nb] = blockScales[nb * KB + kb]!;
  return { codes: t, scales: bs };
}

/** C[M,N] = A·Bᵀ, A in 1×128 tiles, B [N,K] in 128×128 blocks (Fprop, Dgrad). */
function gemmTilesBlocks(a: Fp8Quantized, b: Fp8Quantized, M: number, N: number, K: number, path: 'ts' | 'native'): Float32Array {
  if (path === 'native' && M * N * K > 0) return nativeFp8()!.fp8Gemm(a, b, M, N, K);
  return scaledFp8Gemm(a.codes, a.scales, b.codes, rowScalesOfBlocks(b.scales, N, Math.ceil(K / FP8_BLOCK)), M, N, K);
}

/**
 * C[M,N] = A·Bᵀ with both operands in 1×128 tiles (Wgrad). Native: one call per 128-wide K block
 * (A's tile scales applied by the kernel, B's scales set to 1), then C += bS[n,kb]·P.
 */
function gemmTilesTiles(a: Fp8Quantized, b: Fp8Quantized, M: number, N: number, K: number, path: 'ts' | 'native'): Float32Array {
  if (path === 'ts' || M * N * K === 0) return scaledFp8Gemm(a.codes, a.scales, b.codes, b.scales, M, N, K);
  const be = nativeFp8()!;
  const B = FP8_BLOCK, KB = Math.ceil(K / B);
  const C = new Float32Array(M * N), P = new Float32Array(M * N);
  const ac = new Uint8Array(KB > 1 ? M * B : 0), bc = new Uint8Array(KB > 1 ? N * B : 0);
  const as = new Float32Array(M), bs = new Float32Array(N), ones = new Float32Array(Math.ceil(N / B)).fill(1);
  for (let kb = 0; kb < KB; kb++) {
    const k0 = kb * B, kw = Math.min(B, K - k0);
    for (let m = 0; m < M; m++) { if (KB > 1) ac.set(a.codes.subarray(m * K + k0, m * K + k0 + kw), m * kw); as[m] = a.scales[m * KB + kb]!; }
    for (let n = 0; n < N; n++) { if (KB > 1) bc.set(b.codes.subarray(n * K + k0, n * K + k0 + kw), n * kw); bs[n] = b.scales[n * KB + kb]!; }
    const aCodes = KB > 1 ? ac.subarray(0, M * kw) : a.codes, bCodes = KB > 1 ? bc.subarray(0, N * kw) : b.codes;
    be.fp8Gemm({ codes: aCodes, scales: as }, { codes: bCodes, scales: ones }, M, N, kw, P, false);
    for (let m = 0; m < M; m++) {
      const row = m * N;
      for (let n = 0; n < N; n++) C[row + n]! += bs[n]! * P[row + n]!;
    }
  }
  return C;
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
  const path = resolveFp8Gemm(opts.gemm);
  const M = K === 0 ? 0 : x.size / K;
  const qx = quantizeTiles(x.f32, M, K, { scaleFmt });
  const qw = quantizeBlocks(w.f32, N, K, { scaleFmt });
  const y = gemmTilesBlocks(qx, qw, M, N, K, path);
  const out = new Tensor(y, [...x.shape.slice(0, -1), N]);
  if (!needsGrad(x, w)) return out;

  // Saved for backward: x's FP8 codes + tile scales, and W's FP8 copy (a weight, not an activation).
  let saved: { codes: Uint8Array; scales: Float32Array } | null = qx;
  let wq: { codes: Uint8Array; scales: Float32Array } | null = qw;
  const release = trackSaved(qx.codes.byteLength + qx.scales.byteLength);
  const xNeeds = x.requiresGrad, wNeeds = w.requiresGrad;
  // The graph keeps a data-less handle of x: its f32 values are not held for backward.
  return record(out, 'Fp8Linear', [graphHandle(x), w], (g) => {
    if (!saved || !wq) throw new Error('fp8Linear: backward ran twice (saved FP8 activations were already released)');
    let gx: Float32Array | null = null, gw: Float32Array | null = null;
    if (xNeeds) {
      // Dgrad: dX[M,K] = dY[M,N] · W[N,K]; A = dY (1×128 along N), B = Wᵀ [K,N] (128×128 blocks).
      const qg = quantizeTiles(g, M, N, { scaleFmt });
      gx = gemmTilesBlocks(qg, transposeBlocks(wq.codes, wq.scales, N, K), M, K, N, path);
    }
    if (wNeeds) {
      // Wgrad: dW[N,K] = dYᵀ[N,M] · X[M,K]; both transposed operands quantised 1×128 along tokens.
      const qgt = quantizeTiles(transposeF32(g, M, N), N, M, { scaleFmt });
      const xd = dequantizeTiles(saved.codes, saved.scales, M, K);
      const qxt = quantizeTiles(transposeF32(xd, M, K), K, M, { scaleFmt });
      gw = gemmTilesTiles(qgt, qxt, N, K, M, path);
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
