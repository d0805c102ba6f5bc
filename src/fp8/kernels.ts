/**
 * The FP8 recipe's kernels, each from the active backend when it has one (native: fused C++,
 * native/src/fp8_*.cc; webgpu: WGSL, src/backend/webgpu/wgsl-fp8.ts) and otherwise the
 * TypeScript reference here and in quant.ts.
 *
 * Contract (E4M3 codes, fp32 dequant scales, 128-wide tiles and blocks; `path` 'ts' forces the
 * reference, 'native' uses the active backend's own FP8 kernels — native or webgpu — and throws
 * when it has none):
 * - quantizeRows: 1×128 tiles along columns (quantizeTiles); quantizeCols: 128×1 tiles down the
 *   rows, codes kept in [rows, cols] (quantizeColumnTiles); requantizeCols: FP8 rows re-tiled to
 *   column tiles (requantizeColumnTiles); quantizeWeight: 128×128 blocks (quantizeBlocks) plus
 *   the codes transposed [cols, rows]. Native and TS give the same codes and scales, bit for bit.
 * - scaledGemm: C = Σ_kb sa·sb·(A_kb·B_kb) with A [m,k] or [k,m] (aTrans), B [k,n] (Fp8GemmArgs).
 *   TS: each 128-wide K block is decoded to f32 panels, multiplied with the MatMul kernel (fp32
 *   sums of exact FP8 products) and promoted (scaled, added) into C. Native: codes decoded to BF16
 *   while packing, AVX-512 BF16 dot products, the same promotion. They differ by summation order.
 *   webgpu: the same K-ordered f32 block sums as TS (bit for bit), promotion rounded in f32.
 * - No function keeps a reference to its inputs; outputs are fresh arrays unless `into` / `out`
 *   is given (the native path then writes there: scratch buffers for transient operands).
 */
import { allocUninitF32 } from '../autograd/tensor.js';
import { getBackend, kernel, optionalKernel, type Fp8GemmArgs } from '../backend/registry.js';
import { E4M3_TO_F32 } from './codec.js';
import { FP8_BLOCK, type Fp8Quantized, type ScaleFormat, quantizeBlocks, quantizeColumnTiles, quantizeTiles, requantizeColumnTiles } from './quant.js';

/** Which implementation runs the FP8 kernels. */
export type Fp8KernelPath = 'ts' | 'native';

/** An FP8 weight: codes [rows, cols], 128×128 block scales, and the codes transposed [cols, rows]. */
export interface Fp8Weight extends Fp8Quantized { codesT: Uint8Array }

/** The GEMM's operands without C (see Fp8GemmArgs). */
export type ScaledGemmOperands = Omit<Fp8GemmArgs, 'c' | 'accumulate'>;

/** Whether the active backend itself has fused FP8 kernels (native C++, webgpu WGSL): the 'native' path. */
export function nativeFp8Available(): boolean {
  return getBackend().kernels.Fp8ScaledGemm !== undefined;
}

function nk<K extends 'Fp8QuantizeRows' | 'Fp8QuantizeCols' | 'Fp8RequantizeCols' | 'Fp8QuantizeWeight' | 'Fp8ScaledGemm'>(name: K, path: Fp8KernelPath) {
  if (path === 'ts') return null;
  const k = optionalKernel(name);
  if (!k) throw new Error(`fp8: kernel ${name} needs a backend with FP8 kernels (native or webgpu; active: '${getBackend().name}'); use gemm 'ts' or --backend native`);
  return k;
}

const ue = (f: ScaleFormat): boolean => f === 'ue8m0';
const blocks = (n: number): number => Math.ceil(n / FP8_BLOCK);

/** Output arrays of a quantiser (for reuse); fresh ones are allocated when absent. */
export interface QuantInto { codes: Uint8Array; scales: Float32Array }
const outOf = (into: QuantInto | undefined, n: number, ns: number): QuantInto =>
  into ? { codes: into.codes.subarray(0, n), scales: into.scales.subarray(0, ns) } : { codes: new Uint8Array(n), scales: new Float32Array(ns) };

/** 1×128 row tiles of x [rows, cols]. */
export function quantizeRows(x: Float32Array, rows: number, cols: number, scaleFmt: ScaleFormat, path: Fp8KernelPath, into?: QuantInto): Fp8Quantized {
  const k = nk('Fp8QuantizeRows', path);
  if (!k) return quantizeTiles(x, rows, cols, { scaleFmt });
  const o = outOf(into, rows * cols, rows * blocks(cols));
  k(x, rows, cols, o.codes, o.scales, ue(scaleFmt));
  return o;
}

/** 128×1 column tiles of x [rows, cols]: codes [rows, cols], scales [⌈rows/128⌉, cols]. */
export function quantizeCols(x: Float32Array, rows: number, cols: number, scaleFmt: ScaleFormat, path: Fp8KernelPath, into?: QuantInto): Fp8Quantized {
  const k = nk('Fp8QuantizeCols', path);
  if (!k) return quantizeColumnTiles(x, rows, cols, { scaleFmt });
  const o = outOf(into, rows * cols, blocks(rows) * cols);
  k(x, rows, cols, o.codes, o.scales, ue(scaleFmt));
  return o;
}

/** FP8 rows (1×128 tiles) re-tiled to 128×1 column tiles. */
export function requantizeCols(q: Fp8Quantized, rows: number, cols: number, scaleFmt: ScaleFormat, path: Fp8KernelPath, into?: QuantInto): Fp8Quantized {
  const k = nk('Fp8RequantizeCols', path);
  if (!k) return requantizeColumnTiles(q.codes, q.scales, rows, cols, { scaleFmt });
  const o = outOf(into, rows * cols, blocks(rows) * cols);
  k(q.codes, q.scales, rows, cols, o.codes, o.scales, ue(scaleFmt));
  return o;
}

/** 128×128 blocks of a weight [rows, cols], with the codes also transposed (into `into`'s arrays when given). */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, scaleFmt: ScaleFormat, path: Fp8KernelPath, into?: Fp8Weight): Fp8Weight {
  const k = nk('Fp8QuantizeWeight', path);
  if (!k) {
    const q = quantizeBlocks(w, rows, cols, { scaleFmt });
    const codesT = new Uint8Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) codesT[c * rows + r] = q.codes[r * cols + c]!;
    return { ...q, codesT };
  }
  const o = into ?? { codes: new Uint8Array(rows * cols), scales: new Float32Array(blocks(rows) * blocks(cols)), codesT: new Uint8Array(rows * cols) };
  k(w, rows, cols, o.codes, o.scales, o.codesT, ue(scaleFmt));
  return o;
}

/** C [m, n] of the scaled FP8 GEMM (written into `out` when given; `accumulate` adds to it). */
export function scaledGemm(g: ScaledGemmOperands, path: Fp8KernelPath, out?: Float32Array, accumulate = false): Float32Array {
  // Without `out` the kernel writes every element (fresh C, or zeros when k = 0): no zero-fill needed.
  const c = out ?? allocUninitF32(g.m * g.n);
  const k = nk('Fp8ScaledGemm', path);
  if (k) k({ ...g, c, accumulate });
  else scaledGemmTs({ ...g, c, accumulate });
  return c;
}

/** The TS reference of Fp8ScaledGemm: f32 panels per 128-wide K block, MatMul, promotion into C. */
export function scaledGemmTs(g: Fp8GemmArgs): void {
  const { m: M, n: N, k: K, c: C } = g;
  if (!g.accumulate) C.fill(0, 0, M * N);
  if (M * N * K === 0) return;
  if (g.accum) return limitedAccumTs(g);
  const T = E4M3_TO_F32, B = FP8_BLOCK;
  const kw0 = Math.min(B, K);
  const ap = new Float32Array(M * kw0), bp = new Float32Array(kw0 * N), P = new Float32Array(M * N), sb = new Float32Array(N);
  const mm = kernel('MatMul');
  for (let kb = 0, k0 = 0; k0 < K; kb++, k0 += B) {
    const kw = Math.min(B, K - k0);
    // A's block: [M, kw] rows, or the contiguous [kw, M] slice of a transposed A.
    if (g.aTrans) for (let i = 0, o = k0 * M; i < kw * M; i++) ap[i] = T[g.a[o + i]!]!;
    else for (let m = 0; m < M; m++) for (let j = 0, s = m * K + k0, d = m * kw; j < kw; j++) ap[d + j] = T[g.a[s + j]!]!;
    for (let i = 0, o = k0 * N; i < kw * N; i++) bp[i] = T[g.b[o + i]!]!;
    mm({ a: ap, b: bp, c: P, batch: 1, m: M, n: N, k: kw, transA: g.aTrans, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    for (let n = 0; n < N; n++) sb[n] = g.sb[kb * g.sbKb + Math.floor(n / g.sbDiv) * g.sbCol]!;
    // Promotion: this block's fp32 partial sums, scaled per row and column, added into C.
    for (let m = 0; m < M; m++) {
      const sa = g.sa[kb * g.saKb + m * g.saRow]!;
      for (let n = 0, row = m * N; n < N; n++) C[row + n]! += sa * sb[n]! * P[row + n]!;
    }
  }
}

const t32 = new Float32Array(1), t32u = new Uint32Array(t32.buffer);
/** x rounded to f32 and truncated to 14 significant bits (toward zero), as the ablation's accumulator. */
function trunc14(x: number): number { t32[0] = x; t32u[0]! &= 0xfffffc00; return t32[0]!; }

/**
 * The accumulator ablation (accum 1 or 2) element by element, as the native kernel does it: each
 * instruction adds two exact products to the f32 partial sum (rounded after each), which is then
 * truncated to 14 significant bits; per 128-K block the sum is scaled and added into C in fp32
 * (accum 1) or into the truncated accumulator (accum 2). Slow: for tests.
 */
function limitedAccumTs(g: Fp8GemmArgs): void {
  const { m: M, n: N, k: K, c: C } = g;
  const T = E4M3_TO_F32, B = FP8_BLOCK;
  const f = Math.fround;
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let c = C[i * N + j]!;
    for (let kb = 0, k0 = 0; k0 < K; kb++, k0 += B) {
      let p = 0;
      for (let k = k0; k < Math.min(K, k0 + B); k += 2) {
        const a0 = T[g.a[g.aTrans ? k * M + i : i * K + k]!]!, b0 = T[g.b[k * N + j]!]!;
        const a1 = k + 1 < K ? T[g.a[g.aTrans ? (k + 1) * M + i : i * K + k + 1]!]! : 0, b1 = k + 1 < K ? T[g.b[(k + 1) * N + j]!]! : 0;
        p = trunc14(f(f(p + a1 * b1) + a0 * b0));
      }
      const s = f(g.sb[kb * g.sbKb + Math.floor(j / g.sbDiv) * g.sbCol]! * g.sa[kb * g.saKb + i * g.saRow]!);
      c = g.accum === 2 ? trunc14(p * s + c) : f(p * s + c);
    }
    C[i * N + j] = c;
  }
}
