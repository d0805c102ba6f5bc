/**
 * FP8 (OCP e4m3fn / e5m2), BF16 and F16 codecs — exact, browser-safe, no dependencies.
 *
 * Contract:
 * - Decoding is a 256-entry lookup table per FP8 format (`E4M3_TO_F32`, `E5M2_TO_F32`).
 * - Encoding rounds the exact input value to nearest, ties to even, uniformly for normal and
 *   subnormal results (values at or below half the smallest subnormal go to ±0).
 * - Overflow: `saturate = true` (default) clamps finite overflow and ±inf to ±max, like PTX
 *   `cvt.rn.satfinite` (what DeepSeek-V3's Triton kernels emit on sm_89/90); `saturate = false`
 *   follows torch's cast: e4m3 anything that rounds above 448 (|x| > 464, ±inf) -> NaN 0x7F|sign,
 *   e5m2 overflow -> ±inf (0x7C|sign). NaN input -> 0x7F (sign dropped) in both formats.
 * - e4m3fn: bias 7, max 448 (0x7E), NaN only 0x7F/0xFF, no infinities, subnormals m·2^-9.
 *   e5m2: bias 15, max 57344 (0x7B), ±inf 0x7C/0xFC, NaN 0x7D-0x7F/0xFD-0xFF, subnormals m·2^-16.
 * - BF16: round to nearest even from float32, NaN stays NaN (quieted, sign kept).
 */

/** The two OCP FP8 formats. */
export type Fp8Format = 'e4m3' | 'e5m2';

interface FormatParams {
  mbits: number; // mantissa bits
  emin: number; // exponent of the smallest normal
  maxCode: number; // code of the largest finite value
  overflowCode: number; // non-saturating overflow result (without sign)
  max: number;
}

const E4M3: FormatParams = { mbits: 3, emin: -6, maxCode: 0x7e, overflowCode: 0x7f, max: 448 };
const E5M2: FormatParams = { mbits: 2, emin: -14, maxCode: 0x7b, overflowCode: 0x7c, max: 57344 };
const NAN_CODE = 0x7f;

function params(format: Fp8Format): FormatParams {
  if (format === 'e4m3') return E4M3;
  if (format === 'e5m2') return E5M2;
  throw new Error(`fp8: unknown format ${JSON.stringify(format)} (use 'e4m3' or 'e5m2')`);
}

function buildTable(format: Fp8Format): Float32Array {
  const t = new Float32Array(256);
  const mbits = format === 'e4m3' ? 3 : 2;
  const bias = format === 'e4m3' ? 7 : 15;
  const emax = (1 << (7 - mbits)) - 1;
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1;
    const e = (c >> mbits) & emax;
    const m = c & ((1 << mbits) - 1);
    let v: number;
    if (format === 'e4m3' && e === emax && m === (1 << mbits) - 1) v = NaN;
    else if (format === 'e5m2' && e === emax) v = m === 0 ? Infinity : NaN;
    else if (e === 0) v = m * 2 ** (1 - bias - mbits);
    else v = (1 + m / (1 << mbits)) * 2 ** (e - bias);
    t[c] = sign * v;
  }
  return t;
}

/** Value of every e4m3fn code (index = code). 0x7F and 0xFF are NaN. */
export const E4M3_TO_F32: Float32Array = buildTable('e4m3');
/** Value of every e5m2 code (index = code). 0x7C/0xFC are ±inf, 0x7D-0x7F/0xFD-0xFF NaN. */
export const E5M2_TO_F32: Float32Array = buildTable('e5m2');

/** The decode table of a format (shared; do not write to it). */
export function fp8Table(format: Fp8Format): Float32Array {
  return params(format) === E4M3 ? E4M3_TO_F32 : E5M2_TO_F32;
}

/** Largest finite value of a format: 448 (e4m3) or 57344 (e5m2). */
export function fp8Max(format: Fp8Format): number {
  return params(format).max;
}

// Shared scratch views for bit access (little- or big-endian host).
const f64 = new Float64Array(1);
const f64u = new Uint32Array(f64.buffer);
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const f32 = new Float32Array(1);
const f32u = new Uint32Array(f32.buffer);

// POW2[k + 64] = 2^k for k in [-64, 64].
const POW2 = new Float64Array(129);
for (let k = -64; k <= 64; k++) POW2[k + 64] = 2 ** k;

const RINT = 2 ** 52; // (t + 2^52) - 2^52 rounds 0 <= t < 2^52 to an integer, ties to even

function encodeWith(x: number, p: FormatParams, saturate: boolean): number {
  if (x !== x) return NAN_CODE;
  f64[0] = x;
  const hi = f64u[HI] as number;
  const sign = (hi >>> 24) & 0x80;
  const a = sign ? -x : x;
  let e = ((hi >>> 20) & 0x7ff) - 1023;
  if (e > 20) return sign | (saturate ? p.maxCode : p.overflowCode); // incl. ±inf
  if (e < p.emin) e = p.emin;
  // Scaled significand: exact (multiplication by a power of two), t < 2^(mbits+1).
  const n = a * (POW2[p.mbits - e + 64] as number) + RINT - RINT;
  // Normal: ((e - emin) << mbits) + n with n in [2^mbits, 2^(mbits+1)]; subnormal: n itself.
  // A carry out of the mantissa rolls into the exponent field naturally.
  const code = ((e - p.emin) << p.mbits) + n;
  if (code > p.maxCode) return sign | (saturate ? p.maxCode : p.overflowCode);
  return sign | code;
}

/**
 * Encode float32 values into `out[offset..]` (integer fast path on the float32 bits).
 * Same results as `encodeFp8` on each element.
 */
export function encodeInto(
  values: Float32Array,
  format: Fp8Format,
  out: Uint8Array,
  offset = 0,
  saturate = true,
): Uint8Array {
  const p = params(format);
  const len = values.length;
  if (offset < 0 || offset + len > out.length) {
    throw new Error(`fp8.encodeInto: ${len} values at offset ${offset} do not fit in out (${out.length})`);
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, len);
  const shift = 23 - p.mbits;
  const half = (1 << (shift - 1)) - 1;
  const minNormal = (p.emin + 127) << 23;
  const rebias = (127 + p.emin - 1) << p.mbits;
  const subScale = 2 ** (p.mbits - p.emin);
  const over = saturate ? p.maxCode : p.overflowCode;
  const maxCode = p.maxCode;
  for (let i = 0; i < len; i++) {
    const u = bits[i] as number;
    const a = u & 0x7fffffff;
    let code: number;
    if (a >= minNormal) {
      if (a > 0x7f800000) {
        out[offset + i] = NAN_CODE;
        continue;
      }
      code = ((a + half + ((a >>> shift) & 1)) >>> shift) - rebias;
      if (code > maxCode) code = over;
    } else {
      code = Math.abs(values[i] as number) * subScale + RINT - RINT;
    }
    out[offset + i] = ((u >>> 24) & 0x80) | code;
  }
  return out;
}

/**
 * Encode one number as an FP8 code (0..255), round to nearest even.
 * @param saturate true (default): overflow -> ±max; false: torch semantics (e4m3 NaN, e5m2 inf).
 */
export function encodeFp8(x: number, format: Fp8Format, saturate = true): number {
  return encodeWith(x, params(format), saturate);
}

/** A specialised scalar encoder `(x) => code` for hot loops (avoids format dispatch per call). */
export function fp8Encoder(format: Fp8Format, saturate = true): (x: number) => number {
  const p = params(format);
  return (x: number) => encodeWith(x, p, saturate);
}

/** Encode a float32 array to FP8 codes (one byte per value). */
export function encode(
  values: Float32Array,
  format: Fp8Format,
  opts: { saturate?: boolean | undefined } = {},
): Uint8Array {
  return encodeInto(values, format, new Uint8Array(values.length), 0, opts.saturate ?? true);
}

/** Decode FP8 codes to float32 (into `out` when given; it must be at least as long). */
export function decode(codes: Uint8Array, format: Fp8Format, out?: Float32Array): Float32Array {
  const table = fp8Table(format);
  const res = out ?? new Float32Array(codes.length);
  if (res.length < codes.length) {
    throw new Error(`fp8.decode: out has ${res.length} elements, need ${codes.length}`);
  }
  for (let i = 0; i < codes.length; i++) res[i] = table[codes[i] as number] as number;
  return res;
}

/** float32 value (number rounded to float32 first) -> bfloat16 bits, round to nearest even. */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = f32u[0] as number;
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 0x0040; // NaN: keep sign, quiet it
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> value (exact). */
export function bf16ToF32(h: number): number {
  f32u[0] = (h & 0xffff) << 16;
  return f32[0] as number;
}

/** Encode a float32 array to bfloat16 bits. */
export function encodeBf16(values: Float32Array): Uint16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) {
    const u = src[i] as number;
    out[i] =
      (u & 0x7fffffff) > 0x7f800000 ? (u >>> 16) | 0x0040 : (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** Decode bfloat16 bits to float32 (into `out` when given). */
export function decodeBf16(u: Uint16Array, out?: Float32Array): Float32Array {
  const res = out ?? new Float32Array(u.length);
  if (res.length < u.length) {
    throw new Error(`fp8.decodeBf16: out has ${res.length} elements, need ${u.length}`);
  }
  const bits = new Uint32Array(res.buffer, res.byteOffset, res.length);
  for (let i = 0; i < u.length; i++) bits[i] = (u[i] as number) << 16;
  return res;
}

/** IEEE half (binary16) bits -> value (exact; subnormals, ±inf, NaN). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}
