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
import { MAX_DRAFT_TOKENS, type Model } from './generate.js';
import { gemvQ8Ref } from './q8.js';
import { f32RowsLinear, type RowsLinear } from '../model/decode.js';

export interface Q8Options {
  /** Inputs with at most this many rows use the Q8_0 weights (default 4). */
  maxRows?: number;
  /** Q8_0 blocks already at hand (from a GGUF file), keyed by the weight tensor. */
  blocks?: WeakMap<Tensor, Uint8Array>;
}

type GemvQ8 = (x: Float32Array, w: Uint8Array, y: Float32Array, m: number, n: number, k: number) => void;

/** The Q8_0 decode linear (Tensor form and RowDecoder's rows form), and a line saying which kernel runs. */
export function q8Linear(opts: Q8Options = {}): { linear: (x: Tensor, w: Tensor) => Tensor; rowsLinear: RowsLinear; note: string } {
  const native = getBackendByName('native') as NativeBackend | undefined;
  const addon = native?.addon as (NativeBackend['addon'] & { gemvQ8?: GemvQ8 }) | undefined;
  const gemv: GemvQ8 = addon?.gemvQ8 ? addon.gemvQ8.bind(addon) : gemvQ8Ref;
  const maxRows = Math.max(1, Math.floor(opts.maxRows ?? 4));
  const made = new WeakMap<Tensor, Uint8Array>();
  const q8Of = (w: Tensor): Uint8Array => {
    let wq = opts.blocks?.get(w) ?? made.get(w);
    if (!wq) { wq = quantizeQ8_0(w.f32); made.set(w, wq); }
    return wq;
  };
  const linear = (x: Tensor, w: Tensor): Tensor => {
    const [outF, inF] = w.shape as [number, number];
    const rows = x.size / inF;
    if (rows > maxRows || w.rank !== 2 || inF % Q8_0_BLOCK !== 0 || x.shape[x.rank - 1] !== inF || needsGrad(x, w)) return op.linear(x, w);
    const out = new Float32Array(rows * outF);
    gemv(x.f32, q8Of(w), out, rows, outF, inF);
    return new Tensor(out, [...x.shape.slice(0, -1), outF]);
  };
  // Decode steps' rows (RowDecoder): caller-owned output; the native decode engine reads the same blocks.
  const rowsLinear: RowsLinear = Object.assign((x: Float32Array, rows: number, w: Tensor, out: Float32Array): void => {
    const [outF, inF] = w.shape as [number, number];
    if (rows > maxRows || inF % Q8_0_BLOCK !== 0) return f32RowsLinear(x, rows, w, out);
    gemv(x.subarray(0, rows * inF), q8Of(w), out, rows, outF, inF);
  }, { engine: { weightOf: (w: Tensor) => (w.shape[1]! % Q8_0_BLOCK === 0 ? q8Of(w) : w.f32), maxRows } });
  const kernel = addon?.gemvQ8 ? 'native gemvQ8' : 'TypeScript reference gemvQ8 (no native backend: slow)';
  return { linear, rowsLinear, note: `Q8_0 decode weights (${kernel} for inputs of ≤ ${maxRows} rows; f32 for longer)${opts.blocks ? ', blocks as stored in the GGUF file' : ''}` };
}

/** The model with Q8_0 decode weights. */
export function withQ8Weights(model: Model, opts: Q8Options = {}): { model: Model; note: string } {
  const { linear, rowsLinear, note } = q8Linear(opts);
  // Rows past maxRows fall back to f32 weights: a batched decode pass keeps to maxRows rows.
  return { model: { ...model, linear, rowsLinear, decodeExactRows: Math.max(1, Math.floor(opts.maxRows ?? 4)) }, note };
}

/**
 * The model with Q8_0 weights for its MTP layers only, as speculative decoding's drafts
 * (`Model.draftRowsLinear`): the main model keeps its weights, so output is unchanged (every draft
 * is checked) while a draft reads a quarter of the MTP layer's f32 bytes. Without the native
 * backend the model is returned unchanged (the TypeScript Q8_0 reference would be slower).
 */
export function withQ8Drafts(model: Model, opts: Q8Options = {}): { model: Model; note: string } {
  const mtp = new Set<Tensor>();
  for (const m of model.params.mtp) {
    const l = m.layer, a = l.attn;
    for (const t of [m.ehProj, m.head, a.qProj, a.qAProj, a.qBProj, a.kvAProj, a.oProj, l.mlp?.gate, l.mlp?.up, l.mlp?.down,
      l.moe?.shared?.gate, l.moe?.shared?.up, l.moe?.shared?.down, ...(l.moe?.experts.flatMap((e) => [e.gate, e.up, e.down]) ?? [])]) if (t) mtp.add(t);
  }
  const native = getBackendByName('native') as NativeBackend | undefined;
  if (!(native?.addon as { gemvQ8?: unknown } | undefined)?.gemvQ8) return { model, note: 'MTP drafts keep the model\'s weights (Q8_0 drafts need the native backend)' };
  // Engine passes of up to MAX_DRAFT_TOKENS + 1 rows (a chained step's MTP rows) keep the Q8_0
  // weights: a draft need not equal anything, so no row count must fall back to f32 for exactness.
  const q8 = q8Linear({ maxRows: MAX_DRAFT_TOKENS + 1, ...opts }).rowsLinear;
  const ok = (w: Tensor): boolean => mtp.has(w) && w.shape[1]! % Q8_0_BLOCK === 0;
  const draftRowsLinear: RowsLinear = Object.assign((x: Float32Array, rows: number, w: Tensor, out: Float32Array): void => (ok(w) ? q8 : f32RowsLinear)(x, rows, w, out), {
    engine: { weightOf: (w: Tensor) => (ok(w) ? q8.engine!.weightOf(w) : w.f32), maxRows: q8.engine!.maxRows },
  });
  return { model: { ...model, draftRowsLinear }, note: 'MTP drafts with Q8_0 weights' };
}
