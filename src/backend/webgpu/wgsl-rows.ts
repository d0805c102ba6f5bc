/**
 * WGSL for the webgpu backend's row and elementwise kernels, with the semantics of the registry's
 * Kernels (src/backend/registry.ts) and the ts reference (src/backend/ts.ts).
 *
 * Contract:
 * - Row kernels (RMSNorm, its backward, softmax, its backward) run one 64-thread workgroup per row,
 *   reducing through workgroup memory; the row index is wg.x + wg.y·(groups in x), so more than
 *   65535 rows dispatch as a 2-D grid.
 * - Elementwise kernels (SiLU·mul, its backward, AddInto, AdamW) run one thread per element over a
 *   2-D grid of 256-thread groups (index = (wg.y·groups_x + wg.x)·256 + local).
 * - Softmax of a row whose entries are all −∞ (or below −3.4e38) is all zeros, as in ts.
 * - RowsAxpy is serial over i for each column when destination rows repeat (same order of additions
 *   as ts), parallel over (i, column) when they are distinct.
 * - Every binding is used by its shader (layouts are 'auto'); the uniform is the last binding.
 */
/** Sum and max over a 64-thread workgroup through workgroup memory (every thread gets the result). */
export const WG_REDUCE_WGSL = /* wgsl */ `
var<workgroup> red: array<f32, 64>;
fn reduceSum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) { if (li < s) { red[li] += red[li + s]; } workgroupBarrier(); }
  let r = workgroupUniformLoad(&red[0]);
  workgroupBarrier();
  return r;
}
fn reduceMax(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) { if (li < s) { red[li] = max(red[li], red[li + s]); } workgroupBarrier(); }
  let r = workgroupUniformLoad(&red[0]);
  workgroupBarrier();
  return r;
}
`;

export const ROW_WGSL = WG_REDUCE_WGSL + /* wgsl */ `
fn rowOf(wg: vec3u, n: vec3u) -> u32 { return wg.x + wg.y * n.x; }
`;

/** out = x·rsqrt(mean(x²)+eps)·w per row; rstd per row. Bindings X, W, O, R, uniform. */
export const RMSNORM_WGSL = ROW_WGSL + /* wgsl */ `
struct P { rows: u32, cols: u32, eps: f32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<storage, read_write> R: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.rows) { return; }
  let o = r * p.cols;
  var ss = 0.0;
  for (var j = li; j < p.cols; j += 64u) { let v = X[o + j]; ss += v * v; }
  let rs = 1.0 / sqrt(reduceSum(li, ss) / f32(p.cols) + p.eps);
  for (var j = li; j < p.cols; j += 64u) { O[o + j] = X[o + j] * rs * W[j]; }
  if (li == 0u) { R[r] = rs; }
}
`;

/** gradX per row of the RMSNorm backward. Bindings X, W, R, GO, GX, uniform. */
export const RMSNORM_BX_WGSL = ROW_WGSL + /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> R: array<f32>;
@group(0) @binding(3) var<storage, read> GO: array<f32>;
@group(0) @binding(4) var<storage, read_write> GX: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.rows) { return; }
  let o = r * p.cols;
  let rs = R[r];
  var d = 0.0;
  for (var j = li; j < p.cols; j += 64u) { d += GO[o + j] * W[j] * X[o + j]; }
  let c = reduceSum(li, d) * rs * rs / f32(p.cols);
  for (var j = li; j < p.cols; j += 64u) { GX[o + j] = rs * (GO[o + j] * W[j] - X[o + j] * c); }
}
`;

/** gradW[j] += Σ_r gradOut·x·rstd, one thread per column. Bindings X, R, GO, GW, uniform. */
export const RMSNORM_BW_WGSL = /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read> R: array<f32>;
@group(0) @binding(2) var<storage, read> GO: array<f32>;
@group(0) @binding(3) var<storage, read_write> GW: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < p.rows; r++) { s += GO[r * p.cols + j] * X[r * p.cols + j] * R[r]; }
  GW[j] += s;
}
`;

/** Row softmax. Bindings X, O, uniform. */
export const SOFTMAX_WGSL = ROW_WGSL + /* wgsl */ `
struct P { rows: u32, cols: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> O: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.rows) { return; }
  let o = r * p.cols;
  var mx = -3.402823e38;
  for (var j = li; j < p.cols; j += 64u) { mx = max(mx, X[o + j]); }
  mx = reduceMax(li, mx);
  if (mx <= -3.402823e38) {
    for (var j = li; j < p.cols; j += 64u) { O[o + j] = 0.0; }
    return;
  }
  var s = 0.0;
  for (var j = li; j < p.cols; j += 64u) { let e = exp(X[o + j] - mx); O[o + j] = e; s += e; }
  let inv = 1.0 / reduceSum(li, s);
  for (var j = li; j < p.cols; j += 64u) { O[o + j] *= inv; }
}
`;

/** gradIn = scale·p·(gradOut − Σ p·gradOut) per row. Bindings Pr, GO, GI, uniform. */
export const SOFTMAX_B_WGSL = ROW_WGSL + /* wgsl */ `
struct P { rows: u32, cols: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> Pr: array<f32>;
@group(0) @binding(1) var<storage, read> GO: array<f32>;
@group(0) @binding(2) var<storage, read_write> GI: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= p.rows) { return; }
  let o = r * p.cols;
  var d = 0.0;
  for (var j = li; j < p.cols; j += 64u) { d += Pr[o + j] * GO[o + j]; }
  let dot = reduceSum(li, d);
  for (var j = li; j < p.cols; j += 64u) { GI[o + j] = p.scale * Pr[o + j] * (GO[o + j] - dot); }
}
`;

const ELT = /* wgsl */ `
fn eltIndex(wg: vec3u, n: vec3u, li: u32) -> u32 { return (wg.y * n.x + wg.x) * 256u + li; }
`;

/** out = silu(g)·u. Bindings G, U, O, uniform. */
export const SILUMUL_WGSL = ELT + /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = eltIndex(wg, ng, li);
  if (i >= p.n) { return; }
  let z = G[i];
  O[i] = (z / (1.0 + exp(-z))) * U[i];
}
`;

/** SiLU·mul backward. Bindings G, U, GO, GG, GU, uniform. */
export const SILUMUL_B_WGSL = ELT + /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read> G: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> GO: array<f32>;
@group(0) @binding(3) var<storage, read_write> GG: array<f32>;
@group(0) @binding(4) var<storage, read_write> GU: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = eltIndex(wg, ng, li);
  if (i >= p.n) { return; }
  let z = G[i];
  let s = 1.0 / (1.0 + exp(-z));
  GU[i] = GO[i] * z * s;
  GG[i] = GO[i] * U[i] * s * (1.0 + z * (1.0 - s));
}
`;

/** dst += src. Bindings D, S, uniform. */
export const ADDINTO_WGSL = ELT + /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read_write> D: array<f32>;
@group(0) @binding(1) var<storage, read> S: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = eltIndex(wg, ng, li);
  if (i >= p.n) { return; }
  D[i] += S[i];
}
`;

/** AdamW with f32 moments, in place. Bindings W, G, M, V, uniform. */
export const ADAMW_WGSL = ELT + /* wgsl */ `
struct P { n: u32, beta1: f32, beta2: f32, eps: f32, stepSize: f32, decay: f32, invBc2Sqrt: f32 }
@group(0) @binding(0) var<storage, read_write> W: array<f32>;
@group(0) @binding(1) var<storage, read> G: array<f32>;
@group(0) @binding(2) var<storage, read_write> M: array<f32>;
@group(0) @binding(3) var<storage, read_write> V: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = eltIndex(wg, ng, li);
  if (i >= p.n) { return; }
  let g = G[i];
  let m = p.beta1 * M[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * V[i] + (1.0 - p.beta2) * g * g;
  M[i] = m;
  V[i] = v;
  W[i] = W[i] * p.decay - p.stepSize * m / (sqrt(v) * p.invBc2Sqrt + p.eps);
}
`;

/** Partial sums of x² per 1024-element block (summed in double by the caller). Bindings X, O, uniform. */
export const SUMSQ_WGSL = ROW_WGSL + /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> O: array<f32>;
@group(0) @binding(2) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = rowOf(wg, ng);
  let start = b * 1024u;
  var s = 0.0;
  for (var j = li; j < 1024u; j += 64u) { let i = start + j; if (i < p.n) { let v = X[i]; s += v * v; } }
  let t = reduceSum(li, s);
  if (li == 0u) { O[b] = t; }
}
`;

/** dst row dr[i] += sc[i]·src row sr[i]. Bindings D, S, DR, SR, SC, uniform (flags say which lists are real). */
export const ROWSAXPY_WGSL = /* wgsl */ `
struct P { count: u32, D: u32, hasDst: u32, hasSrc: u32, hasScale: u32, serial: u32 }
@group(0) @binding(0) var<storage, read_write> Dst: array<f32>;
@group(0) @binding(1) var<storage, read> Src: array<f32>;
@group(0) @binding(2) var<storage, read> DR: array<i32>;
@group(0) @binding(3) var<storage, read> SR: array<i32>;
@group(0) @binding(4) var<storage, read> SC: array<f32>;
@group(0) @binding(5) var<uniform> p: P;
fn one(i: u32, j: u32) {
  var d = i; var s = i; var a = 1.0;
  if (p.hasDst != 0u) { d = u32(DR[i]); }
  if (p.hasSrc != 0u) { s = u32(SR[i]); }
  if (p.hasScale != 0u) { a = SC[i]; }
  Dst[d * p.D + j] += a * Src[s * p.D + j];
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = (wg.y * ng.x + wg.x) * 256u + li;
  if (p.serial != 0u) {
    if (t >= p.D) { return; }
    for (var i = 0u; i < p.count; i++) { one(i, t); }
  } else {
    if (t >= p.count * p.D) { return; }
    one(t / p.D, t % p.D);
  }
}
`;
