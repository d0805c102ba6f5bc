/**
 * Index ops for MoE routing: top-k along the last axis, gather along the last axis, index-select of
 * rows (dispatch) and index-add of rows (combine), each with its gradient.
 */
import { Tensor, fmtShape } from '../autograd/tensor.js';
import { kernel } from '../backend/registry.js';
import { record } from '../autograd/tape.js';

/** The k largest entries of each row (descending; ties keep the lower index first). */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const d = x.shape[x.rank - 1]!;
  if (k < 1 || k > d) throw new Error(`topk: k=${k} outside [1, ${d}]`);
  const idx = new Int32Array((x.size / d) * k);
  const X = x.f32, rows = X.length / d;
  const order = new Int32Array(d);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < d; j++) order[j] = j;
    // Partial selection sort: k is small for routing.
    for (let i = 0; i < k; i++) {
      let best = i;
      for (let j = i + 1; j < d; j++) {
        const a = X[r * d + order[j]!]!, b = X[r * d + order[best]!]!;
        if (a > b || (a === b && order[j]! < order[best]!)) best = j;
      }
      const tmp = order[i]!; order[i] = order[best]!; order[best] = tmp;
      idx[r * k + i] = order[i]!;
    }
  }
  const indices = new Tensor(idx, [...x.shape.slice(0, -1), k], 'i32');
  return { values: gather(x, indices), indices };
}

/** out[..., j] = x[..., idx[..., j]] (idx i32 with x's leading dims). */
export function gather(x: Tensor, idx: Tensor): Tensor {
  const d = x.shape[x.rank - 1]!, k = idx.shape[idx.rank - 1]!;
  const rows = x.size / d;
  if (idx.size / k !== rows) throw new Error(`gather: index ${fmtShape(idx.shape)} does not match ${fmtShape(x.shape)}`);
  const X = x.f32, I = idx.data;
  const out = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) {
    const c = I[r * k + j]!;
    if (!(c >= 0 && c < d)) throw new Error(`gather: index ${c} out of range [0, ${d})`);
    out[r * k + j] = X[r * d + c]!;
  }
  return record(new Tensor(out, idx.shape), 'Gather', [x], (g) => [{
    addInto(gx: Float32Array): void { for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) gx[r * d + I[r * k + j]!]! += g[r * k + j]!; },
  }]);
}

/** Rows of x [N, D] picked by idx [M] -> [M, D]. */
export function indexSelect(x: Tensor, idx: Int32Array): Tensor {
  const [N, D] = x.shape as [number, number];
  const X = x.f32;
  const out = new Float32Array(idx.length * D);
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i]!;
    if (!(r >= 0 && r < N)) throw new Error(`indexSelect: row ${r} out of range [0, ${N})`);
    out.set(X.subarray(r * D, r * D + D), i * D);
  }
  return record(new Tensor(out, [idx.length, D]), 'IndexSelect', [x], (g) => [{
    addInto(gx: Float32Array): void { kernel('RowsAxpy')(gx, idx, g, null, null, idx.length, D); },
  }]);
}

/** base [N, D] with src [M, D] added into rows idx [M] (repeats accumulate). */
export function indexAdd(base: Tensor, idx: Int32Array, src: Tensor): Tensor {
  const [N, D] = base.shape as [number, number];
  if (src.shape[0] !== idx.length || src.shape[1] !== D) throw new Error(`indexAdd: src ${fmtShape(src.shape)} does not fit ${idx.length} rows of ${D}`);
  const out = base.f32.slice();
  const S = src.f32;
  for (let i = 0; i < idx.length; i++) {
    const r = idx[i]!;
    if (!(r >= 0 && r < N)) throw new Error(`indexAdd: row ${r} out of range [0, ${N})`);
    for (let j = 0; j < D; j++) out[r * D + j]! += S[i * D + j]!;
  }
  return record(new Tensor(out, base.shape), 'IndexAdd', [base, src], (g) => {
    const gs = new Float32Array(S.length);
    for (let i = 0; i < idx.length; i++) gs.set(g.subarray(idx[i]! * D, idx[i]! * D + D), i * D);
    return [g, gs];
  });
}

/**
 * base [N, D] plus every srcs[i] [M_i, D] added into rows idxs[i] — the MoE combine of all experts
 * in one op (one copy of base instead of one per expert). With `scales` (one [M_i, 1] tensor per
 * source) row r of source i is multiplied by scales[i][r] first: the gate weights, without a
 * separate product tensor per expert.
 */
export function indexAddMany(base: Tensor, idxs: Int32Array[], srcs: Tensor[], scales?: Tensor[]): Tensor {
  const [N, D] = base.shape as [number, number];
  if (idxs.length !== srcs.length) throw new Error(`indexAddMany: ${idxs.length} index lists for ${srcs.length} sources`);
  if (scales && scales.length !== srcs.length) throw new Error(`indexAddMany: ${scales.length} scale tensors for ${srcs.length} sources`);
  const out = base.f32.slice();
  const axpy = kernel('RowsAxpy');
  srcs.forEach((src, k) => {
    const idx = idxs[k]!;
    if (src.shape[0] !== idx.length || src.shape[1] !== D) throw new Error(`indexAddMany: source ${k} ${fmtShape(src.shape)} does not fit ${idx.length} rows of ${D}`);
    const W = scales ? scales[k]!.f32 : null;
    if (W && W.length !== idx.length) throw new Error(`indexAddMany: scale ${k} has ${W.length} values for ${idx.length} rows`);
    for (let i = 0; i < idx.length; i++) if (!(idx[i]! >= 0 && idx[i]! < N)) throw new Error(`indexAddMany: row ${idx[i]} out of range [0, ${N})`);
    axpy(out, idx, src.f32, null, W, idx.length, D);
  });
  const inputs = scales ? [base, ...srcs, ...scales] : [base, ...srcs];
  return record(new Tensor(out, base.shape), 'IndexAddMany', inputs, (g) => {
    const gSrc = srcs.map((src, k) => {
      if (!src.requiresGrad) return null;
      const idx = idxs[k]!, gs = new Float32Array(src.size);
      axpy(gs, null, g, idx, scales ? scales[k]!.f32 : null, idx.length, D);
      return gs;
    });
    const gScale = !scales ? [] : scales.map((sc, k) => {
      if (!sc.requiresGrad) return null;
      const idx = idxs[k]!, S = srcs[k]!.f32, gw = new Float32Array(idx.length);
      for (let i = 0; i < idx.length; i++) {
        const o = idx[i]! * D;
        let d = 0;
        for (let j = 0; j < D; j++) d += g[o + j]! * S[i * D + j]!;
        gw[i] = d;
      }
      return gw;
    });
    return [g, ...gSrc, ...gScale];
  });
}
