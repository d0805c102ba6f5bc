/**
 * WGSL for fused causal attention over strided Q/K/V (the registry's AttnGeometry): forward, and a
 * backward that recomputes the probabilities. Covers per-head K/V (KH = H), one shared K/V head
 * (KH = 1: MLA's absorbed/latent form) and S > T (queries at the end of a longer key sequence).
 *
 * Contract:
 * - Forward: one 64-thread workgroup per (b, t, h); scores and probabilities go to a scratch
 *   buffer PS [B·T·H, S] (so S is unbounded), max and sum reduce in workgroup memory, and the
 *   output's Dv columns are split over the threads.
 * - Backward pass 1, per (b, t, h): recomputes P, forms dS = P ⊙ (dO·Vᵀ − Σ P ⊙ dO·Vᵀ) into DS
 *   and writes dQ = scale·dS·K (dense [B, T, H, Dk]). Pass 2, per (b, s, kh): dK = scale·Σ dSᵀ·Q
 *   and dV = Σ Pᵀ·dO over the heads that share the K/V head and the queries that see key s (dense
 *   [B, S, KH, Dk] and [B, S, KH, Dv]). No two threads write one element: no atomics, and the
 *   result does not depend on scheduling.
 * - The caller adds the dense gradients into its (possibly strided, possibly aliased) arrays.
 */
import { WG_REDUCE_WGSL } from './wgsl-rows.js';

const COMMON = /* wgsl */ `
struct P { B: u32, T: u32, S: u32, H: u32, KH: u32, Dk: u32, Dv: u32, ldk: u32, ldv: u32, scale: f32 }
${WG_REDUCE_WGSL}
fn khOf(h: u32) -> u32 { if (p.KH == 1u) { return 0u; } return h; }
// Probabilities of query (b,t,h) over keys 0..lim into PS[po..], by the threads that own each s.
fn probs(li: u32, b: u32, t: u32, h: u32, po: u32) {
  let lim = t + p.S - p.T;
  let qo = ((b * p.T + t) * p.H + h) * p.Dk;
  let kh = khOf(h);
  var mx = -3.402823e38;
  for (var s = li; s <= lim; s += 64u) {
    let ko = (b * p.S + s) * p.ldk + kh * p.Dk;
    var d = 0.0;
    for (var e = 0u; e < p.Dk; e++) { d += Q[qo + e] * K[ko + e]; }
    d *= p.scale;
    PS[po + s] = d;
    mx = max(mx, d);
  }
  mx = reduceMax(li, mx);
  var sum = 0.0;
  for (var s = li; s <= lim; s += 64u) { let x = exp(PS[po + s] - mx); PS[po + s] = x; sum += x; }
  let inv = 1.0 / reduceSum(li, sum);
  for (var s = li; s <= lim; s += 64u) { PS[po + s] *= inv; }
  storageBarrier();
  workgroupBarrier();
}
`;

/** Forward. Bindings Q, K, V, O, PS, uniform. Dispatch B·T·H workgroups (2-D). */
export const ATTN_FWD_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
@group(0) @binding(4) var<storage, read_write> PS: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
${COMMON}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wg.x + wg.y * ng.x;
  if (idx >= p.B * p.T * p.H) { return; }
  let h = idx % p.H;
  let t = (idx / p.H) % p.T;
  let b = idx / (p.H * p.T);
  let po = idx * p.S;
  probs(li, b, t, h, po);
  let lim = t + p.S - p.T;
  let kh = khOf(h);
  for (var d = li; d < p.Dv; d += 64u) {
    var acc = 0.0;
    for (var s = 0u; s <= lim; s++) { acc += PS[po + s] * V[(b * p.S + s) * p.ldv + kh * p.Dv + d]; }
    O[idx * p.Dv + d] = acc;
  }
}
`;

/** Backward pass 1 (P, dS, dQ). Bindings Q, K, V, GO, PS, DS, GQ, uniform. Dispatch B·T·H. */
export const ATTN_BWD1_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> K: array<f32>;
@group(0) @binding(2) var<storage, read> V: array<f32>;
@group(0) @binding(3) var<storage, read> GO: array<f32>;
@group(0) @binding(4) var<storage, read_write> PS: array<f32>;
@group(0) @binding(5) var<storage, read_write> DS: array<f32>;
@group(0) @binding(6) var<storage, read_write> GQ: array<f32>;
@group(0) @binding(7) var<uniform> p: P;
${COMMON}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wg.x + wg.y * ng.x;
  if (idx >= p.B * p.T * p.H) { return; }
  let h = idx % p.H;
  let t = (idx / p.H) % p.T;
  let b = idx / (p.H * p.T);
  let po = idx * p.S;
  probs(li, b, t, h, po);
  let lim = t + p.S - p.T;
  let kh = khOf(h);
  let go = idx * p.Dv;
  var part = 0.0;
  for (var s = li; s <= lim; s += 64u) {
    let vo = (b * p.S + s) * p.ldv + kh * p.Dv;
    var d = 0.0;
    for (var e = 0u; e < p.Dv; e++) { d += GO[go + e] * V[vo + e]; }
    DS[po + s] = d;
    part += PS[po + s] * d;
  }
  let dot = reduceSum(li, part);
  for (var s = li; s <= lim; s += 64u) { DS[po + s] = PS[po + s] * (DS[po + s] - dot); }
  storageBarrier();
  workgroupBarrier();
  for (var e = li; e < p.Dk; e += 64u) {
    var acc = 0.0;
    for (var s = 0u; s <= lim; s++) { acc += DS[po + s] * K[(b * p.S + s) * p.ldk + kh * p.Dk + e]; }
    GQ[idx * p.Dk + e] = p.scale * acc;
  }
}
`;

/** Backward pass 2 (dK, dV). Bindings Q, GO, PS, DS, GK, GV, uniform. Dispatch B·S·KH. */
export const ATTN_BWD2_WGSL = /* wgsl */ `
struct P { B: u32, T: u32, S: u32, H: u32, KH: u32, Dk: u32, Dv: u32, ldk: u32, ldv: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> GO: array<f32>;
@group(0) @binding(2) var<storage, read> PS: array<f32>;
@group(0) @binding(3) var<storage, read> DS: array<f32>;
@group(0) @binding(4) var<storage, read_write> GK: array<f32>;
@group(0) @binding(5) var<storage, read_write> GV: array<f32>;
@group(0) @binding(6) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = wg.x + wg.y * ng.x;
  if (idx >= p.B * p.S * p.KH) { return; }
  let kh = idx % p.KH;
  let s = (idx / p.KH) % p.S;
  let b = idx / (p.KH * p.S);
  var h0 = kh; var h1 = kh + 1u;
  if (p.KH == 1u) { h0 = 0u; h1 = p.H; }
  var t0 = 0u;
  if (s + p.T > p.S) { t0 = s + p.T - p.S; }
  for (var e = li; e < p.Dk; e += 64u) {
    var acc = 0.0;
    for (var h = h0; h < h1; h++) {
      for (var t = t0; t < p.T; t++) {
        let r = (b * p.T + t) * p.H + h;
        acc += DS[r * p.S + s] * Q[r * p.Dk + e];
      }
    }
    GK[idx * p.Dk + e] = p.scale * acc;
  }
  for (var d = li; d < p.Dv; d += 64u) {
    var acc = 0.0;
    for (var h = h0; h < h1; h++) {
      for (var t = t0; t < p.T; t++) {
        let r = (b * p.T + t) * p.H + h;
        acc += PS[r * p.S + s] * GO[r * p.Dv + d];
      }
    }
    GV[idx * p.Dv + d] = acc;
  }
}
`;
