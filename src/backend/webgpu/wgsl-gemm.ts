/**
 * WGSL for the webgpu backend's GEMM: batched C = op(A)·op(B) (+ C), row-major, transposes and
 * batch strides exactly as the registry's MatMulArgs (a stride of 0 broadcasts).
 *
 * Contract:
 * - One workgroup of 16×16 threads computes a 64×64 tile of C; K advances 16 at a time through
 *   two workgroup-shared tiles (A as [16][64], B as [16][64]), and each thread keeps a 4×4 block of
 *   C in registers (register blocking: 8 shared loads per 16 fused multiply-adds).
 * - Out-of-range rows, columns and K are loaded as zeros and never stored, so any M, N, K works.
 * - Dispatch: (⌈N/64⌉, ⌈M/64⌉, batch). Bindings: A, B, C (read_write), then the uniform.
 */
/**
 * The inner step of the 64×64-tile GEMMs (this one and wgsl-moe.ts's): 16 K steps of the staged
 * tiles As [16][64] and Bs [16][64] into the thread's 4×4 register block c0..c3.
 */
export const TILE_FMA_WGSL = /* wgsl */ `
    for (var kk = 0u; kk < 16u; kk++) {
      let ar = kk * 64u + lid.y * 4u;
      let bc = kk * 64u + lid.x * 4u;
      let b = vec4f(Bs[bc], Bs[bc + 1u], Bs[bc + 2u], Bs[bc + 3u]);
      c0 = fma(vec4f(As[ar]), b, c0);
      c1 = fma(vec4f(As[ar + 1u]), b, c1);
      c2 = fma(vec4f(As[ar + 2u]), b, c2);
      c3 = fma(vec4f(As[ar + 3u]), b, c3);
    }
`;

export const MATMUL_WGSL = /* wgsl */ `
struct P { M: u32, N: u32, K: u32, tA: u32, tB: u32, sA: u32, sB: u32, sC: u32, acc: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row0 = wg.y * 64u;
  let col0 = wg.x * 64u;
  let aBase = wg.z * p.sA;
  let bBase = wg.z * p.sB;
  let cBase = wg.z * p.sC;
  var c0 = vec4f(0.0); var c1 = vec4f(0.0); var c2 = vec4f(0.0); var c3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let idx = li + i * 256u;
      var r: u32; var kk: u32;
      if (p.tA == 0u) { r = idx / 16u; kk = idx % 16u; } else { kk = idx / 64u; r = idx % 64u; }
      let gr = row0 + r;
      let gk = k0 + kk;
      var v = 0.0;
      if (gr < p.M && gk < p.K) {
        if (p.tA == 0u) { v = A[aBase + gr * p.K + gk]; } else { v = A[aBase + gk * p.M + gr]; }
      }
      As[kk * 64u + r] = v;
      var c: u32; var kb: u32;
      if (p.tB == 0u) { kb = idx / 64u; c = idx % 64u; } else { c = idx / 16u; kb = idx % 16u; }
      let gc = col0 + c;
      let gkb = k0 + kb;
      var w = 0.0;
      if (gc < p.N && gkb < p.K) {
        if (p.tB == 0u) { w = B[bBase + gkb * p.N + gc]; } else { w = B[bBase + gc * p.K + gkb]; }
      }
      Bs[kb * 64u + c] = w;
    }
    workgroupBarrier();
${TILE_FMA_WGSL}    workgroupBarrier();
  }
  store(row0 + lid.y * 4u, col0 + lid.x * 4u, cBase, c0);
  store(row0 + lid.y * 4u + 1u, col0 + lid.x * 4u, cBase, c1);
  store(row0 + lid.y * 4u + 2u, col0 + lid.x * 4u, cBase, c2);
  store(row0 + lid.y * 4u + 3u, col0 + lid.x * 4u, cBase, c3);
}
fn store(r: u32, c0: u32, cBase: u32, v: vec4f) {
  if (r >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + j;
    if (c >= p.N) { return; }
    let o = cBase + r * p.N + c;
    if (p.acc != 0u) { C[o] = C[o] + v[j]; } else { C[o] = v[j]; }
  }
}
`;
