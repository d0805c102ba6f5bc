// Quantisation tests against ../shared/reference/fp8: act_quant (fp32 and ue8m0 scales),
// weight_quant (partial edge blocks), fp8_gemm, and the F8_E4M3 safetensors weight case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { E4M3_TO_F32, encodeFp8 } from './codec.js';
import { dequantizeBlocks, dequantizeTiles, fp8Gemm, pow2Ceil, quantizeBlocks, quantizeTiles } from './quant.js';

const REF = new URL('../../../shared/reference/fp8/', import.meta.url);
type Arr = { shape: number[]; data: (number | null)[] };
const cases = JSON.parse(readFileSync(new URL('fp8_cases.json', REF), 'utf8')) as Record<string, Record<string, Arr>>;
const f32 = (a: Arr): Float32Array => new Float32Array(a.data.map((v) => (v === null ? NaN : v)));
const u8 = (a: Arr): Uint8Array => new Uint8Array(a.data as number[]);

/** Index of the first mismatch, or -1. Float values compare after rounding the reference to fp32. */
function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) if (!Object.is(got[i], want[i])) return i;
  return -1;
}

for (const name of ['act_quant', 'act_quant_ue8m0']) {
  test(`${name}: codes, scales and dequantised values bit-exact`, () => {
    const c = cases[name]!;
    const [rows, cols] = c.x!.shape as [number, number];
    const scaleFmt = name.endsWith('ue8m0') ? 'ue8m0' : 'fp32';
    const q = quantizeTiles(f32(c.x!), rows, cols, { scaleFmt });
    assert.equal(q.scales.length, rows * Math.ceil(cols / 128));
    assert.equal(firstDiff(q.scales, f32(c.scale!)), -1, 'scales');
    assert.equal(firstDiff(q.codes, u8(c.codes!)), -1, 'codes');
    const deq = dequantizeTiles(q.codes, q.scales, rows, cols);
    assert.equal(firstDiff(deq, f32(c.dequantized!)), -1, 'dequantized');
    // Row 3 tile 1 has amax < 1e-4: the clamp gives scale exactly fp32(1e-4/448) (or its pow2 ceil).
    const clamped = Math.fround(1e-4 / 448);
    assert.equal(q.scales[3 * 2 + 1], scaleFmt === 'ue8m0' ? pow2Ceil(clamped) : clamped);
  });
}

test('weight_quant: partial edge blocks, weight_scale_inv and dequantisation bit-exact', () => {
  const c = cases.weight_quant!;
  const [rows, cols] = c.w!.shape as [number, number];
  const q = quantizeBlocks(f32(c.w!), rows, cols);
  assert.deepEqual(c.weight_scale_inv!.shape, [2, 2]);
  assert.equal(firstDiff(q.scales, f32(c.weight_scale_inv!)), -1, 'weight_scale_inv');
  assert.equal(firstDiff(q.codes, u8(c.codes!)), -1, 'codes');
  const deq = dequantizeBlocks(q.codes, q.scales, rows, cols);
  assert.equal(firstDiff(deq, f32(c.dequantized!)), -1, 'dequantized');
});

test('fp8_gemm: quantised inputs bit-exact, product within 1e-6 relative of reference', () => {
  const c = cases.fp8_gemm!;
  const [M, K] = c.x!.shape as [number, number];
  const N = c.w!.shape[0]!;
  const a = quantizeTiles(f32(c.x!), M, K);
  const b = quantizeBlocks(f32(c.w!), N, K);
  assert.equal(firstDiff(a.codes, u8(c.a_codes!)), -1);
  assert.equal(firstDiff(a.scales, f32(c.a_scale!)), -1);
  assert.equal(firstDiff(b.codes, u8(c.b_codes!)), -1);
  assert.equal(firstDiff(b.scales, f32(c.b_scale_inv!)), -1);
  const got = fp8Gemm(a, b, M, N, K);
  const want = f32(c.c!);
  const exact = f32(c.c_unquantized_f32!);
  let maxRel = 0;
  let quantErr = 0;
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    maxRel = Math.max(maxRel, Math.abs(got[i]! - w) / Math.max(Math.abs(w), 1e-6));
    quantErr = Math.max(quantErr, Math.abs(w - exact[i]!));
  }
  assert.ok(maxRel <= 1e-6, `max relative error ${maxRel}`);
  assert.ok(quantErr > 0, 'the FP8 product should differ from the unquantised one');
  // Sanity: equals dequantise-then-matmul on one entry (same math, different order).
  const ad = dequantizeTiles(a.codes, a.scales, M, K);
  const bd = dequantizeBlocks(b.codes, b.scales, N, K);
  let dot = 0;
  for (let k = 0; k < K; k++) dot += ad[2 * K + k]! * bd[150 * K + k]!;
  assert.ok(Math.abs(dot - got[2 * N + 150]!) < 1e-5 * Math.abs(dot) + 1e-7);
});

test('fp8Gemm handles ragged N and K and rejects wrong scale shapes', () => {
  const M = 6, N = 130, K = 200; // M = 6: one 4-row group plus a remainder
  const x = new Float32Array(M * K).map((_, i) => Math.sin(i * 0.37));
  const w = new Float32Array(N * K).map((_, i) => Math.cos(i * 0.11) * 0.05);
  const a = quantizeTiles(x, M, K);
  const b = quantizeBlocks(w, N, K);
  assert.equal(a.scales.length, M * 2);
  assert.ok(a.codes.some((c) => c !== 0));
  assert.equal(b.scales.length, 2 * 2);
  const c = fp8Gemm(a, b, M, N, K);
  const ad = dequantizeTiles(a.codes, a.scales, M, K);
  const bd = dequantizeBlocks(b.codes, b.scales, N, K);
  for (const [m, n] of [[0, 0], [1, 129], [3, 64], [4, 1], [5, 128]] as const) {
    let dot = 0;
    for (let k = 0; k < K; k++) dot += ad[m * K + k]! * bd[n * K + k]!;
    assert.ok(Math.abs(dot - c[m * N + n]!) <= 1e-5 * Math.abs(dot) + 1e-6, `C[${m},${n}]`);
  }
  assert.throws(() => fp8Gemm(a, { codes: b.codes, scales: new Float32Array(3) }, M, N, K), /b\.scales has 3/);
  assert.throws(() => quantizeTiles(x, 3, K), /shape is 3x200/);
});

test('e5m2 and ue8m0 options: scales are powers of two and round trip stays within half an ulp', () => {
  const x = new Float32Array(256).map((_, i) => (i - 128) * 0.731);
  const q = quantizeTiles(x, 2, 128, { format: 'e5m2', scaleFmt: 'ue8m0' });
  for (const s of q.scales) assert.ok(Number.isInteger(Math.log2(s)), `scale ${s}`);
  const d = dequantizeTiles(q.codes, q.scales, 2, 128, { format: 'e5m2' });
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(d[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -3 + 1e-6);
  assert.equal(pow2Ceil(0.25), 0.25);
  assert.equal(pow2Ceil(0.2500001), 0.5);
});

/** Minimal safetensors reader for the test: 8-byte LE header length, JSON header, raw data. */
function readSafetensors(buf: Buffer): Record<string, { dtype: string; shape: number[]; bytes: Buffer }> {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out: Record<string, { dtype: string; shape: number[]; bytes: Buffer }> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') continue;
    out[k] = { dtype: v.dtype, shape: v.shape, bytes: buf.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) };
  }
  return out;
}

test('fp8_weight_case.safetensors: F8_E4M3 weight + weight_scale_inv decode to the reference', () => {
  const t = readSafetensors(readFileSync(new URL('fp8_weight_case.safetensors', REF)));
  const asF32 = (b: Buffer): Float32Array => new Float32Array(new Uint8Array(b).buffer);
  const wt = t['layer.weight']!;
  assert.equal(wt.dtype, 'F8_E4M3');
  const [rows, cols] = wt.shape as [number, number];
  const codes = new Uint8Array(wt.bytes);
  const scales = asF32(t['layer.weight_scale_inv']!.bytes);
  const deq = dequantizeBlocks(codes, scales, rows, cols);
  assert.equal(firstDiff(deq, asF32(t['reference.dequantized_f32']!.bytes)), -1);
  const q = quantizeBlocks(asF32(t['reference.original_f32']!.bytes), rows, cols);
  assert.equal(firstDiff(q.codes, codes), -1);
  assert.equal(firstDiff(q.scales, scales), -1);
  assert.equal(Math.fround(E4M3_TO_F32[encodeFp8(deq[5]! / scales[0]!, 'e4m3')]! * scales[0]!), deq[5]);
});
