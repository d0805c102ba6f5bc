/**
 * The ggml tensor types Frugal reads and writes in GGUF files (F32, F16, BF16, Q8_0): their ids,
 * block sizes and byte sizes, and the conversions between them and float32. Browser-safe.
 *
 * Contract:
 * - Q8_0 follows ggml's reference quantizer (ggml-quants.c `quantize_row_q8_0_ref`, gguf-py
 *   `quants.py`): per block of 32 consecutive values, `d = max|x| / 127` in float32, `q =
 *   round(x · (1/d))` rounding half away from zero, stored as an IEEE half `d` then 32 int8.
 * - F16 encoding rounds to nearest even (what the F16C instruction ggml uses does); BF16 rounds to
 *   nearest even (`encodeBf16`).
 * - Decoding is exact: q · f16(d) for Q8_0, the exact half / bfloat16 values otherwise.
 */
import { decodeBf16, encodeBf16, f16ToF32 } from '../fp8/codec.js';

/** ggml type ids (ggml/include/ggml.h) of the types Frugal handles. */
export const GGML_TYPE = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GGML_TYPE;
export type GgmlTypeId = (typeof GGML_TYPE)[GgmlTypeName];

/** Values per Q8_0 block and its bytes (f16 scale + 32 int8). */
export const Q8_0_BLOCK = 32;
export const Q8_0_BYTES = 34;

const NAMES: Record<number, GgmlTypeName> = { 0: 'F32', 1: 'F16', 8: 'Q8_0', 30: 'BF16' };
/** Names of other ggml types, for error messages only. */
const OTHER: Record<number, string> = {
  2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K', 13: 'Q5_K', 14: 'Q6_K',
  15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS',
  24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

/** The name of a supported type id, or null. */
export function ggmlTypeName(id: number): GgmlTypeName | null {
  return NAMES[id] ?? null;
}

/** A human name for any ggml type id ("Q4_K", "type 99"). */
export function describeGgmlType(id: number): string {
  return NAMES[id] ?? OTHER[id] ?? `type ${id}`;
}

/** Bytes of one row of `ne0` values (ne0 must be a multiple of 32 for Q8_0). */
export function rowBytes(type: GgmlTypeId, ne0: number): number {
  switch (type) {
    case GGML_TYPE.F32: return ne0 * 4;
    case GGML_TYPE.F16: case GGML_TYPE.BF16: return ne0 * 2;
    case GGML_TYPE.Q8_0: return (ne0 / Q8_0_BLOCK) * Q8_0_BYTES;
  }
  throw new Error(`gguf: unsupported ggml type ${String(type)}`);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 value -> IEEE half bits, round to nearest even (overflow to ±inf, NaN kept). */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const u = u32[0]!;
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand, round to nearest even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && (half & 1)) ? 1 : 0));
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // carries into the exponent correctly
  e = h >>> 10;
  return sign | (e >= 31 ? 0x7c00 : h);
}

/** float32 values -> half bits. */
export function encodeF16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i]!);
  return out;
}

const F16_TABLE = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16ToF32(h);
  return t;
})();

/** Half bits -> value (exact, table lookup). */
export function f16Value(h: number): number {
  return F16_TABLE[h & 0xffff]!;
}

/** Rounds half away from zero in float32 (C `roundf`; JS Math.round rounds half up). */
function roundAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/** Quantizes float32 values (length a multiple of 32) to Q8_0 blocks. */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_0_BLOCK) throw new Error(`gguf: Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${x.length}`);
  const nb = x.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const dv = new DataView(out.buffer);
  const q = new Int8Array(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[b * Q8_0_BLOCK + i]!));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? Math.fround(1 / d) : 0;
    dv.setUint16(b * Q8_0_BYTES, f32ToF16(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) q[b * Q8_0_BYTES + 2 + i] = roundAway(Math.fround(x[b * Q8_0_BLOCK + i]! * id));
  }
  return out;
}

/** Q8_0 blocks -> float32 (q · f16(d)). */
export function dequantizeQ8_0(bytes: Uint8Array, out?: Float32Array): Float32Array {
  if (bytes.length % Q8_0_BYTES) throw new Error(`gguf: Q8_0 data of ${bytes.length} bytes is not whole ${Q8_0_BYTES}-byte blocks`);
  const nb = bytes.length / Q8_0_BYTES;
  const res = out ?? new Float32Array(nb * Q8_0_BLOCK);
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_0_BYTES;
    const d = F16_TABLE[bytes[o]! | (bytes[o + 1]! << 8)]!;
    for (let i = 0; i < Q8_0_BLOCK; i++) res[b * Q8_0_BLOCK + i] = q[o + 2 + i]! * d;
  }
  return res;
}

/** float32 values -> the bytes of a tensor of `type` (little-endian). */
export function encodeTensor(type: GgmlTypeId, x: Float32Array): Uint8Array {
  switch (type) {
    case GGML_TYPE.F32: return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
    case GGML_TYPE.F16: { const h = encodeF16(x); return new Uint8Array(h.buffer); }
    case GGML_TYPE.BF16: { const h = encodeBf16(x); return new Uint8Array(h.buffer); }
    case GGML_TYPE.Q8_0: return quantizeQ8_0(x);
  }
  throw new Error(`gguf: unsupported ggml type ${String(type)}`);
}

/** The bytes of a tensor of `type` -> float32 (`count` values). */
export function decodeTensor(type: GgmlTypeId, bytes: Uint8Array, count: number): Float32Array {
  switch (type) {
    case GGML_TYPE.F32: {
      const out = new Float32Array(count);
      new Uint8Array(out.buffer).set(bytes.subarray(0, count * 4));
      return out;
    }
    case GGML_TYPE.F16: {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = F16_TABLE[bytes[2 * i]! | (bytes[2 * i + 1]! << 8)]!;
      return out;
    }
    case GGML_TYPE.BF16: {
      const u = new Uint16Array(count);
      new Uint8Array(u.buffer).set(bytes.subarray(0, count * 2));
      return decodeBf16(u);
    }
    case GGML_TYPE.Q8_0: return dequantizeQ8_0(bytes.subarray(0, (count / Q8_0_BLOCK) * Q8_0_BYTES));
  }
  throw new Error(`gguf: unsupported ggml type ${String(type)}`);
}
