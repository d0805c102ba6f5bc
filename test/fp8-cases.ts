// FP8 recipe kernel cases shared by test/kernel-cases.ts (every backend, Node and page) and
// test/fp8-webgpu.test.ts (exact comparisons on webgpu): inputs that reach every branch of the
// E4M3 encoder, the three GEMM layouts the recipe uses, and a float64 reference of the GEMM.
// Browser-safe (no node:* imports).
import { E4M3_TO_F32 } from '../src/fp8/codec.js';
import { FP8_BLOCK, type ScaleFormat } from '../src/fp8/quant.js';
import { quantizeCols, quantizeRows, quantizeWeight, requantizeCols, type Fp8KernelPath, type ScaledGemmOperands } from '../src/fp8/kernels.js';

/** A small deterministic generator (mulberry32) of uniforms in (0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = Math.imul(s ^ (s >>> 15), 1 | s); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296; };
}
/** n Gaussian values of standard deviation std. */
export function gauss(n: number, seed: number, std = 1): Float32Array {
  const u = rng(seed), d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = std * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return d;
}

/**
 * Gaussian x [rows, cols] with rows that reach every encoder branch: row 0 all zero (the 1e-4
 * floor), row 1 ±inf, row 2 a NaN, row 3 −0 and values 2^-20..2^3 (subnormal and zero codes),
 * row 4 448 multiples and near-ties, and a few 1e30 outliers elsewhere.
 */
export function edgy(rows: number, cols: number, seed: number): Float32Array {
  const x = gauss(rows * cols, seed, 3);
  const u = rng(seed + 1);
  const put = (r: number, c: number, v: number): void => { if (r < rows && c < cols) x[r * cols + c] = v; };
  for (let c = 0; c < cols; c++) put(0, c, 0);
  put(1, 0, Infinity); put(1, Math.min(cols - 1, 130), -Infinity);
  put(2, Math.min(cols - 1, 5), NaN);
  for (let c = 0; c < cols; c++) put(3, c, c === 0 ? -0 : (u() < 0.5 ? -1 : 1) * 2 ** (-20 + (c % 24)));
  for (let c = 0; c < cols; c++) put(4, c, [448, -448, 464, 456, 0.001953125, 0.0009765625, 1.5 * 2 ** -9, 240, 232][c % 9]!);
  for (let i = 0; i < 6; i++) x[Math.floor(u() * x.length)] = (u() < 0.5 ? -1 : 1) * 1e30;
  return x;
}

/** Every quantiser's output for x [R, C] on `path`: codes, scales, transposed weight codes, re-tiled rows. */
export function quantAll(x: Float32Array, R: number, C: number, fmt: ScaleFormat, path: Fp8KernelPath) {
  const rows = quantizeRows(x, R, C, fmt, path);
  return { rows, cols: quantizeCols(x, R, C, fmt, path), w: quantizeWeight(x, R, C, fmt, path), requant: requantizeCols(rows, R, C, fmt, path) };
}

/** The recipe's three GEMMs of x [M, K], w [N, K], dY [M, N], quantised on `path`. */
export function gemmLayouts(M: number, N: number, K: number, fmt: ScaleFormat, path: Fp8KernelPath, seed = 1): Record<'fprop' | 'dgrad' | 'wgrad', ScaledGemmOperands> {
  const x = gauss(M * K, seed + M + K), w = gauss(N * K, seed + N + K, 0.05), gr = gauss(M * N, seed + M + N);
  const qx = quantizeRows(x, M, K, fmt, path), wq = quantizeWeight(w, N, K, fmt, path);
  const qg = quantizeRows(gr, M, N, fmt, path), qgc = quantizeCols(gr, M, N, fmt, path), qxc = requantizeCols(qx, M, K, fmt, path);
  const KB = Math.ceil(K / FP8_BLOCK), NB = Math.ceil(N / FP8_BLOCK);
  return {
    fprop: { a: qx.codes, aTrans: false, sa: qx.scales, saKb: 1, saRow: KB, b: wq.codesT, sb: wq.scales, sbKb: 1, sbDiv: FP8_BLOCK, sbCol: KB, m: M, n: N, k: K },
    dgrad: { a: qg.codes, aTrans: false, sa: qg.scales, saKb: 1, saRow: NB, b: wq.codes, sb: wq.scales, sbKb: KB, sbDiv: FP8_BLOCK, sbCol: 1, m: M, n: K, k: N },
    wgrad: { a: qgc.codes, aTrans: true, sa: qgc.scales, saKb: N, saRow: 1, b: qxc.codes, sb: qxc.scales, sbKb: K, sbDiv: 1, sbCol: 1, m: N, n: K, k: M },
  };
}

/** Float64 reference of Fp8GemmArgs: exact FP8 products, per-block sums, promotion in f64. */
export function gemmRef(g: ScaledGemmOperands): Float64Array {
  const out = new Float64Array(g.m * g.n), T = E4M3_TO_F32;
  for (let i = 0; i < g.m; i++) for (let j = 0; j < g.n; j++) {
    let acc = 0;
    for (let k0 = 0, kb = 0; k0 < g.k; k0 += FP8_BLOCK, kb++) {
      let p = 0;
      for (let k = k0; k < Math.min(g.k, k0 + FP8_BLOCK); k++) p += T[g.a[g.aTrans ? k * g.m + i : i * g.k + k]!]! * T[g.b[k * g.n + j]!]!;
      acc += g.sa[kb * g.saKb + i * g.saRow]! * g.sb[kb * g.sbKb + Math.floor(j / g.sbDiv) * g.sbCol]! * p;
    }
    out[i * g.n + j] = acc;
  }
  return out;
}

/** ‖a − b‖ / ‖b‖. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i]! - b[i]!) ** 2; den += b[i]! ** 2; }
  return Math.sqrt(num / den);
}

/** Asserts a and b hold the same f32 bit patterns (any NaN matches any NaN). */
export function sameF32Bits(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) throw new Error(`${what}[${i}]: ${a[i]} vs ${b[i]}`);
}
/** Asserts two FP8 code arrays are equal, naming the first differing code. */
export function sameCodes(a: Uint8Array, b: Uint8Array, what: string): void {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) throw new Error(`${what}[${i}]: code 0x${a[i]!.toString(16)} vs 0x${b[i]!.toString(16)}`);
}
