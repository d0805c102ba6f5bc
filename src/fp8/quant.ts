/**
 * Fine-grained FP8 quantisation of DeepSeek-V3 (report §3.3; `inference/kernel.py` semantics).
 *
 * Contract (all arrays flat row-major, float32 scales):
 * - quantizeTiles: activations [rows, cols] in 1 x `tile` (128) tiles per row (per token).
 *   amax = max(max|x|, 1e-4), s = fp32(amax / fmtMax); ue8m0: s = 2^ceil(log2 s);
 *   codes = fp8(fp32(x / s)). scales [rows, ceil(cols/tile)] are dequant multipliers.
 * - quantizeBlocks: weights [rows, cols] in `block` x `block` (128x128) blocks, same formula with
 *   amax over the block (clamped to 1e-4). scales [ceil(rows/b), ceil(cols/b)] = the checkpoint's
 *   `weight_scale_inv` (a multiplier, despite the name). Edge blocks are partial.
 * - dequantize*: fp32(decode(code) * scale).
 * - fp8Gemm: C[m,n] = Σ_kb aS[m,kb]·bS[⌊n/128⌋,kb]·Σ_{k∈kb} fp8(a)[m,k]·fp8(b)[n,k], with the
 *   per-128 partial sums promoted (scaled and added) into one accumulator per K block. Emulated
 *   in float64 and rounded to float32 once: the products of two FP8 values are exact, so this is
 *   at least as accurate as the GPU's fp32 promotion; it matches the reference bit-for-bit or
 *   within ~1e-7 relative.
 * Ragged edges (cols not a multiple of 128) are handled as partial tiles/blocks.
 */
import { type Fp8Format, encodeInto, fp8Max, fp8Table } from './codec.js';

/** Scale format: plain fp32 `amax/max`, or a power of two rounded up (`ue8m0`, V3.1). */
export type ScaleFormat = 'fp32' | 'ue8m0';

/** FP8 codes with their dequantisation multipliers. */
export interface Fp8Quantized {
  codes: Uint8Array;
  scales: Float32Array;
}

/** Options shared by the quantisers. */
export interface QuantOptions {
  /** FP8 format, default 'e4m3'. */
  format?: Fp8Format | undefined;
  /** Scale format, default 'fp32'. */
  scaleFmt?: ScaleFormat | undefined;
  /** Clamp overflow to ±max (default true, like the GPU's satfinite cast). */
  saturate?: boolean | undefined;
}

const AMAX_MIN = 1e-4;
/** Block width of the FP8 GEMM along K (and of B's row blocks), as in DeepSeek-V3. */
export const FP8_BLOCK = 128;

const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/** Smallest power of two >= s (exact, for positive finite normal s). */
export function pow2Ceil(s: number): number {
  f64[0] = s;
  const hi = f64u[HI] as number;
  const isPow2 = (hi & 0xfffff) === 0 && f64u[LO] === 0;
  const e = ((hi >>> 20) & 0x7ff) - 1023;
  return 2 ** (isPow2 ? e : e + 1);
}

function checkShape(what: string, len: number, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new Error(`fp8.${what}: rows and cols must be non-negative integers, got ${rows}x${cols}`);
  }
  if (len !== rows * cols) {
    throw new Error(`fp8.${what}: array has ${len} elements but shape is ${rows}x${cols} (= ${rows * cols})`);
  }
}

function checkBlock(what: string, b: number): void {
  if (!Number.isInteger(b) || b < 1) throw new Error(`fp8.${what}: block/tile size must be a positive integer, got ${b}`);
}

function scaleOf(amax: number, max: number, scaleFmt: ScaleFormat): number {
  const s = Math.fround(Math.max(amax, AMAX_MIN) / max);
  if (scaleFmt === 'ue8m0') return pow2Ceil(s);
  if (scaleFmt !== 'fp32') throw new Error(`fp8: unknown scaleFmt ${JSON.stringify(scaleFmt)} (use 'fp32' or 'ue8m0')`);
  return s;
}

/**
 * Per-token activation quantisation in 1 x tile tiles (DeepSeek-V3 `act_quant`).
 * @returns codes [rows, cols] and scales [rows, ceil(cols/tile)].
 */
export function quantizeTiles(
  x: Float32Array,
  rows: number,
  cols: number,
  opts: QuantOptions & { tile?: number | undefined } = {},
): Fp8Quantized {
  const format = opts.format ?? 'e4m3';
  const tile = opts.tile ?? FP8_BLOCK;
  checkShape('quantizeTiles', x.length, rows, cols);
  checkBlock('quantizeTiles', tile);
  const sat = opts.saturate ?? true;
  const max = fp8Max(format);
  const scaleFmt = opts.scaleFmt ?? 'fp32';
  const nt = Math.ceil(cols / tile);
  const scratch = new Float32Array(Math.min(tile, cols));
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows * nt);
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < nt; t++) {
      const start = r * cols + t * tile;
      const end = r * cols + Math.min(cols, (t + 1) * tile);
      let amax = 0;
      for (let i = start; i < end; i++) amax = Math.max(amax, Math.abs(x[i] as number));
      const s = scaleOf(amax, max, scaleFmt);
      scales[r * nt + t] = s;
      const y = scratch.subarray(0, end - start);
      for (let i = start; i < end; i++) y[i - start] = (x[i] as number) / s;
      encodeInto(y, format, codes, start, sat);
    }
  }
  return { codes, scales };
}

/**
 * Weight quantisation in block x block blocks (inverse of DeepSeek-V3 `weight_dequant`).
 * @returns codes [rows, cols] and scales [ceil(rows/block), ceil(cols/block)] (= weight_scale_inv).
 */
export function quantizeBlocks(
  w: Float32Array,
  rows: number,
  cols: number,
  opts: QuantOptions & { block?: number | undefined } = {},
): Fp8Quantized {
  const format = opts.format ?? 'e4m3';
  const block = opts.block ?? FP8_BLOCK;
  checkShape('quantizeBlocks', w.length, rows, cols);
  checkBlock('quantizeBlocks', block);
  const sat = opts.saturate ?? true;
  const max = fp8Max(format);
  const scaleFmt = opts.scaleFmt ?? 'fp32';
  const scratch = new Float32Array(Math.min(block, cols));
  const nbr = Math.ceil(rows / block);
  const nbc = Math.ceil(cols / block);
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(nbr * nbc);
  for (let br = 0; br < nbr; br++) {
    const r0 = br * block;
    const r1 = Math.min(rows, r0 + block);
    for (let bc = 0; bc < nbc; bc++) {
      const c0 = bc * block;
      const c1 = Math.min(cols, c0 + block);
      let amax = 0;
      for (let r = r0; r < r1; r++) {
        for (let i = r * cols + c0, e = r * cols + c1; i < e; i++) amax = Math.max(amax, Math.abs(w[i] as number));
      }
      const s = scaleOf(amax, max, scaleFmt);
      scales[br * nbc + bc] = s;
      const y = scratch.subarray(0, c1 - c0);
      for (let r = r0; r < r1; r++) {
        const off = r * cols + c0;
        for (let j = 0; j < y.length; j++) y[j] = (w[off + j] as number) / s;
        encodeInto(y, format, codes, off, sat);
      }
    }
  }
  return { codes, scales };
}

/**
 * Column tiles in place: x [rows, cols] quantised in 128 x 1 tiles (128 rows of one column, e.g.
 * 128 tokens of one channel — the along-token tiles of Wgrad), without transposing. Same codes as
 * quantizeTiles of xᵀ, transposed back. @returns codes [rows, cols] and scales [ceil(rows/128), cols].
 */
export function quantizeColumnTiles(x: Float32Array, rows: number, cols: number, opts: { scaleFmt?: ScaleFormat | undefined } = {}): Fp8Quantized {
  checkShape('quantizeColumnTiles', x.length, rows, cols);
  const scaleFmt = opts.scaleFmt ?? 'fp32';
  const B = FP8_BLOCK, RB = Math.ceil(rows / B);
  const codes = new Uint8Array(rows * cols), scales = new Float32Array(RB * cols);
  const amax = new Float64Array(cols), s = new Float64Array(cols), y = new Float32Array(cols);
  for (let rb = 0; rb < RB; rb++) {
    const r0 = rb * B, r1 = Math.min(rows, r0 + B);
    amax.fill(0);
    for (let r = r0; r < r1; r++) for (let c = 0, o = r * cols; c < cols; c++) amax[c] = Math.max(amax[c]!, Math.abs(x[o + c]!));
    for (let c = 0; c < cols; c++) { s[c] = scaleOf(amax[c]!, 448, scaleFmt); scales[rb * cols + c] = s[c]!; }
    for (let r = r0; r < r1; r++) {
      for (let c = 0, o = r * cols; c < cols; c++) y[c] = x[o + c]! / s[c]!;
      encodeInto(y, 'e4m3', codes, r * cols);
    }
  }
  return { codes, scales };
}

/**
 * Re-tiles FP8 rows to column tiles: dequantises codes [rows, cols] with their 1 x 128 row scales
 * and quantises the values in 128 x 1 column tiles (what Wgrad does to the cached FP8 activation).
 */
export function requantizeColumnTiles(codes: Uint8Array, rowScales: Float32Array, rows: number, cols: number, opts: { scaleFmt?: ScaleFormat | undefined } = {}): Fp8Quantized {
  return quantizeColumnTiles(dequantizeTiles(codes, rowScales, rows, cols), rows, cols, opts);
}

function outFor(what: string, out: Float32Array | undefined, n: number): Float32Array {
  if (!out) return new Float32Array(n);
  if (out.length < n) throw new Error(`fp8.${what}: out has ${out.length} elements, need ${n}`);
  return out;
}

/** Dequantise 1 x tile activation tiles: out[r,c] = fp32(decode(codes[r,c]) * scales[r, c/tile]). */
export function dequantizeTiles(
  codes: Uint8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  opts: { format?: Fp8Format | undefined; tile?: number | undefined } = {},
  out?: Float32Array,
): Float32Array {
  const tile = opts.tile ?? FP8_BLOCK;
  checkShape('dequantizeTiles', codes.length, rows, cols);
  checkBlock('dequantizeTiles', tile);
  const nt = Math.ceil(cols / tile);
  if (scales.length !== rows * nt) {
    throw new Error(`fp8.dequantizeTiles: scales has ${scales.length} elements, expected ${rows}x${nt} for tile ${tile}`);
  }
  const table = fp8Table(opts.format ?? 'e4m3');
  const res = outFor('dequantizeTiles', out, rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      res[i] = (table[codes[i] as number] as number) * (scales[r * nt + ((c / tile) | 0)] as number);
    }
  }
  return res;
}

/** Dequantise block x block weight blocks: out[r,c] = fp32(decode(codes[r,c]) * scales[r/b, c/b]). */
export function dequantizeBlocks(
  codes: Uint8Array,
  scales: Float32Array,
  rows: number,
  cols: number,
  opts: { format?: Fp8Format | undefined; block?: number | undefined } = {},
  out?: Float32Array,
): Float32Array {
  const block = opts.block ?? FP8_BLOCK;
  checkShape('dequantizeBlocks', codes.length, rows, cols);
  checkBlock('dequantizeBlocks', block);
  const nbr = Math.ceil(rows / block);
  const nbc = Math.ceil(cols / block);
  if (scales.length !== nbr * nbc) {
    throw new Error(
      `fp8.dequantizeBlocks: scales (weight_scale_inv) has ${scales.length} elements, expected ${nbr}x${nbc} for a ${rows}x${cols} weight with block ${block}`,
    );
  }
  const table = fp8Table(opts.format ?? 'e4m3');
  const res = outFor('dequantizeBlocks', out, rows * cols);
  for (let r = 0; r < rows; r++) {
    const srow = ((r / block) | 0) * nbc;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      res[i] = (table[codes[i] as number] as number) * (scales[srow + ((c / block) | 0)] as number);
    }
  }
  return res;
}

/**
 * Block-scaled FP8 GEMM, C = A · Bᵀ (DeepSeek-V3 `fp8_gemm`).
 * @param a activations: codes [M,K], 1x128 tile scales [M, ceil(K/128)] (from quantizeTiles).
 * @param b weight: codes [N,K], 128x128 block scales [ceil(N/128), ceil(K/128)] (from quantizeBlocks).
 *   Either may carry `format` (default 'e4m3'; use 'e5m2' for gradients).
 * @returns C [M,N] row-major float32 (written into `out` when given).
 */
export function fp8Gemm(
  a: Fp8Quantized & { format?: Fp8Format | undefined },
  b: Fp8Quantized & { format?: Fp8Format | undefined },
  M: number,
  N: number,
  K: number,
  out?: Float32Array,
): Float32Array {
  const B = FP8_BLOCK;
  const KB = Math.ceil(K / B);
  checkShape('fp8Gemm (a.codes)', a.codes.length, M, K);
  checkShape('fp8Gemm (b.codes)', b.codes.length, N, K);
  if (a.scales.length !== M * KB) {
    throw new Error(`fp8.fp8Gemm: a.scales has ${a.scales.length} elements, expected ${M}x${KB} (1x128 tiles)`);
  }
  const NB = Math.ceil(N / B);
  if (b.scales.length !== NB * KB) {
    throw new Error(`fp8.fp8Gemm: b.scales has ${b.scales.length} elements, expected ${NB}x${KB} (128x128 blocks)`);
  }
  const res = outFor('fp8Gemm', out, M * N);
  const aDec = new Float32Array(M * K);
  const aTable = fp8Table(a.format ?? 'e4m3');
  for (let i = 0; i < aDec.length; i++) aDec[i] = aTable[a.codes[i] as number] as number;
  const bTable = fp8Table(b.format ?? 'e4m3');
  const bRow = new Float32Array(K);
  const aS = a.scales;
  const bS = b.scales;
  for (let n = 0; n < N; n++) {
    // Decode one weight row once; it is reused for every activation row.
    const bOff = n * K;
    for (let k = 0; k < K; k++) bRow[k] = bTable[b.codes[bOff + k] as number] as number;
    const bsOff = ((n / B) | 0) * KB;
    let m = 0;
    // Four activation rows at a time share each load of the weight row.
    for (; m + 4 <= M; m += 4) {
      const o0 = m * K, o1 = o0 + K, o2 = o1 + K, o3 = o2 + K;
      let acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
      for (let kb = 0; kb < KB; kb++) {
        const k0 = kb * B;
        const k1 = Math.min(K, k0 + B);
        let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
        for (let k = k0; k < k1; k++) {
          const bv = bRow[k] as number;
          p0 += (aDec[o0 + k] as number) * bv;
          p1 += (aDec[o1 + k] as number) * bv;
          p2 += (aDec[o2 + k] as number) * bv;
          p3 += (aDec[o3 + k] as number) * bv;
        }
        const bs = bS[bsOff + kb] as number;
        acc0 += (aS[m * KB + kb] as number) * bs * p0;
        acc1 += (aS[(m + 1) * KB + kb] as number) * bs * p1;
        acc2 += (aS[(m + 2) * KB + kb] as number) * bs * p2;
        acc3 += (aS[(m + 3) * KB + kb] as number) * bs * p3;
      }
      res[m * N + n] = acc0;
      res[(m + 1) * N + n] = acc1;
      res[(m + 2) * N + n] = acc2;
      res[(m + 3) * N + n] = acc3;
    }
    for (; m < M; m++) {
      const aOff = m * K;
      let acc = 0;
      for (let kb = 0; kb < KB; kb++) {
        const k0 = kb * B;
        const k1 = Math.min(K, k0 + B);
        let partial = 0;
        for (let k = k0; k < k1; k++) partial += (aDec[aOff + k] as number) * (bRow[k] as number);
        acc += (aS[m * KB + kb] as number) * (bS[bsOff + kb] as number) * partial;
      }
      res[m * N + n] = acc;
    }
  }
  return res;
}
