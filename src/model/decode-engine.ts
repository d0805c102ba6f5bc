/**
 * The native decode engine as `RowDecoder` uses it: a model's weights handed once to the backend's
 * `DecodeEngineCreate` (f32, or the decode linear's bf16 / Q8_0 copies), then one kernel call per
 * pass — the main model over a few rows, or an MTP layer — instead of ~85–150 kernel calls.
 *
 * Contract:
 * - `engineArrays` lays the model out in the order native/src/decode_addon.cc reads it (checked
 *   there against the config: a wrong size is a RangeError, never a bad read).
 * - An engine is built once per (model parameters, weight form) and reused while every array it
 *   holds is still the model's (a replaced tensor builds a new one); `null` when the active
 *   backend has no engine or the model is outside what it runs.
 * - Same arithmetic as the TypeScript path of `RowDecoder` (model/decode.ts), with row-exact
 *   kernels: a row's result never depends on the other rows of the pass or the thread count.
 * Browser-safe (the engine itself exists on the native and webgpu backends).
 */
import { Tensor } from '../autograd/tensor.js';
import { needsGrad } from '../autograd/tape.js';
import { getBackend, hasKernel, kernel, type EngineArray } from '../backend/registry.js';
import { softmaxScale, type DeepSeekConfig } from './config.js';
import type { LayerParams, MlpParams, ModelParams } from './deepseek.js';

/** How a decode linear stores weights for the engine, and up to how many rows it uses that form. */
export interface EngineWeights {
  /** The array the engine reads for the weight matrix w [out, in]: f32, bf16 bits or Q8_0 blocks. */
  weightOf(w: Tensor): EngineArray;
  /** Passes of more rows than this keep the TypeScript path (where the linear itself uses f32). */
  maxRows: number;
}

/** f32 weights as stored. */
export const f32EngineWeights: EngineWeights = { weightOf: (w) => w.f32, maxRows: Infinity };

/** The engine's most rows per pass (native/src/decode_addon.cc kMaxRows); larger passes take the TypeScript path. */
export const ENGINE_MAX_ROWS = 4096;

/** The engine's most routed experts per layer (native/src/decode_engine.h kMaxExperts). */
const MAX_EXPERTS = 1024;

/** Config scalars, layer kinds (1 = MoE) and weight arrays in the engine's order. */
export function engineArrays(p: ModelParams, cfg: DeepSeekConfig, ew: EngineWeights): { cfg: Float64Array; kinds: Int32Array; arrays: Array<EngineArray | null> } {
  const E = cfg.nRoutedExperts, G = cfg.nGroup, Gk = cfg.topkGroup;
  const limited = cfg.topkMethod !== 'greedy' && G > 1 && Gk < G;
  const c = Float64Array.of(cfg.hiddenSize, cfg.vocabSize, p.layers.length, cfg.numAttentionHeads, cfg.qkNopeHeadDim, cfg.qkRopeHeadDim, cfg.vHeadDim,
    cfg.kvLoraRank, cfg.qLoraRank ?? 0, E, E > 0 ? cfg.numExpertsPerTok : 0, Math.max(1, G), Math.max(1, Gk), limited ? 1 : 0,
    cfg.scoringFunc === 'sigmoid' ? 1 : 0, cfg.normTopkProb ? 1 : 0, cfg.routedScalingFactor, cfg.rmsNormEps, softmaxScale(cfg), p.mtp.length);
  const arrays: Array<EngineArray | null> = [];
  const w = (t: Tensor | null): void => { arrays.push(t ? ew.weightOf(t) : null); };
  const f = (t: Tensor | null): void => { arrays.push(t ? t.f32 : null); };
  const mlp = (m: MlpParams | null): void => { w(m?.gate ?? null); w(m?.up ?? null); w(m?.down ?? null); };
  const layer = (l: LayerParams): void => {
    const a = l.attn;
    f(l.attnNorm); f(l.ffnNorm);
    w(a.qProj); w(a.qAProj); f(a.qANorm); w(a.qBProj);
    w(a.kvAProj); f(a.kvANorm); f(a.kvBProj); w(a.oProj);
    if (l.moe) {
      f(l.moe.router); f(l.moe.bias); mlp(l.moe.shared);
      for (const e of l.moe.experts) mlp(e);
    } else mlp(l.mlp);
  };
  f(p.embed); f(p.norm); w(p.head);
  p.layers.forEach(layer);
  for (const m of p.mtp) {
    f(m.embed); f(m.enorm); f(m.hnorm); w(m.ehProj); f(m.headNorm); w(m.head);
    layer(m.layer);
  }
  const kinds = Int32Array.from([...p.layers, ...p.mtp.map((m) => m.layer)], (l) => (l.moe ? 1 : 0));
  return { cfg: c, kinds, arrays };
}

/** A built engine, the backend that built it and the arrays it holds. */
interface Built { handle: object | null; backend: string; arrays: Array<EngineArray | null> }
const built = new WeakMap<EngineWeights, WeakMap<ModelParams, Built>>();

/**
 * The engine for these parameters and weight form on the active backend, or null (no engine kernel,
 * or a model or weight form it does not run). An engine belongs to the backend that built it.
 */
export function decodeEngine(p: ModelParams, cfg: DeepSeekConfig, ew: EngineWeights): object | null {
  if (!hasKernel('DecodeEngineCreate') || cfg.nRoutedExperts > MAX_EXPERTS) return null;
  const lay = engineArrays(p, cfg, ew);
  let byParams = built.get(ew);
  if (!byParams) built.set(ew, (byParams = new WeakMap()));
  const old = byParams.get(p);
  const backend = getBackend().name;
  if (old && old.backend === backend && old.arrays.length === lay.arrays.length && old.arrays.every((a, i) => a === lay.arrays[i])) return old.handle;
  const handle = kernel('DecodeEngineCreate')(lay.cfg, lay.kinds, lay.arrays);
  byParams.set(p, { handle, backend, arrays: lay.arrays });
  return handle;
}

/**
 * A Tensor-level inference linear (ForwardOptions.linear, denseForward's `linear`) on the engine's
 * product for inputs of at most `ew.maxRows` rows (f32 if Infinity: 8), with the weights `ew` gives;
 * anything else (more rows, gradients, no engine kernel) goes to `fallback`. Decode steps of
 * models the engine does not run whole (the dense model) get its kernels this way.
 */
export function engineLinear(ew: EngineWeights, fallback: (x: Tensor, w: Tensor) => Tensor): (x: Tensor, w: Tensor) => Tensor {
  const maxRows = Number.isFinite(ew.maxRows) ? ew.maxRows : 8;
  return (x, w) => {
    const [outF, inF] = w.shape as [number, number];
    const rows = x.size / inF;
    if (rows > maxRows || w.rank !== 2 || x.shape[x.rank - 1] !== inF || needsGrad(x, w) || !hasKernel('DecodeMatRows')) return fallback(x, w);
    const y = new Float32Array(rows * outF);
    kernel('DecodeMatRows')(ew.weightOf(w), outF, inF, x.f32, rows, y);
    return new Tensor(y, [...x.shape.slice(0, -1), outF]);
  };
}
