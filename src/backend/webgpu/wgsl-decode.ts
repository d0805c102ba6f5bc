/**
 * WGSL of the webgpu decode engine (decode-engine.ts): the few-row kernels one decode pass chains in
 * one submission — embedding gather, offset/strided RMSNorm, row products (GEMV), rope, latent
 * attention over a cache buffer, MoE routing and the expert combine.
 *
 * Contract:
 * - Same arithmetic as the kernels RowDecoder's TypeScript path calls on this backend: products sum
 *   in K order from zero (as the tiled GEMM does per output), RMSNorm, softmax and attention reduce
 *   through the same 64-thread workgroup trees; rope and sigmoid are f32 (the TypeScript path
 *   rounds a double), so results agree to float rounding.
 * - Routing (`decRoute`) is selectExperts (model/deepseek.ts): biased scores and group scores are
 *   compared as exact (hi, lo) f32 pairs (TwoSum), so the order is the double order the reference
 *   uses; ties go to the lower index; the group score is the top-2 sum with a bias, else the max.
 *   The sentinel −3.402823e38 stands for −∞ (WGSL may assume no infinities).
 * - `decArgmax` is sampling.ts argmax on finite logits (the first index of the largest value).
 * - Masked expert kernels skip rows that did not pick expert `e` (ids from decRoute); expert passes
 *   run in ascending id, each adding its rows into the MoE output after the shared expert, as
 *   RowDecoder does; `decCombine` then adds that output into the residual.
 * - Every binding is used by its shader (layouts are 'auto'); the uniform is the last binding.
 */
import { WG_REDUCE_WGSL } from './wgsl-rows.js';

const ROW = WG_REDUCE_WGSL + /* wgsl */ `
fn rowOf(wg: vec3u, n: vec3u) -> u32 { return wg.x + wg.y * n.x; }
`;
const ELT = /* wgsl */ `
fn eltIndex(wg: vec3u, n: vec3u, li: u32) -> u32 { return (wg.y * n.x + wg.x) * 256u + li; }
`;

/** O[ooff + r·ldo + i] = Tab[tok[r]·H + i] (ids checked on the host). Bindings Tab, Tok, O. */
const EMBED = ELT + /* wgsl */ `
struct P { rows: u32, H: u32, ooff: u32, ldo: u32 }
@group(0) @binding(0) var<storage, read> Tab: array<f32>;
@group(0) @binding(1) var<storage, read> Tok: array<i32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = eltIndex(wg, ng, li);
  if (t >= p.rows * p.H) { return; }
  let r = t / p.H; let i = t % p.H;
  O[p.ooff + r * p.ldo + i] = Tab[u32(Tok[r]) * p.H + i];
}
`;

/** RMSNorm of rows at X[xoff + r·ldx] into O[ooff + r·ldo] (RMSNORM_WGSL's arithmetic). Bindings X, W, O. */
const NORM = ROW + /* wgsl */ `
struct P { rows: u32, cols: u32, xoff: u32, ldx: u32, ooff: u32, ldo: u32, eps: f32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.rows) { return; }
  let xo = p.xoff + r * p.ldx; let oo = p.ooff + r * p.ldo;
  var ss = 0.0;
  for (var j = li; j < p.cols; j += 64u) { let v = X[xo + j]; ss += v * v; }
  let rs = 1.0 / sqrt(reduceSum(li, ss) / f32(p.cols) + p.eps);
  for (var j = li; j < p.cols; j += 64u) { O[oo + j] = X[xo + j] * rs * W[j]; }
}
`;

/**
 * Batched row product: Y[yoff + b·ybs + r·ldy + j] (+)= Σ_p X[xoff + b·xbs + r·ldx + p]·W[woff +
 * b·wbs + j·wj + p·wp], p < K in order. Masked (expert down projections, bindings + IDS, GW): rows
 * that did not pick expert e are skipped, the others add gate weight × sum into Y (RowsAxpy's
 * `Y += w·y`; experts run in ascending id, so each row adds them in the reference's order). Grid
 * (⌈N/64⌉, R, batch).
 */
function linear(masked: boolean): string {
  return /* wgsl */ `
struct P { R: u32, N: u32, K: u32, xoff: u32, ldx: u32, xbs: u32, woff: u32, wj: u32, wp: u32, wbs: u32, yoff: u32, ldy: u32, ybs: u32, acc: u32, e: u32, k: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
${masked ? '@group(0) @binding(3) var<storage, read> IDS: array<u32>;\n@group(0) @binding(4) var<storage, read> GW: array<f32>;\n@group(0) @binding(5) var<uniform> p: P;' : '@group(0) @binding(3) var<uniform> p: P;'}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x; let r = gid.y; let b = gid.z;
  if (j >= p.N || r >= p.R) { return; }
  ${masked ? 'var slot = p.k; for (var i = 0u; i < p.k; i++) { if (IDS[r * p.k + i] == p.e) { slot = i; } } if (slot == p.k) { return; }' : ''}
  let xo = p.xoff + b * p.xbs + r * p.ldx;
  let wo = p.woff + b * p.wbs + j * p.wj;
  var s = 0.0;
  for (var q = 0u; q < p.K; q++) { s += X[xo + q] * W[wo + q * p.wp]; }
  let yo = p.yoff + b * p.ybs + r * p.ldy + j;
  ${masked ? 'Y[yo] = Y[yo] + GW[r * p.k + slot] * s;' : 'if (p.acc != 0u) { Y[yo] = Y[yo] + s; } else { Y[yo] = s; }'}
}
`;
}

/** G[r·I + j] = silu(x·Wg_j)·(x·Wu_j) for rows of X[xoff + r·H] (masked: rows that picked e). Bindings X, Wg, Wu, IDS, G. */
const GATEUP = /* wgsl */ `
struct P { R: u32, I: u32, H: u32, xoff: u32, e: u32, k: u32, masked: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> Wg: array<f32>;
@group(0) @binding(2) var<storage, read> Wu: array<f32>;
@group(0) @binding(3) var<storage, read> IDS: array<u32>;
@group(0) @binding(4) var<storage, read_write> G: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x; let r = gid.y;
  if (j >= p.I || r >= p.R) { return; }
  if (p.masked != 0u) {
    var hit = false;
    for (var i = 0u; i < p.k; i++) { if (IDS[r * p.k + i] == p.e) { hit = true; } }
    if (!hit) { return; }
  }
  let xo = p.xoff + r * p.H; let wo = j * p.H;
  var g = 0.0; var u = 0.0;
  for (var q = 0u; q < p.H; q++) { g += X[xo + q] * Wg[wo + q]; }
  for (var q = 0u; q < p.H; q++) { u += X[xo + q] * Wu[wo + q]; }
  G[r * p.I + j] = (g / (1.0 + exp(-g))) * u;
}
`;

/**
 * Rope pairs: Dst[doff + r·ldd + h·dhs + 2i, +1] = rotation of Src[soff + r·lds + h·shs + 2i, +1]
 * by (CS, SN)[(coff + r)·half + i]. Bindings Src, CS, SN, Dst.
 */
const ROPE = ELT + /* wgsl */ `
struct P { rows: u32, heads: u32, half: u32, soff: u32, lds: u32, shs: u32, doff: u32, ldd: u32, dhs: u32, coff: u32 }
@group(0) @binding(0) var<storage, read> Src: array<f32>;
@group(0) @binding(1) var<storage, read> CS: array<f32>;
@group(0) @binding(2) var<storage, read> SN: array<f32>;
@group(0) @binding(3) var<storage, read_write> Dst: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = eltIndex(wg, ng, li);
  if (t >= p.rows * p.heads * p.half) { return; }
  let i = t % p.half; let h = (t / p.half) % p.heads; let r = t / (p.half * p.heads);
  let c = CS[(p.coff + r) * p.half + i]; let s = SN[(p.coff + r) * p.half + i];
  let so = p.soff + r * p.lds + h * p.shs + 2u * i; let d = p.doff + r * p.ldd + h * p.dhs + 2u * i;
  let x0 = Src[so]; let x1 = Src[so + 1u];
  Dst[d] = x0 * c - x1 * s;
  Dst[d + 1u] = x0 * s + x1 * c;
}
`;

/** Dst[doff + r·ldd + i] = Src[soff + r·lds + i]. Bindings Src, Dst. */
const COPY = ELT + /* wgsl */ `
struct P { rows: u32, cols: u32, soff: u32, lds: u32, doff: u32, ldd: u32 }
@group(0) @binding(0) var<storage, read> Src: array<f32>;
@group(0) @binding(1) var<storage, read_write> Dst: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = eltIndex(wg, ng, li);
  if (t >= p.rows * p.cols) { return; }
  let r = t / p.cols; let i = t % p.cols;
  Dst[p.doff + r * p.ldd + i] = Src[p.soff + r * p.lds + i];
}
`;

/**
 * Latent attention of nq query rows (Q rows qoff.., nh heads of D) over one cache buffer C [L, D]:
 * query i sees keys [0, L0 + i); values are each key's first dv entries. ATTN_FWD_WGSL's
 * arithmetic (scores into PS, max and sum through the workgroup). Bindings Q, C, O, PS. One
 * workgroup per (i, h).
 */
const ATTN = ROW + /* wgsl */ `
struct P { nq: u32, nh: u32, D: u32, dv: u32, L0: u32, qoff: u32, Lmax: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> C: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<storage, read_write> PS: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let idx = rowOf(wg, ng);
  if (idx >= p.nq * p.nh) { return; }
  let h = idx % p.nh; let i = idx / p.nh;
  let row = (p.qoff + i) * p.nh + h;
  let qo = row * p.D; let po = idx * p.Lmax; let L = p.L0 + i;
  var mx = -3.402823e38;
  for (var s = li; s < L; s += 64u) {
    var d = 0.0;
    for (var e = 0u; e < p.D; e++) { d += Q[qo + e] * C[s * p.D + e]; }
    d *= p.scale;
    PS[po + s] = d;
    mx = max(mx, d);
  }
  mx = reduceMax(li, mx);
  var sum = 0.0;
  for (var s = li; s < L; s += 64u) { let x = exp(PS[po + s] - mx); PS[po + s] = x; sum += x; }
  let inv = 1.0 / reduceSum(li, sum);
  for (var s = li; s < L; s += 64u) { PS[po + s] *= inv; }
  storageBarrier();
  workgroupBarrier();
  for (var d = li; d < p.dv; d += 64u) {
    var acc = 0.0;
    for (var s = 0u; s < L; s++) { acc += PS[po + s] * C[s * p.D + d]; }
    O[row * p.dv + d] = acc;
  }
}
`;

/**
 * Routing of R rows: scores S [R, E] → probabilities PR (sigmoid, or SOFTMAX_WGSL's softmax), the
 * top-k of (PR + bias) with group limiting (selectExperts), gate weights GW [R, k] (normalised when
 * sigmoid or normTopk, times the routed scale) and ids IDS [R, k]. BH/BL hold the biased scores as
 * (hi, lo) pairs. One workgroup per row; thread 0 selects.
 */
const ROUTE = ROW + /* wgsl */ `
struct P { R: u32, E: u32, k: u32, G: u32, Gk: u32, limited: u32, sigmoid: u32, normTopk: u32, hasBias: u32, rsf: f32 }
@group(0) @binding(0) var<storage, read> S: array<f32>;
@group(0) @binding(1) var<storage, read> BIAS: array<f32>;
@group(0) @binding(2) var<storage, read_write> PR: array<f32>;
@group(0) @binding(3) var<storage, read_write> BH: array<f32>;
@group(0) @binding(4) var<storage, read_write> BL: array<f32>;
@group(0) @binding(5) var<storage, read_write> IDS: array<u32>;
@group(0) @binding(6) var<storage, read_write> GW: array<f32>;
@group(0) @binding(7) var<uniform> p: P;
const NEG = -3.402823e38;
// a + b as an exact (hi, lo) pair (Knuth's TwoSum).
fn twoSum(a: f32, b: f32) -> vec2f {
  let s = a + b; let bb = s - a;
  return vec2f(s, (a - (s - bb)) + (b - bb));
}
fn gt(a: vec2f, b: vec2f) -> bool { return a.x > b.x || (a.x == b.x && a.y > b.y); }
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.R) { return; }
  let o = r * p.E;
  if (p.sigmoid != 0u) {
    for (var e = li; e < p.E; e += 64u) { PR[o + e] = 1.0 / (1.0 + exp(-S[o + e])); }
  } else {
    var mx = -3.402823e38;
    for (var e = li; e < p.E; e += 64u) { mx = max(mx, S[o + e]); }
    mx = reduceMax(li, mx);
    var s = 0.0;
    for (var e = li; e < p.E; e += 64u) { let x = exp(S[o + e] - mx); PR[o + e] = x; s += x; }
    let inv = 1.0 / reduceSum(li, s);
    for (var e = li; e < p.E; e += 64u) { PR[o + e] *= inv; }
  }
  storageBarrier();
  workgroupBarrier();
  if (li != 0u) { return; }
  for (var e = 0u; e < p.E; e++) {
    var v = vec2f(PR[o + e], 0.0);
    if (p.hasBias != 0u) { v = twoSum(PR[o + e], BIAS[e]); }
    BH[o + e] = v.x; BL[o + e] = v.y;
  }
  if (p.limited != 0u) {
    let per = p.E / p.G;
    var gs: array<vec2f, 64>;
    var keep: array<u32, 64>;
    for (var g = 0u; g < p.G; g++) {
      var m1 = vec2f(NEG, 0.0); var m2 = vec2f(NEG, 0.0);
      for (var j = 0u; j < per; j++) {
        let v = vec2f(BH[o + g * per + j], BL[o + g * per + j]);
        if (gt(v, m1)) { m2 = m1; m1 = v; } else if (gt(v, m2)) { m2 = v; }
      }
      if (p.hasBias != 0u && m2.x > NEG) {
        let t = twoSum(m1.x, m2.x);
        gs[g] = twoSum(t.x, t.y + m1.y + m2.y);
      } else if (p.hasBias != 0u) { gs[g] = vec2f(NEG, 0.0); } else { gs[g] = m1; }
      keep[g] = 0u;
    }
    for (var q = 0u; q < p.Gk; q++) {
      var best = p.G;
      for (var g = 0u; g < p.G; g++) { if (keep[g] == 0u && (best == p.G || gt(gs[g], gs[best]))) { best = g; } }
      keep[best] = 1u;
    }
    for (var g = 0u; g < p.G; g++) {
      if (keep[g] == 0u) { for (var j = 0u; j < per; j++) { BH[o + g * per + j] = NEG; BL[o + g * per + j] = 0.0; } }
    }
  }
  for (var q = 0u; q < p.k; q++) {
    var best = 0u;
    for (var e = 1u; e < p.E; e++) { if (gt(vec2f(BH[o + e], BL[o + e]), vec2f(BH[o + best], BL[o + best]))) { best = e; } }
    IDS[r * p.k + q] = best;
    BH[o + best] = NEG; BL[o + best] = 0.0;
  }
  var s = 0.0;
  for (var j = 0u; j < p.k; j++) { let w = PR[o + IDS[r * p.k + j]]; GW[r * p.k + j] = w; s = s + w; }
  let normalise = (p.sigmoid != 0u || p.normTopk != 0u) && p.k > 1u;
  for (var j = 0u; j < p.k; j++) {
    var v = GW[r * p.k + j];
    if (normalise) { v = v / s; }
    GW[r * p.k + j] = v * p.rsf;
  }
}
`;

/** Hh[hoff + t] = Hh[hoff + t] + M[t] for t < n (the MoE output into the residual). Bindings M, Hh. */
const COMBINE = ELT + /* wgsl */ `
struct P { n: u32, hoff: u32 }
@group(0) @binding(0) var<storage, read> M: array<f32>;
@group(0) @binding(1) var<storage, read_write> Hh: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = eltIndex(wg, ng, li);
  if (t >= p.n) { return; }
  Hh[p.hoff + t] = Hh[p.hoff + t] + M[t];
}
`;

/**
 * PK[slot] = argmax of L[off .. off + n) (first index on ties, as sampling.ts argmax); when tok ≠ 0
 * also T[1] = it (the draft token of a speculative step's verify rows). Bindings L, PK, T. One
 * 64-thread workgroup.
 */
const ARGMAX = /* wgsl */ `
struct P { n: u32, off: u32, slot: u32, tok: u32 }
@group(0) @binding(0) var<storage, read> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> PK: array<i32>;
@group(0) @binding(2) var<storage, read_write> T: array<i32>;
@group(0) @binding(3) var<uniform> p: P;
var<workgroup> bv: array<f32, 64>;
var<workgroup> bi: array<u32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) li: u32) {
  var v = -3.402823e38; var idx = 4294967295u;
  for (var j = li; j < p.n; j += 64u) {
    let x = L[p.off + j];
    if (idx == 4294967295u || x > v) { v = x; idx = j; }
  }
  bv[li] = v; bi[li] = idx;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (li < s) {
      let ov = bv[li + s]; let oi = bi[li + s];
      if (oi != 4294967295u && (bi[li] == 4294967295u || ov > bv[li] || (ov == bv[li] && oi < bi[li]))) { bv[li] = ov; bi[li] = oi; }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    PK[p.slot] = i32(bi[0]);
    if (p.tok != 0u) { T[1] = i32(bi[0]); }
  }
}
`;

/** The decode engine's pipelines, by name (merged into the backend's shader table). */
export const DECODE_SHADERS: Record<string, string> = {
  decEmbed: EMBED, decNorm: NORM, decLinear: linear(false), decLinearMasked: linear(true), decGateUp: GATEUP,
  decRope: ROPE, decCopy: COPY, decAttn: ATTN, decRoute: ROUTE, decCombine: COMBINE, decArgmax: ARGMAX,
};
