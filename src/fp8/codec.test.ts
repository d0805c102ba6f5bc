// Codec tests: all 256 codes of both formats, rounding midpoints, overflow conventions, BF16/F16,
// and the bit-exact `e4m3fn_table` / `cast` cases of ../shared/reference/fp8/fp8_cases.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  E4M3_TO_F32,
  E5M2_TO_F32,
  type Fp8Format,
  bf16ToF32,
  decode,
  decodeBf16,
  encode,
  encodeBf16,
  encodeFp8,
  f16ToF32,
  f32ToBf16,
  fp8Table,
} from './codec.js';

const REF = new URL('../../../shared/reference/fp8/', import.meta.url);
type Arr = { data: (number | string | null)[] };
const cases = JSON.parse(readFileSync(new URL('fp8_cases.json', REF), 'utf8')) as Record<
  string,
  Record<string, Arr>
>;
const num = (v: number | string | null): number =>
  v === null ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number);

test('e4m3 table matches reference e4m3fn_table and format facts', () => {
  const ref = cases.e4m3fn_table as unknown as Arr;
  for (let c = 0; c < 256; c++) assert.ok(Object.is(E4M3_TO_F32[c], num(ref.data[c]!)), `code ${c}`);
  assert.equal(E4M3_TO_F32[0x7e], 448);
  assert.equal(E4M3_TO_F32[0x01], 2 ** -9);
  assert.equal(E4M3_TO_F32[0x08], 2 ** -6);
  assert.ok(Object.is(E4M3_TO_F32[0x80], -0));
  const nans = [...E4M3_TO_F32.keys()].filter((c) => Number.isNaN(E4M3_TO_F32[c]));
  assert.deepEqual(nans, [0x7f, 0xff]);
});

test('e5m2 table facts', () => {
  assert.equal(E5M2_TO_F32[0x7b], 57344);
  assert.equal(E5M2_TO_F32[0x7c], Infinity);
  assert.equal(E5M2_TO_F32[0xfc], -Infinity);
  assert.equal(E5M2_TO_F32[0x01], 2 ** -16);
  assert.equal(E5M2_TO_F32[0x04], 2 ** -14);
  assert.equal(E5M2_TO_F32[0x3c], 1);
  const nans = [...E5M2_TO_F32.keys()].filter((c) => Number.isNaN(E5M2_TO_F32[c]));
  assert.deepEqual(nans, [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]);
});

for (const format of ['e4m3', 'e5m2'] as Fp8Format[]) {
  const table = fp8Table(format);
  const max = format === 'e4m3' ? 448 : 57344;
  // Positive finite codes in increasing order (0x00 .. max code).
  const pos = [...table.keys()].filter((c) => c < 0x80 && Number.isFinite(table[c]));

  test(`${format}: all 256 codes round-trip, ordering is monotonic`, () => {
    for (let c = 0; c < 256; c++) {
      const v = table[c]!;
      if (Number.isNaN(v)) {
        assert.equal(encodeFp8(v, format), 0x7f);
        continue;
      }
      const back = encodeFp8(v, format, false);
      assert.equal(back, c, `code 0x${c.toString(16)} value ${v} re-encodes to 0x${back.toString(16)}`);
    }
    for (let i = 1; i < pos.length; i++) assert.ok(table[pos[i]!]! > table[pos[i - 1]!]!);
    assert.equal(table[pos[pos.length - 1]!], max);
    const all = decode(encode(new Float32Array(table.filter((v) => Number.isFinite(v))), format), format);
    assert.deepEqual([...all], [...table.filter((v) => Number.isFinite(v))]);
  });

  test(`${format}: midpoints round to even, neighbours round to nearest`, () => {
    for (let i = 0; i + 1 < pos.length; i++) {
      const lo = pos[i]!;
      const hi = pos[i + 1]!;
      const mid = (table[lo]! + table[hi]!) / 2;
      const even = (lo & 1) === 0 ? lo : hi;
      assert.equal(encodeFp8(mid, format), even, `midpoint ${mid}`);
      assert.equal(encodeFp8(-mid, format), even | 0x80, `midpoint ${-mid}`);
      const below = mid * (1 - 2 ** -40);
      const above = mid * (1 + 2 ** -40);
      assert.equal(encodeFp8(below, format), lo, `just below ${mid}`);
      assert.equal(encodeFp8(above, format), hi, `just above ${mid}`);
    }
    // Half the smallest subnormal ties to zero; anything above it goes to the smallest subnormal.
    const tiny = table[1]!;
    assert.equal(encodeFp8(tiny / 2, format), 0);
    assert.equal(encodeFp8(-tiny / 2, format), 0x80);
    assert.equal(encodeFp8((tiny / 2) * (1 + 2 ** -20), format), 1);
    assert.equal(encodeFp8(1e-300, format), 0);
  });

  test(`${format}: overflow saturates or follows torch`, () => {
    const maxCode = pos[pos.length - 1]!;
    assert.equal(encodeFp8(1e9, format), maxCode);
    assert.equal(encodeFp8(-Infinity, format), maxCode | 0x80);
    const over = format === 'e4m3' ? 0x7f : 0x7c;
    assert.equal(encodeFp8(1e9, format, false), over);
    assert.equal(encodeFp8(-Infinity, format, false), over | 0x80);
    assert.equal(encodeFp8(NaN, format, false), 0x7f);
  });
}

test('e4m3 reference cast cases (satfinite and nan_on_overflow), bit-exact', () => {
  const c = cases.cast!;
  const input = c.input!.data.map(num);
  const sat = encode(new Float32Array(input), 'e4m3');
  const nsat = encode(new Float32Array(input), 'e4m3', { saturate: false });
  assert.equal(input.length, 111);
  for (let i = 0; i < input.length; i++) {
    assert.equal(sat[i], c.code_satfinite!.data[i], `satfinite ${input[i]}`);
    assert.equal(nsat[i], c.code_nan_on_overflow!.data[i], `nan_on_overflow ${input[i]}`);
    assert.equal(encodeFp8(input[i]!, 'e4m3'), sat[i]);
    assert.ok(Object.is(E4M3_TO_F32[sat[i]!], Math.fround(num(c.decoded_satfinite!.data[i]!))));
  }
  assert.equal(encodeFp8(464, 'e4m3', false), 0x7e);
  assert.equal(encodeFp8(464.0001, 'e4m3', false), 0x7f);
});

test('encode (float32 bit path) agrees with encodeFp8 on random values, both formats and modes', () => {
  let seed = 12345;
  const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const xs = new Float32Array(20000).map(() => (rand() - 0.5) * 2 ** (rand() * 50 - 25));
  xs.set([NaN, Infinity, -Infinity, 0, -0, 464, -464, 57344, 61440, 2 ** -10, 2 ** -17, 1e-45]);
  for (const format of ['e4m3', 'e5m2'] as Fp8Format[]) {
    for (const saturate of [true, false]) {
      const codes = encode(xs, format, { saturate });
      for (let i = 0; i < xs.length; i++) {
        assert.equal(codes[i], encodeFp8(xs[i]!, format, saturate), `${format} sat=${saturate} x=${xs[i]}`);
      }
    }
  }
});

test('bf16: round to nearest even, NaN preserved, round trip', () => {
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(-2), 0xc000);
  // 1 + 2^-8 is exactly halfway between bf16 1 and 1+2^-7: ties to even (1).
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80);
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(f32ToBf16(Infinity), 0x7f80);
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  assert.equal(f32ToBf16(3.4028234663852886e38), 0x7f80); // rounds up to inf, as RNE does
  for (let h = 0; h < 0x10000; h += 7) {
    const v = bf16ToF32(h);
    if (!Number.isNaN(v)) assert.equal(f32ToBf16(v), h);
  }
  const xs = new Float32Array([0.1, -3.3, 1e-40, NaN, 65504]);
  const bits = encodeBf16(xs);
  for (let i = 0; i < xs.length; i++) assert.equal(bits[i], f32ToBf16(xs[i]!));
  const back = decodeBf16(bits);
  assert.equal(back[0], bf16ToF32(f32ToBf16(0.1)));
  assert.ok(Math.abs(back[1]! + 3.3) < 3.3 * 2 ** -8);
});

test('f16 decode', () => {
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
  assert.equal(f16ToF32(0xc000), -2);
  assert.equal(f16ToF32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
  assert.ok(Object.is(f16ToF32(0x8000), -0));
});
