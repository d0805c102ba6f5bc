/**
 * WGSL for the webgpu backend's FP8 quantisers (registry.ts Fp8Quantize*, Fp8RequantizeCols): E4M3
 * in 1×128, 128×1 and 128×128 tiles, and the re-tiling of FP8 rows to column tiles; the E4M3
 * decode they share with the scaled GEMM (wgsl-fp8-gemm.ts). E4M3 codes travel packed four per
 * u32 (byte i of an array in bits 8·(i mod 4) of word ⌊i/4⌋), f32 operands as their bits.
 *
 * Contract:
 * - Quantisers are bit-exact with src/fp8/quant.ts: every float step the reference rounds once is
 *   done in integers — amax as the max of |x|'s bits (NaN beats everything, as Math.max makes it),
 *   s = fround(max(amax, 1e-4) / 448) by a 25-step long division with round-to-nearest-even (WGSL's
 *   `/` may be 2.5 ulp off), ue8m0 rounding up to a power of two on the bits, fround(x / s) by the
 *   same division, and the E4M3 encoding (satfinite, ties to even, subnormals) on the f32 bits.
 *   ±inf, NaN, −0 and all-zero tiles come out as the reference's (see quantCode).
 * - Re-tiling dequantises with one f32 multiply (correctly rounded in WGSL, as the reference's
 *   fround(decode·scale)); products with inf/NaN/zero are resolved on the bits.
 * - Two passes per quantisation: a 64-thread workgroup per tile reduces amax and writes the tile's
 *   scale; then one thread per output word writes four codes (transposed when `tr`).
 * - Every binding is used (layouts are 'auto'); the uniform is the last binding.
 */

/** E4M3 decode (quantisers here, the GEMM in wgsl-fp8-gemm.ts). */
export const FP8_DECODE = /* wgsl */ `
// The f32 bits of an E4M3 code (bias 7; 0x7F/0xFF NaN; subnormals m·2^-9).
fn e4m3Bits(c: u32) -> u32 {
  let s = (c & 0x80u) << 24u;
  let e = (c >> 3u) & 15u;
  let m = c & 7u;
  if (e == 15u && m == 7u) { return 0x7fc00000u; }
  if (e == 0u) { return s | bitcast<u32>(f32(m) * 0.001953125); }
  return s | ((e + 120u) << 23u) | (m << 20u);
}
`;

/** The integer arithmetic of the quantisers (needs the quantiser uniform p). */
const FP8_QUANT = /* wgsl */ `
// |x| / s rounded to f32 (nearest, ties to even), for finite nonzero |x| bits and finite normal s
// bits. Quotients below 2^-126 come back as 0 (E4M3 code 0 whatever their rounding; scales are
// never that small), at or above 2^128 as +inf.
fn divRN(xa: u32, sa: u32) -> u32 {
  var ex = i32(xa >> 23u);
  var mx = xa & 0x7fffffu;
  if (ex == 0) { let sh = countLeadingZeros(mx) - 8u; mx = mx << sh; ex = 1 - i32(sh); } else { mx = mx | 0x800000u; }
  let ms = (sa & 0x7fffffu) | 0x800000u;
  var e = ex - i32(sa >> 23u) + 127;
  var rem = mx;
  if (rem < ms) { rem = rem << 1u; e = e - 1; }
  if (e < 1) { return 0u; }
  if (e >= 255) { return 0x7f800000u; }
  var q = 0u;
  for (var i = 0u; i < 25u; i++) {
    q = q << 1u;
    if (rem >= ms) { rem = rem - ms; q = q | 1u; }
    rem = rem << 1u;
  }
  var m = q >> 1u;
  if ((q & 1u) == 1u && (rem != 0u || (m & 1u) == 1u)) { m = m + 1u; }
  if (m == 0x1000000u) { m = 0x800000u; e = e + 1; if (e >= 255) { return 0x7f800000u; } }
  return (u32(e) << 23u) | (m & 0x7fffffu);
}
// E4M3 code (without sign) of non-NaN |y| bits: satfinite, nearest, ties to even (codec.ts encodeInto).
fn encE4M3(a: u32) -> u32 {
  if (a >= 0x3c800000u) { return min(((a + 0x7ffffu + ((a >> 20u) & 1u)) >> 20u) - 960u, 0x7eu); }
  let e = a >> 23u;
  if (e == 0u) { return 0u; }
  let sh = 141u - e;
  if (sh >= 25u) { return 0u; }
  let m = (a & 0x7fffffu) | 0x800000u;
  let q = m >> sh;
  let r = m & ((1u << sh) - 1u);
  let h = 1u << (sh - 1u);
  if (r > h || (r == h && (q & 1u) == 1u)) { return q + 1u; }
  return q;
}
// The code of fround(x / s) (x, s as bits; s > 0, inf or NaN): NaN in or inf/inf -> 0x7F (no sign),
// finite/inf -> ±0, ±inf/finite -> ±0x7E, else the encoding of the rounded quotient.
fn quantCode(xb: u32, sb: u32) -> u32 {
  let sgn = (xb >> 24u) & 0x80u;
  let xa = xb & 0x7fffffffu;
  if (xa > 0x7f800000u || sb > 0x7f800000u) { return 0x7fu; }
  if (sb == 0x7f800000u) { if (xa == 0x7f800000u) { return 0x7fu; } return sgn; }
  if (xa == 0x7f800000u) { return sgn | 0x7eu; }
  if (xa == 0u) { return sgn; }
  return sgn | encE4M3(divRN(xa, sb));
}
// Dequantisation multiplier of a tile from its amax bits: fround(max(amax, 1e-4) / 448), NaN for a
// NaN amax, inf for inf; ue8m0: the next power of two up (NaN -> inf, as pow2Ceil does).
fn scaleOf(am: u32) -> u32 {
  var s: u32;
  if (am > 0x7f800000u) { s = 0x7fc00000u; }
  else if (am == 0x7f800000u) { s = am; }
  else if (am < p.thr) { s = p.floorS; }
  else { s = divRN(am, 0x43e00000u); }
  if (p.ue8m0 != 0u) {
    if (s >= 0x7f800000u) { s = 0x7f800000u; } else if ((s & 0x7fffffu) != 0u) { s = ((s >> 23u) + 1u) << 23u; }
  }
  return s;
}
`;

/** Uniform of the quantiser passes (index.ts fills it in this order). */
const QUANT_PARAMS = /* wgsl */ `
struct P { rows: u32, cols: u32, th: u32, tw: u32, nTc: u32, nT: u32, ue8m0: u32, thr: u32, floorS: u32, tr: u32, ntr: u32 }
`;

/** The value source of a quantiser: f32 x, or FP8 rows (codes + 1×128 scales) dequantised. */
function source(kind: 'f32' | 'fp8'): { decl: string; n: number } {
  if (kind === 'f32') {
    return { n: 1, decl: /* wgsl */ `
@group(0) @binding(0) var<storage, read> X: array<u32>;
fn val(i: u32, r: u32, c: u32) -> u32 { return X[i]; }
` };
  }
  return { n: 2, decl: /* wgsl */ `
@group(0) @binding(0) var<storage, read> QI: array<u32>;
@group(0) @binding(1) var<storage, read> RS: array<u32>;
// fround(decode(code) · rowScale) on the bits: specials resolved first, finite products multiplied.
fn val(i: u32, r: u32, c: u32) -> u32 {
  let d = e4m3Bits((QI[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
  let s = RS[r * p.ntr + c / 128u];
  let da = d & 0x7fffffffu;
  let sa = s & 0x7fffffffu;
  if (da > 0x7f800000u || sa > 0x7f800000u) { return 0x7fc00000u; }
  if (sa == 0x7f800000u) { if (da == 0u) { return 0x7fc00000u; } return ((d ^ s) & 0x80000000u) | 0x7f800000u; }
  if (da == 0u || sa == 0u) { return (d ^ s) & 0x80000000u; }
  return bitcast<u32>(bitcast<f32>(d) * bitcast<f32>(s));
}
` };
}

/** Pass 1: one 64-thread workgroup per th×tw tile (index wg.x + wg.y·groups_x) writes S[tile]. */
function scalesShader(kind: 'f32' | 'fp8'): string {
  const src = source(kind);
  return QUANT_PARAMS + FP8_DECODE + FP8_QUANT + src.decl + /* wgsl */ `
@group(0) @binding(${src.n}) var<storage, read_write> S: array<u32>;
@group(0) @binding(${src.n + 1}) var<uniform> p: P;
var<workgroup> red: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = wg.x + wg.y * ng.x;
  let inRange = t < p.nT;
  let r0 = (t / p.nTc) * p.th;
  let c0 = (t % p.nTc) * p.tw;
  let h = min(p.rows, r0 + p.th) - min(p.rows, r0);
  let w = min(p.cols, c0 + p.tw) - min(p.cols, c0);
  var am = 0u;
  if (inRange) {
    for (var idx = li; idx < h * w; idx += 64u) {
      let r = r0 + idx / w;
      let c = c0 + idx % w;
      am = max(am, val(r * p.cols + c, r, c) & 0x7fffffffu);
    }
  }
  red[li] = am;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) { if (li < s) { red[li] = max(red[li], red[li + s]); } workgroupBarrier(); }
  if (li == 0u && inRange) { S[t] = scaleOf(red[0]); }
}
`;
}

/** Pass 2: one thread per output word (grid of 256-thread groups) packs four codes; tr = transposed output. */
function codesShader(kind: 'f32' | 'fp8'): string {
  const src = source(kind);
  return QUANT_PARAMS + FP8_DECODE + FP8_QUANT + src.decl + /* wgsl */ `
@group(0) @binding(${src.n}) var<storage, read> S: array<u32>;
@group(0) @binding(${src.n + 1}) var<storage, read_write> Q: array<u32>;
@group(0) @binding(${src.n + 2}) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let wi = (wg.x + wg.y * ng.x) * 256u + li;
  let n = p.rows * p.cols;
  if (wi * 4u >= n) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let i = wi * 4u + j;
    if (i >= n) { break; }
    var r: u32; var c: u32;
    if (p.tr == 0u) { r = i / p.cols; c = i % p.cols; } else { c = i / p.rows; r = i % p.rows; }
    let s = S[(r / p.th) * p.nTc + c / p.tw];
    word = word | (quantCode(val(r * p.cols + c, r, c), s) << (8u * j));
  }
  Q[wi] = word;
}
`;
}

/** Scales pass over f32 x. Bindings X, S, uniform. */
export const FP8_SCALES_WGSL = scalesShader('f32');
/** Codes pass over f32 x. Bindings X, S, Q, uniform. */
export const FP8_CODES_WGSL = codesShader('f32');
/** Scales pass over FP8 rows (re-tiling). Bindings QI, RS, S, uniform. */
export const FP8_RESCALES_WGSL = scalesShader('fp8');
/** Codes pass over FP8 rows (re-tiling). Bindings QI, RS, S, Q, uniform. */
export const FP8_RECODES_WGSL = codesShader('fp8');
