/**
 * Decoding with bf16 weights: batch-1 decode reads every weight once per token, so on a CPU it is
 * bound by memory bandwidth, and bfloat16 weights halve the bytes. `withBf16Weights(model)` gives
 * a model whose inference linears (projections, experts, MTP projection, output heads; not the
 * router) multiply f32 activations by bf16 copies of the weights — widened exactly to f32 inside
 * the native `gemvBf16` kernel, f32 products and sums — for decode passes (any row count: a
 * batched step of many sequences uses the same weights as one row alone) and for other inputs of
 * ≤ `maxRows` rows; larger ones keep the f32 weights and GEMM. `Generation` applies it to decode
 * steps only (prefill stays f32). Weights are rounded to nearest-even
 * bf16 once, on first use, and held beside the f32 ones (+50% weight memory).
 *
 * This changes the computation (weights rounded to bf16, as DeepSeek's own bf16 checkpoints
 * are), so logits move by ~1e-3 relative; greedy output usually, not always, matches f32.
 * Needs the native backend (node); without it the model is returned unchanged, with a reason.
 */
import { Tensor } from '../autograd/tensor.js';
import { needsGrad } from '../autograd/tape.js';
import { getBackendByName } from '../backend/registry.js';
import type { NativeBackend } from '../backend/native-node.js';
import { encodeBf16 } from '../fp8/codec.js';
import * as op from '../ops/index.js';
import type { Model } from './generate.js';
import type { RowsLinear } from '../model/decode.js';

export interface Bf16Options {
  /** Inputs with at most this many rows use the bf16 weights (default 4). */
  maxRows?: number;
}

/**
 * The bf16 decode linear by itself (for any model whose forward takes a `linear` option, e.g.
 * `denseForward`), or null and why not (no native backend).
 */
export function bf16Linear(opts: Bf16Options = {}): { linear: ((x: Tensor, w: Tensor) => Tensor) | null; rowsLinear: RowsLinear | null; note: string } {
  const native = getBackendByName('native') as NativeBackend | undefined;
  const gemv = native?.addon.gemvBf16;
  if (!native || !gemv) return { linear: null, rowsLinear: null, note: 'bf16 decode weights need the native backend (not loaded): using f32 weights' };
  const maxRows = Math.max(1, Math.floor(opts.maxRows ?? 4));
  const copies = new WeakMap<Tensor, Uint16Array>();
  const bf16Of = (w: Tensor): Uint16Array => {
    let wb = copies.get(w);
    if (!wb) { wb = encodeBf16(w.f32); copies.set(w, wb); }
    return wb;
  };
  const linear = (x: Tensor, w: Tensor): Tensor => {
    const [outF, inF] = w.shape as [number, number];
    const rows = x.size / inF;
    if (rows > maxRows || w.rank !== 2 || x.shape[x.rank - 1] !== inF || needsGrad(x, w)) return op.linear(x, w);
    const out = new Float32Array(rows * outF);
    gemv.call(native.addon, x.f32, bf16Of(w), out, rows, outF, inF);
    return new Tensor(out, [...x.shape.slice(0, -1), outF]);
  };
  // Decode passes' rows (RowDecoder): caller-owned output, no Tensor per call. Every row of a
  // pass uses the bf16 weights whatever the row count (a batched decode step of many sequences
  // must compute each row as that row alone; gemvBf16 is row-exact for any m). The native decode
  // engine reads the same bf16 copies, for any row count too.
  const rowsLinear: RowsLinear = Object.assign((x: Float32Array, rows: number, w: Tensor, out: Float32Array): void => {
    const [outF, inF] = w.shape as [number, number];
    gemv.call(native.addon, x, bf16Of(w), out, rows, outF, inF);
  }, { engine: { weightOf: bf16Of, maxRows: Infinity } });
  return { linear, rowsLinear, note: `bf16 decode weights (native gemvBf16 for decode rows and inputs of ≤ ${maxRows} rows; f32 for longer prefill inputs)` };
}

/** The model with bf16 decode weights, or the same model and why not (no native backend). */
export function withBf16Weights(model: Model, opts: Bf16Options = {}): { model: Model; note: string } {
  const { linear, rowsLinear, note } = bf16Linear(opts);
  return linear && rowsLinear ? { model: { ...model, linear, rowsLinear }, note } : { model, note };
}
