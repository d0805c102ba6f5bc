/**
 * Decoding with Q8_0 weights, the format llama.cpp users run: a quarter of f32's weight bytes per
 * token. `q8Linear()` gives an inference linear (for `Model.linear` / `denseForward`'s `linear`)
 * that multiplies inputs of ≤ `maxRows` rows by Q8_0 weights with the native `gemvQ8` kernel (int8
 * products of Q8_0-quantised activations, as llama.cpp does; reference: q8.ts), or the TypeScript
 * reference without the native backend. Weights come from `blocks` (the Q8_0 blocks a GGUF file
 * held, used as stored) or are quantised once on first use (ggml's rounding, gguf-quant.ts).
 * Longer inputs, weights whose width is not a multiple of 32, and the router keep f32.
 *
 * This changes the computation (weights and activations rounded to 8 bits), so logits move by a
 * measurable amount (docs/gguf.md states it); greedy output may differ from f32.
 */
import { Tensor } from '../autograd/tensor.js';
import { needsGrad } from '../autograd/tape.js';
import { getBackendByName } from '../backend/registry.js';
import type { NativeBackend } from '../backend/native-node.js';
import { Q8_0_BLOCK, quantizeQ8_0 } from '../io/gguf-quant.js';
import * as op from '../ops/index.js';
import type { Model } from './generate.js';
import { gemvQ8Ref } from './q8.js';

export interface Q8Options {
  /** Inputs with at most this many rows use the Q8_0 weights (default 4). */
  maxRows?: number;
  /** Q8_0 blocks already at hand (from a GGUF file), keyed by the weight tensor. */
  blocks?: WeakMap<Tensor, Uint8Array>;
}

type GemvQ8 = (x: Float32Array, w: Uint8Array, y: Float32Array, m: number, n: number, k: number) => void;

/** The Q8_0 decode linear, and a line saying which kernel runs. */
export function q8Linear(opts: Q8Options = {}): { linear: (x: Tensor, w: Tensor) => Tensor; note: string } {
  const native = getBackendByName('native') as NativeBackend | undefined;
  const addon = native?.addon as (NativeBackend['addon'] & { gemvQ8?: GemvQ8 }) | undefined;
  const gemv: GemvQ8 = addon?.gemvQ8 ? addon.gemvQ8.bind(addon) : gemvQ8Ref;
  const maxRows = Math.max(1, Math.floor(opts.maxRows ?? 4));
  const made = new WeakMap<Tensor, Uint8Array>();
  const linear = (x: Tensor, w: Tensor): Tensor => {
    const [outF, inF] = w.shape as [number, number];
    const rows = x.size / inF;
    if (rows > maxRows || w.rank !== 2 || inF % Q8_0_BLOCK !== 0 || x.shape[x.rank - 1] !== inF || needsGrad(x, w)) return op.linear(x, w);
    let wq = opts.blocks?.get(w) ?? made.get(w);
    if (!wq) { wq = quantizeQ8_0(w.f32); made.set(w, wq); }
    const out = new Float32Array(rows * outF);
    gemv(x.f32, wq, out, rows, outF, inF);
    return new Tensor(out, [...x.shape.slice(0, -1), outF]);
  };
  const kernel = addon?.gemvQ8 ? 'native gemvQ8' : 'TypeScript reference gemvQ8 (no native backend: slow)';
  return { linear, note: `Q8_0 decode weights (${kernel} for inputs of ≤ ${maxRows} rows; f32 for longer)${opts.blocks ? ', blocks as stored in the GGUF file' : ''}` };
}

/** The model with Q8_0 decode weights. */
export function withQ8Weights(model: Model, opts: Q8Options = {}): { model: Model; note: string } {
  const { linear, note } = q8Linear(opts);
  // Rows past maxRows fall back to f32 weights: a batched decode pass keeps to maxRows rows.
  return { model: { ...model, linear, decodeExactRows: Math.max(1, Math.floor(opts.maxRows ?? 4)) }, note };
}
