/**
 * What a config implies before anything is allocated: the number of parameter elements and
 * tensors `initParams` would create, the largest single tensor, and the bytes that takes — in
 * closed form (no loop over layers or experts), so a hostile `num_hidden_layers: 1e15` costs
 * nothing to size. Browser-safe.
 *
 * Contract:
 * - `modelSize(cfg)` counts exactly the tensors `initParams(cfg)` allocates (MTP modules share the
 *   main embedding and head, so those are counted once); tested against `initParams` itself.
 * - `checkAllocation` throws a {@link ModelSizeError} naming the config, the bytes and the limit
 *   when the model (times `bytesPerElement`) would not fit, or a single tensor is longer than a
 *   typed array may be; callers run it before `initParams`.
 */
import { type DeepSeekConfig } from './config.js';

/** Longest tensor we allocate (elements; 8 GiB of f32) — well below V8's typed-array limit. */
export const MAX_TENSOR_ELEMENTS = 2 ** 31 - 1;
/** Bytes charged per tensor for its JS objects (Tensor, shape, typed-array header). */
export const TENSOR_OVERHEAD_BYTES = 512;

/** A config whose model cannot be allocated within the given limits. */
export class ModelSizeError extends Error {
  override name = 'ModelSizeError';
}

export interface ModelSize {
  /** Parameter elements initParams allocates (f32 each). */
  elements: number;
  /** Tensors it creates. */
  tensors: number;
  /** The largest tensor: which kind and how many elements. */
  largest: { what: string; elements: number };
}

/** Layers in [from, to) that are MoE (closed form of `isMoeLayer`). */
function moeLayers(cfg: DeepSeekConfig, from: number, to: number): number {
  if (cfg.nRoutedExperts <= 0) return 0;
  const a = Math.max(from, cfg.firstKDenseReplace);
  if (a >= to) return 0;
  const f = cfg.moeLayerFreq;
  return Math.floor((to - 1) / f) - Math.floor((a - 1) / f);
}

/** Elements, tensors and the largest tensor of the model `cfg` describes. */
/** 1.23M, 682.6B: a parameter count as people write it. */
function formatCount(n: number): string {
  for (const [div, unit] of [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']] as const) if (n >= div) return `${(n / div).toPrecision(4).replace(/\.?0+$/, '')}${unit}`;
  return String(n);
}

export function modelSize(cfg: DeepSeekConfig): ModelSize {
  const H = cfg.hiddenSize, V = cfg.vocabSize, nh = cfg.numAttentionHeads, dq = cfg.qkNopeHeadDim + cfg.qkRopeHeadDim;
  const q = cfg.qLoraRank;
  const kinds: Array<[string, number]> = [['embed_tokens / lm_head', V * H]];
  // Attention of one layer: [elements, tensors].
  const attn = (q === null ? nh * dq * H : q * H + q + nh * dq * q) + (cfg.kvLoraRank + cfg.qkRopeHeadDim) * H + cfg.kvLoraRank
    + nh * (cfg.qkNopeHeadDim + cfg.vHeadDim) * cfg.kvLoraRank + H * nh * cfg.vHeadDim + 2 * H;
  const attnTensors = (q === null ? 1 : 3) + 4 + 2;
  kinds.push(['attention projection', Math.max(q === null ? nh * dq * H : Math.max(q * H, nh * dq * q), (cfg.kvLoraRank + cfg.qkRopeHeadDim) * H, nh * (cfg.qkNopeHeadDim + cfg.vHeadDim) * cfg.kvLoraRank, H * nh * cfg.vHeadDim)]);
  const dense = 3 * H * cfg.intermediateSize;
  const E = cfg.nRoutedExperts, Im = cfg.moeIntermediateSize, Ns = cfg.nSharedExperts;
  const moe = E * 3 * H * Im + (Ns > 0 ? 3 * H * Ns * Im : 0) + E * H + (cfg.topkMethod === 'noaux_tc' ? E : 0);
  const moeTensors = 3 * E + (Ns > 0 ? 3 : 0) + 1 + (cfg.topkMethod === 'noaux_tc' ? 1 : 0);
  const L = cfg.numHiddenLayers, D = cfg.numNextnPredictLayers;
  const mMain = moeLayers(cfg, 0, L), mMtp = moeLayers(cfg, L, L + D);
  const layers = L + D, moeCount = mMain + mMtp, denseCount = layers - moeCount;
  if (denseCount > 0) kinds.push(['dense FFN', H * cfg.intermediateSize]);
  if (moeCount > 0) kinds.push(['expert FFN', H * Math.max(Im, Ns * Im)], ['router', E * H]);
  if (D > 0) kinds.push(['MTP eh_proj', 2 * H * H]);
  const elements = 2 * V * H + H + layers * attn + denseCount * dense + moeCount * moe + D * (2 * H * H + 3 * H);
  const tensors = 3 + layers * attnTensors + denseCount * 3 + moeCount * moeTensors + D * 4;
  const largest = kinds.reduce((a, b) => (b[1] > a[1] ? b : a));
  return { elements, tensors, largest: { what: largest[0], elements: largest[1] } };
}

/** Human-readable bytes (binary units). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`;
}

/**
 * Throws {@link ModelSizeError} unless the model fits: every tensor within MAX_TENSOR_ELEMENTS and
 * `elements × bytesPerElement + tensors × overhead` within `limitBytes`. `what` names the model in
 * the message (e.g. `--config deepseek-v3`), `purpose` the job (`loading`, `training`).
 */
export function checkAllocation(cfg: DeepSeekConfig, o: { limitBytes: number; bytesPerElement: number; what: string; purpose: string; fix: string }): ModelSize {
  const s = modelSize(cfg);
  if (!(s.largest.elements <= MAX_TENSOR_ELEMENTS)) {
    throw new ModelSizeError(`${o.what}: its ${s.largest.what} tensor would hold ${s.largest.elements.toExponential(2)} elements, over the ${MAX_TENSOR_ELEMENTS}-element limit of one tensor; ${o.fix}`);
  }
  const bytes = s.elements * o.bytesPerElement + s.tensors * TENSOR_OVERHEAD_BYTES;
  if (!(bytes <= o.limitBytes)) {
    throw new ModelSizeError(`${o.what}: ${o.purpose} its ${formatCount(s.elements)} parameters needs ${formatBytes(bytes)}, over the ${formatBytes(o.limitBytes)} limit; ${o.fix}`);
  }
  return s;
}
