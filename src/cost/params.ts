/**
 * Exact parameter counts from an architecture config: total, activated per token, embedding and
 * head, and the MTP module (unique, as stored in the HF checkpoint, activated). Works for
 * DeepSeek-V3/V2 configs (MLA + DeepSeekMoE, `model/config.ts`) and for dense GQA Llama configs
 * (`DenseConfig`). Counts every tensor of the HF checkpoint: projections, norms, router weight and
 * `e_score_correction_bias`. Browser-safe.
 */
import { type DeepSeekConfig, isMoeLayer } from '../model/config.js';

/** A dense decoder with grouped-query attention and SwiGLU (Llama-3 style). */
export interface DenseConfig {
  modelType: 'llama';
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
}

/** Any architecture the cost meter understands. */
export type ArchConfig = DeepSeekConfig | DenseConfig;

export const isDense = (c: ArchConfig): c is DenseConfig => c.modelType === 'llama';

/** Parses an HF LlamaForCausalLM config.json (the keys the meter needs); throws naming bad keys. */
export function parseDenseConfig(json: Record<string, unknown>): DenseConfig {
  const bad: string[] = [];
  const int = (k: string, d?: number): number => {
    const v = json[k] ?? d;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) { bad.push(`${k} must be a positive integer, got ${JSON.stringify(v)}`); return 1; }
    return v;
  };
  const heads = int('num_attention_heads');
  const hidden = int('hidden_size');
  const c: DenseConfig = {
    modelType: 'llama', vocabSize: int('vocab_size'), hiddenSize: hidden, intermediateSize: int('intermediate_size'),
    numHiddenLayers: int('num_hidden_layers'), numAttentionHeads: heads, numKeyValueHeads: int('num_key_value_heads', heads),
    headDim: int('head_dim', Math.floor(hidden / heads)), tieWordEmbeddings: json.tie_word_embeddings === true,
    maxPositionEmbeddings: int('max_position_embeddings', 4096),
  };
  if (bad.length === 0 && c.numAttentionHeads % c.numKeyValueHeads) bad.push(`num_attention_heads (${heads}) must be divisible by num_key_value_heads (${c.numKeyValueHeads})`);
  if (bad.length) throw new Error(`config: ${bad.join('; ')}`);
  return c;
}

/** Parameters of one decoder layer, split by what a token activates. */
export interface LayerParams {
  /** Attention projections + their norms (MLA: q_a/q_b or q, kv_a, kv_b, o, q_a/kv_a norms). */
  attention: number;
  /** input_layernorm + post_attention_layernorm. */
  norms: number;
  /** Dense SwiGLU (0 in MoE layers). */
  denseFfn: number;
  /** Shared experts (all active). */
  shared: number;
  /** All routed experts. */
  routed: number;
  /** Routed experts one token activates (k of E). */
  routedActive: number;
  /** Router weight (+ correction bias). */
  gate: number;
}

/** The parameter report. `total` = main model (what "671B" means); MTP is separate. */
export interface ParamCounts {
  total: number;
  /** Parameters one token of the main model touches (embedding row counted, k of E experts). */
  active: number;
  embedding: number;
  head: number;
  /** Sum over layers, split as in LayerParams. */
  attention: number;
  denseFfn: number;
  shared: number;
  routed: number;
  routedActive: number;
  gate: number;
  norms: number;
  /** Multi-token prediction modules (all depths). */
  mtp: {
    /** MTP-only tensors: eh_proj, enorm, hnorm, shared_head.norm, its decoder layer(s). */
    unique: number;
    /** As stored in the HF checkpoint: unique + the copies of embed_tokens and shared_head.head. */
    stored: number;
    /** Unique parameters one token activates (k of E experts). */
    active: number;
  };
  /** total + mtp.stored: the size of the HF checkpoint (685B for V3). */
  totalWithMtp: number;
}

/** Parameters of decoder layer `layer` (MTP layers use indices ≥ numHiddenLayers). */
export function layerParams(c: ArchConfig, layer: number): LayerParams {
  const H = c.hiddenSize;
  if (isDense(c)) {
    const attention = H * c.headDim * (c.numAttentionHeads * 2 + c.numKeyValueHeads * 2);
    return { attention, norms: 2 * H, denseFfn: 3 * H * c.intermediateSize, shared: 0, routed: 0, routedActive: 0, gate: 0 };
  }
  const nh = c.numAttentionHeads;
  const dq = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const q = c.qLoraRank === null ? H * nh * dq : H * c.qLoraRank + c.qLoraRank + c.qLoraRank * nh * dq;
  const kv = H * (c.kvLoraRank + c.qkRopeHeadDim) + c.kvLoraRank + c.kvLoraRank * nh * (c.qkNopeHeadDim + c.vHeadDim);
  const attention = q + kv + nh * c.vHeadDim * H;
  const out: LayerParams = { attention, norms: 2 * H, denseFfn: 0, shared: 0, routed: 0, routedActive: 0, gate: 0 };
  if (!isMoeLayer(c, layer)) { out.denseFfn = 3 * H * c.intermediateSize; return out; }
  const expert = 3 * H * c.moeIntermediateSize;
  out.shared = c.nSharedExperts * expert;
  out.routed = c.nRoutedExperts * expert;
  out.routedActive = c.numExpertsPerTok * expert;
  out.gate = c.nRoutedExperts * H + (c.topkMethod === 'noaux_tc' ? c.nRoutedExperts : 0);
  return out;
}

const layerTotal = (p: LayerParams): number => p.attention + p.norms + p.denseFfn + p.shared + p.routed + p.gate;
const layerActive = (p: LayerParams): number => p.attention + p.norms + p.denseFfn + p.shared + p.routedActive + p.gate;

/** Exact parameter counts of `c`. */
export function countParams(c: ArchConfig): ParamCounts {
  const H = c.hiddenSize;
  const embedding = c.vocabSize * H;
  const head = c.tieWordEmbeddings ? 0 : c.vocabSize * H;
  const sums = { attention: 0, denseFfn: 0, shared: 0, routed: 0, routedActive: 0, gate: 0, norms: H };
  let total = embedding + head + H; // + final norm
  let active = H + head + H; // one embedding row, the head, the final norm
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const p = layerParams(c, l);
    for (const k of ['attention', 'denseFfn', 'shared', 'routed', 'routedActive', 'gate', 'norms'] as const) sums[k] += p[k];
    total += layerTotal(p);
    active += layerActive(p);
  }
  const mtp = { unique: 0, stored: 0, active: 0 };
  const depth = isDense(c) ? 0 : c.numNextnPredictLayers;
  for (let k = 0; k < depth; k++) {
    const p = layerParams(c, c.numHiddenLayers + k);
    const extra = 2 * H * H + 3 * H; // eh_proj [H, 2H]; enorm, hnorm, shared_head.norm
    mtp.unique += layerTotal(p) + extra;
    mtp.active += layerActive(p) + extra;
    mtp.stored += layerTotal(p) + extra + embedding + (c.tieWordEmbeddings ? 0 : c.vocabSize * H);
  }
  return { total, active, embedding, head, ...sums, mtp, totalWithMtp: total + mtp.stored };
}

/** Dense presets (values of meta-llama/Llama-3.1-405B config.json). */
export const densePresets: Record<string, DenseConfig> = {
  'llama-3.1-405b': {
    modelType: 'llama', vocabSize: 128256, hiddenSize: 16384, intermediateSize: 53248, numHiddenLayers: 126,
    numAttentionHeads: 128, numKeyValueHeads: 8, headDim: 128, tieWordEmbeddings: false, maxPositionEmbeddings: 131072,
  },
};
