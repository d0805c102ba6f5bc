/**
 * WGSL for the webgpu backend's fused output head (registry.ts LinearCrossEntropy): the
 * cross-entropy rows of a chunk of logits that stay on the device between the logits GEMM and the
 * dX / dW GEMMs (wgsl-gemm.ts), with the semantics of CrossEntropyRows (src/backend/ts-train.ts).
 *
 * Contract:
 * - One 64-thread workgroup per row r of P [rows, V]: L[r] = log Σ_j exp(P[r,j] − max) + max − P[r,y]
 *   (0 for a row whose target is `ignore`); with grad set, P[r, :] becomes (softmax − onehot(y))·inv
 *   (zeros for an ignored row). Targets are range-checked on the host before the job.
 * - Bindings P (read_write), T (i32 targets), L, uniform { rows, V, ignore, inv, grad }.
 */
import { ROW_WGSL } from './wgsl-rows.js';

/** Cross-entropy rows in place (see the contract). */
export const CE_ROWS_WGSL = ROW_WGSL + /* wgsl */ `
struct Q { rows: u32, V: u32, ignore: i32, inv: f32, grad: u32 }
@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@group(0) @binding(1) var<storage, read> T: array<i32>;
@group(0) @binding(2) var<storage, read_write> L: array<f32>;
@group(0) @binding(3) var<uniform> q: Q;
var<workgroup> rowTarget: i32;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = rowOf(wg, ng);
  if (r >= q.rows) { return; }
  let o = r * q.V;
  // Through workgroup memory, so the branch below is uniform (the reductions after it need that).
  if (li == 0u) { rowTarget = T[r]; }
  let y = workgroupUniformLoad(&rowTarget);
  if (y == q.ignore) {
    if (q.grad != 0u) { for (var j = li; j < q.V; j += 64u) { P[o + j] = 0.0; } }
    if (li == 0u) { L[r] = 0.0; }
    return;
  }
  var mx = -3.402823e38;
  for (var j = li; j < q.V; j += 64u) { mx = max(mx, P[o + j]); }
  mx = reduceMax(li, mx);
  var s = 0.0;
  for (var j = li; j < q.V; j += 64u) { s += exp(P[o + j] - mx); }
  let sum = reduceSum(li, s);
  let py = P[o + u32(y)];
  // Every thread has read P[r, y] before any thread writes the row.
  workgroupBarrier();
  if (li == 0u) { L[r] = log(sum) + mx - py; }
  if (q.grad != 0u) {
    let sc = q.inv / sum;
    for (var j = li; j < q.V; j += 64u) {
      var g = exp(P[o + j] - mx) * sc;
      if (j == u32(y)) { g -= q.inv; }
      P[o + j] = g;
    }
  }
}
`;
