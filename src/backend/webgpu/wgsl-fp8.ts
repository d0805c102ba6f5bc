/**
 * WGSL for the webgpu backend's FP8 recipe kernels (registry.ts Fp8*): the E4M3 quantisers in
 * 1×128, 128×1 and 128×128 tiles, the re-tiling of FP8 rows to column tiles, and the scaled FP8
 * GEMM with promotion every 128 of K. E4M3 codes travel packed four per u32 (byte i of an array
 * in bits 8·(i mod 4) of word ⌊i/4⌋), f32 operands as their bits (array<u32>).
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
 * - GEMM: 64×64 tile of C per 16×16 workgroup, 4×4 per thread, K through shared tiles of decoded
 *   f32 16 at a time. Each 128-wide K block is summed in f32 in K order from zero (the products of
 *   two FP8 values are exact, so these partial sums equal the reference's MatMul panels bit for
 *   bit), then promoted: c += (sa·sb)·p in f32 (the reference rounds that once, from a double:
 *   equal whenever sa·sb is a power of two — ue8m0 — else within an ulp or two).
 *   Accumulator ablation (`mode` 1, 2): pairs added then truncated to 14 significant bits, as
 *   src/fp8/kernels.ts limitedAccumTs; mode 2 also truncates C after each promotion.
 * - Every binding is used (layouts are 'auto'); the uniform is the last binding.
 */

/** E4M3 decode (GEMM and quantisers). */
const FP8_DECODE = /* wgsl */ `
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

/**
 * Scaled FP8 GEMM (registry.ts Fp8GemmArgs): C (+)= Σ_kb sa(m,kb)·sb(kb,n)·Σ_{k∈kb} A(m,k)·B(k,n).
 * Bindings A (packed codes, [M,K] or [K,M] when aT), SA, B (packed, [K,N]), SB, C, uniform.
 * Dispatch (⌈N/64⌉, ⌈M/64⌉, 1).
 */
export const FP8_GEMM_WGSL = FP8_DECODE + /* wgsl */ `
struct P { M: u32, N: u32, K: u32, aT: u32, saKb: u32, saRow: u32, sbKb: u32, sbDiv: u32, sbCol: u32, acc: u32, mode: u32 }
@group(0) @binding(0) var<storage, read> A: array<u32>;
@group(0) @binding(1) var<storage, read> SA: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<u32>;
@group(0) @binding(3) var<storage, read> SB: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

fn t14(v: vec4f) -> vec4f { return bitcast<vec4f>(bitcast<vec4u>(v) & vec4u(0xfffffc00u)); }

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row0 = wg.y * 64u + lid.y * 4u;
  let col0 = wg.x * 64u + lid.x * 4u;
  var c: array<vec4f, 4>;
  for (var i = 0u; i < 4u; i++) {
    c[i] = vec4f(0.0);
    if (p.acc != 0u && row0 + i < p.M) {
      for (var j = 0u; j < 4u; j++) { if (col0 + j < p.N) { c[i][j] = C[(row0 + i) * p.N + col0 + j]; } }
    }
  }
  for (var k0 = 0u; k0 < p.K; k0 += 128u) {
    let kEnd = min(p.K, k0 + 128u);
    var s: array<vec4f, 4>;
    for (var i = 0u; i < 4u; i++) { s[i] = vec4f(0.0); }
    for (var k1 = k0; k1 < kEnd; k1 += 16u) {
      for (var i = 0u; i < 4u; i++) {
        let idx = li + i * 256u;
        var r: u32; var kk: u32;
        if (p.aT == 0u) { r = idx / 16u; kk = idx % 16u; } else { kk = idx / 64u; r = idx % 64u; }
        let gr = wg.y * 64u + r;
        let gk = k1 + kk;
        var v = 0.0;
        if (gr < p.M && gk < kEnd) {
          var e: u32;
          if (p.aT == 0u) { e = gr * p.K + gk; } else { e = gk * p.M + gr; }
          v = bitcast<f32>(e4m3Bits((A[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu));
        }
        As[kk * 64u + r] = v;
        let kb = idx / 64u;
        let cc = idx % 64u;
        let gc = wg.x * 64u + cc;
        var w = 0.0;
        if (gc < p.N && k1 + kb < kEnd) {
          let e = (k1 + kb) * p.N + gc;
          w = bitcast<f32>(e4m3Bits((B[e >> 2u] >> ((e & 3u) * 8u)) & 0xffu));
        }
        Bs[kb * 64u + cc] = w;
      }
      workgroupBarrier();
      if (p.mode == 0u) {
        for (var kk = 0u; kk < 16u; kk++) {
          let b = vec4f(Bs[kk * 64u + lid.x * 4u], Bs[kk * 64u + lid.x * 4u + 1u], Bs[kk * 64u + lid.x * 4u + 2u], Bs[kk * 64u + lid.x * 4u + 3u]);
          for (var i = 0u; i < 4u; i++) { s[i] = fma(vec4f(As[kk * 64u + lid.y * 4u + i]), b, s[i]); }
        }
      } else {
        for (var kk = 0u; kk < 16u; kk += 2u) {
          let b0 = vec4f(Bs[kk * 64u + lid.x * 4u], Bs[kk * 64u + lid.x * 4u + 1u], Bs[kk * 64u + lid.x * 4u + 2u], Bs[kk * 64u + lid.x * 4u + 3u]);
          let b1 = vec4f(Bs[kk * 64u + 64u + lid.x * 4u], Bs[kk * 64u + 65u + lid.x * 4u], Bs[kk * 64u + 66u + lid.x * 4u], Bs[kk * 64u + 67u + lid.x * 4u]);
          for (var i = 0u; i < 4u; i++) {
            s[i] = t14(fma(vec4f(As[kk * 64u + lid.y * 4u + i]), b0, fma(vec4f(As[kk * 64u + 64u + lid.y * 4u + i]), b1, s[i])));
          }
        }
      }
      workgroupBarrier();
    }
    // Promotion of this K block: scaled per row and column, added into C's accumulator.
    let kb = k0 / 128u;
    var sb = vec4f(0.0);
    for (var j = 0u; j < 4u; j++) { if (col0 + j < p.N) { sb[j] = SB[kb * p.sbKb + ((col0 + j) / p.sbDiv) * p.sbCol]; } }
    for (var i = 0u; i < 4u; i++) {
      if (row0 + i < p.M) {
        let t = (SA[kb * p.saKb + (row0 + i) * p.saRow] * sb) * s[i];
        if (p.mode == 2u) { c[i] = t14(t + c[i]); } else { c[i] = c[i] + t; }
      }
    }
  }
  for (var i = 0u; i < 4u; i++) {
    if (row0 + i < p.M) {
      for (var j = 0u; j < 4u; j++) { if (col0 + j < p.N) { C[(row0 + i) * p.N + col0 + j] = c[i][j]; } }
    }
  }
}
`;
