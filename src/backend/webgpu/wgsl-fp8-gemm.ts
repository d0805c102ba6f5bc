/**
 * WGSL for the webgpu backend's scaled FP8 GEMM (registry.ts Fp8ScaledGemm, Fp8GemmArgs), E4M3
 * codes packed four per u32 as in wgsl-fp8.ts, promotion every 128 of K.
 *
 * Contract:
 * - 64×64 tile of C per 16×16 workgroup, 4×4 per thread, K through shared tiles of decoded f32 16
 *   at a time. Each 128-wide K block is summed in f32 in K order from zero (the products of two
 *   FP8 values are exact, so these partial sums equal the reference's MatMul panels bit for bit),
 *   then promoted: c += (sa·sb)·p in f32 (the reference rounds that once, from a double: equal
 *   whenever sa·sb is a power of two — ue8m0 — else within an ulp or two).
 * - Accumulator ablation (`mode` 1, 2): pairs added then truncated to 14 significant bits, as
 *   src/fp8/kernels.ts limitedAccumTs; mode 2 also truncates C after each promotion.
 * - Out-of-range rows, columns and K decode as zeros and are never stored: any M, N, K works.
 */
import { FP8_DECODE } from './wgsl-fp8.js';

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
