/**
 * WGSL for the webgpu backend's grouped MoE feed-forward (MoeFfnForward / MoeFfnBackward, the
 * registry's MoeFfnArgs): a GEMM that reads its operands at offsets and through a row-gather list,
 * the per-token combine, and the backward's per-slot scaling of the upstream gradient.
 *
 * Contract:
 * - MOE_GEMM: C[cOff + r·N + c] (+)= Σ_k op(A)[r, k] · op(B)[k, c], the 64×64-tile, 4×4
 *   register-blocked GEMM of wgsl-gemm.ts. A is stored [M, K] (or [K, M] when tA) from element aOff,
 *   B [K, N] (or [N, K] when tB) from bOff. With gA (gB) set, storage row ρ of A (B) is row
 *   ⌊IDX[gOff + ρ] / kdiv⌋ of the buffer instead: the rows of x a routed expert's slots read
 *   (slot s belongs to token ⌊s / k⌋). Out-of-range rows, columns and K are zeros, never stored.
 *   Dispatch (⌈N/64⌉, ⌈M/64⌉, 1); bindings A, B, C, IDX, uniform.
 * - MOE_COMBINE: O[n, c] = (base ? O[n, c] : 0) + Σ_j (scaled ? W[n·k+j] : 1) · Y[POS[n·k+j]·H + c],
 *   j in order — the native kernel's fixed slot order. One thread per element; bindings O, Y, POS, W.
 * - MOE_DY: for slot position p (one 64-thread workgroup each), s = ORDER[p], n = ⌊s/k⌋:
 *   DY[p, :] = SW[s] · GO[n, :] and GW[s] = ⟨GO[n, :], Y[p, :]⟩ (the gate weight's gradient).
 */
import { ROW_WGSL } from './wgsl-rows.js';
import { TILE_FMA_WGSL } from './wgsl-gemm.js';

/** The gathered, offset GEMM (see the contract). */
export const MOE_GEMM_WGSL = /* wgsl */ `
struct P { M: u32, N: u32, K: u32, tA: u32, tB: u32, aOff: u32, bOff: u32, cOff: u32, acc: u32, gA: u32, gB: u32, gOff: u32, kdiv: u32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<storage, read> IDX: array<i32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

fn rowOf(rho: u32, g: u32) -> u32 {
  if (g == 0u) { return rho; }
  return u32(IDX[p.gOff + rho]) / p.kdiv;
}
// Element (m, k) of op(A) and (k, n) of op(B); callers keep the indices in range.
fn aAt(m: u32, k: u32) -> f32 {
  if (p.tA == 0u) { return A[p.aOff + rowOf(m, p.gA) * p.K + k]; }
  return A[p.aOff + rowOf(k, p.gA) * p.M + m];
}
fn bAt(k: u32, n: u32) -> f32 {
  if (p.tB == 0u) { return B[p.bOff + rowOf(k, p.gB) * p.N + n]; }
  return B[p.bOff + rowOf(n, p.gB) * p.K + k];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let row0 = wg.y * 64u;
  let col0 = wg.x * 64u;
  var c0 = vec4f(0.0); var c1 = vec4f(0.0); var c2 = vec4f(0.0); var c3 = vec4f(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var i = 0u; i < 4u; i++) {
      let idx = li + i * 256u;
      var r: u32; var kk: u32;
      if (p.tA == 0u) { r = idx / 16u; kk = idx % 16u; } else { kk = idx / 64u; r = idx % 64u; }
      var v = 0.0;
      if (row0 + r < p.M && k0 + kk < p.K) { v = aAt(row0 + r, k0 + kk); }
      As[kk * 64u + r] = v;
      var c: u32; var kb: u32;
      if (p.tB == 0u) { kb = idx / 64u; c = idx % 64u; } else { c = idx / 16u; kb = idx % 16u; }
      var w = 0.0;
      if (col0 + c < p.N && k0 + kb < p.K) { w = bAt(k0 + kb, col0 + c); }
      Bs[kb * 64u + c] = w;
    }
    workgroupBarrier();
${TILE_FMA_WGSL}    workgroupBarrier();
  }
  store(row0 + lid.y * 4u, col0 + lid.x * 4u, c0);
  store(row0 + lid.y * 4u + 1u, col0 + lid.x * 4u, c1);
  store(row0 + lid.y * 4u + 2u, col0 + lid.x * 4u, c2);
  store(row0 + lid.y * 4u + 3u, col0 + lid.x * 4u, c3);
}
fn store(r: u32, c0: u32, v: vec4f) {
  if (r >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + j;
    if (c >= p.N) { return; }
    let o = p.cOff + r * p.N + c;
    if (p.acc != 0u) { C[o] = C[o] + v[j]; } else { C[o] = v[j]; }
  }
}
`;

/** Per-token combine of slot rows (see the contract). Bindings O, Y, POS, W, uniform. */
export const MOE_COMBINE_WGSL = /* wgsl */ `
struct P { N: u32, H: u32, k: u32, base: u32, scaled: u32 }
@group(0) @binding(0) var<storage, read_write> O: array<f32>;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
@group(0) @binding(2) var<storage, read> POS: array<i32>;
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * ng.x + wg.x) * 256u + li;
  if (i >= p.N * p.H) { return; }
  let n = i / p.H;
  let c = i % p.H;
  var acc = 0.0;
  if (p.base != 0u) { acc = O[i]; }
  for (var j = 0u; j < p.k; j++) {
    let s = n * p.k + j;
    var w = 1.0;
    if (p.scaled != 0u) { w = W[s]; }
    acc += w * Y[u32(POS[s]) * p.H + c];
  }
  O[i] = acc;
}
`;

/** Backward: scaled upstream rows per slot and the gate weights' gradient. Bindings GO, Y, ORDER, SW, DY, GW, uniform. */
export const MOE_DY_WGSL = ROW_WGSL + /* wgsl */ `
struct P { M: u32, H: u32, k: u32 }
@group(0) @binding(0) var<storage, read> GO: array<f32>;
@group(0) @binding(1) var<storage, read> Y: array<f32>;
@group(0) @binding(2) var<storage, read> ORDER: array<i32>;
@group(0) @binding(3) var<storage, read> SW: array<f32>;
@group(0) @binding(4) var<storage, read_write> DY: array<f32>;
@group(0) @binding(5) var<storage, read_write> GW: array<f32>;
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let q = rowOf(wg, ng);
  if (q >= p.M) { return; }
  let s = u32(ORDER[q]);
  let go = (s / p.k) * p.H;
  let w = SW[s];
  var d = 0.0;
  for (var c = li; c < p.H; c += 64u) {
    let v = GO[go + c];
    DY[q * p.H + c] = w * v;
    d += v * Y[q * p.H + c];
  }
  let t = reduceSum(li, d);
  if (li == 0u) { GW[s] = t; }
}
`;
