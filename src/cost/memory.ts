/**
 * Memory per training recipe: model/optimizer state (weights, FP32 master weights, gradients,
 * AdamW moments), cached activations per token per layer with and without DeepSeek-style
 * recomputation, and KV-cache bytes per token for MLA vs its MHA/GQA equivalents.
 *
 * Recipes (bytes per parameter):
 *   fp32  weights 4, no separate master, grads 4, AdamW m+v 8                 = 16
 *   bf16  weights 2, master 4, grads 4 (FP32 accumulation), m+v 8 (FP32)      = 18
 *   fp8   GEMM weights 1 (E4M3; embedding, head, gate, norms BF16 2), master 4, grads 4,
 *         m+v 4 (BF16 moments, V3 report §3.3.3)                               ≈ 13
 * Activation counts are an estimate from the tensors backward needs (listed in `cachedElements`);
 * the KV numbers are exact. Browser-safe.
 */
import { isMoeLayer } from '../model/config.js';
import { type ArchConfig, countParams, isDense } from './params.js';

export type Recipe = 'fp32' | 'bf16' | 'fp8';
export const recipes: readonly Recipe[] = ['fp32', 'bf16', 'fp8'];

/** Model and optimizer state in bytes (whole model, unsharded). */
export interface StateBytes {
  weights: number;
  master: number;
  grads: number;
  optimizer: number;
  total: number;
  /** total / trained parameters. */
  bytesPerParam: number;
  /** Parameters trained: main model + MTP-unique. */
  params: number;
}

/** Bytes of weights, master weights, gradients and AdamW moments for `recipe`. */
export function stateBytes(c: ArchConfig, recipe: Recipe): StateBytes {
  const p = countParams(c);
  const params = p.total + p.mtp.unique;
  // Kept in BF16 under the FP8 recipe: embedding, head, router, norms.
  const highPrecision = p.embedding + p.head + p.gate + p.norms;
  const weights = recipe === 'fp32' ? 4 * params : recipe === 'bf16' ? 2 * params : (params - highPrecision) * (1 + 4 / (128 * 128)) + 2 * highPrecision;
  const master = recipe === 'fp32' ? 0 : 4 * params;
  const grads = 4 * params;
  const optimizer = (recipe === 'fp8' ? 4 : 8) * params;
  const total = weights + master + grads + optimizer;
  return { weights, master, grads, optimizer, total, bytesPerParam: total / params, params };
}

/** Elements one token caches for backward in one layer, as [name, count, isGemmInput]. */
export function cachedElements(c: ArchConfig, layer: number, recompute: boolean): [string, number, boolean][] {
  const H = c.hiddenSize;
  const out: [string, number, boolean][] = [['attn_norm input (residual)', H, false], ['ffn_norm input (residual)', H, false]];
  if (!recompute) out.push(['attn_norm output', H, true], ['ffn_norm output', H, true]);
  if (isDense(c)) {
    const q = c.numAttentionHeads * c.headDim;
    const kv = 2 * c.numKeyValueHeads * c.headDim;
    out.push(['q, k, v', q + kv, false], ['attention output (o_proj input)', q, true], ['softmax logsumexp', c.numAttentionHeads * 2, false]);
    out.push(['SwiGLU inputs (gate, up)', 2 * c.intermediateSize, false]);
    if (!recompute) out.push(['SwiGLU output (down_proj input)', c.intermediateSize, true]);
    return out;
  }
  const nh = c.numAttentionHeads;
  const dq = c.qkNopeHeadDim + c.qkRopeHeadDim;
  if (c.qLoraRank !== null) out.push(['q_a output', c.qLoraRank, false]);
  out.push(['kv_a output (latent + k_pe)', c.kvLoraRank + c.qkRopeHeadDim, false]);
  out.push(['attention output (o_proj input)', nh * c.vHeadDim, true], ['softmax logsumexp', nh * 2, false]);
  if (!recompute) {
    // DeepSeek recomputes the norms and the MLA up-projections in backward instead of caching them.
    if (c.qLoraRank !== null) out.push(['q_a_layernorm output', c.qLoraRank, true]);
    out.push(['kv_a_layernorm output', c.kvLoraRank, true], ['q, k, v (up-projected, per head)', nh * (2 * dq + c.vHeadDim), false]);
  }
  const moe = isMoeLayer(c, layer);
  const experts = moe ? c.nSharedExperts + c.numExpertsPerTok : 1;
  const width = moe ? c.moeIntermediateSize : c.intermediateSize;
  if (moe) out.push(['router scores', c.nRoutedExperts, false], ['dispatched expert inputs', c.numExpertsPerTok * H, true]);
  out.push(['SwiGLU inputs (gate, up) per expert', experts * 2 * width, false]);
  // V3 caches the SwiGLU inputs and recomputes its output.
  if (!recompute) out.push(['SwiGLU output (down_proj input) per expert', experts * width, true]);
  return out;
}

/** Bytes one token caches in one layer: FP32 everywhere, BF16, or FP8 for GEMM inputs (+1 scale per 128). */
export function activationBytesPerTokenLayer(c: ArchConfig, layer: number, recipe: Recipe, recompute: boolean): number {
  let bytes = 0;
  for (const [, n, gemmInput] of cachedElements(c, layer, recompute)) {
    const per = recipe === 'fp32' ? 4 : recipe === 'fp8' && gemmInput ? 1 + 4 / 128 : 2;
    bytes += n * per;
  }
  return bytes;
}

/** Cached activation bytes per token summed over the main model's layers. */
export function activationBytesPerToken(c: ArchConfig, recipe: Recipe, recompute: boolean): number {
  let b = 0;
  for (let l = 0; l < c.numHiddenLayers; l++) b += activationBytesPerTokenLayer(c, l, recipe, recompute);
  return b;
}

/** KV-cache bytes per token (all layers of the main model) at `bytesPerValue` (BF16 = 2). */
export interface KvCache {
  /** What this architecture caches: MLA latent + RoPE key, or GQA K and V. */
  actual: number;
  /** Full multi-head K and V (what a naive MLA cache, e.g. HF's, stores; MHA for dense). */
  mha: number;
  /** GQA with 8 KV heads at the same head dims, for comparison. */
  gqa8: number;
  /** Values per token per layer of `actual`. */
  valuesPerLayer: number;
}

/** KV-cache sizes; DeepSeek-V3 in BF16 caches 576 values/layer = 70,272 bytes/token. */
export function kvCacheBytesPerToken(c: ArchConfig, bytesPerValue = 2): KvCache {
  const L = c.numHiddenLayers;
  if (isDense(c)) {
    const per = 2 * c.numKeyValueHeads * c.headDim;
    return { actual: per * L * bytesPerValue, mha: 2 * c.numAttentionHeads * c.headDim * L * bytesPerValue, gqa8: 2 * 8 * c.headDim * L * bytesPerValue, valuesPerLayer: per };
  }
  const per = c.kvLoraRank + c.qkRopeHeadDim;
  const headKv = c.qkNopeHeadDim + c.qkRopeHeadDim + c.vHeadDim;
  return { actual: per * L * bytesPerValue, mha: c.numAttentionHeads * headKv * L * bytesPerValue, gqa8: 8 * headKv * L * bytesPerValue, valuesPerLayer: per };
}
