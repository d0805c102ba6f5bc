/**
 * The model configuration: a typed, documented `DeepSeekConfig` (camelCase), the mapping to and
 * from Hugging Face `config.json` keys (DeepseekV3Config / DeepseekV2Config, SPEC.md §1), the
 * validation that names every bad key, the presets as plain data, and the derived quantities the
 * model needs (which layers are MoE, RoPE/YaRN inverse frequencies, softmax scale; SPEC §5.3/5.4).
 *
 * Contract: `parseHFConfig(toHFConfig(c))` deep-equals `c` for every valid config. Unknown HF keys
 * are ignored; missing keys take the HF DeepseekV3Config defaults (V2 behaviour keys take V2
 * defaults when `model_type` is `deepseek_v2`). No `node:*` imports (browser-safe).
 */

/** YaRN context extension (HF `rope_scaling` with `type: "yarn"`), SPEC §5.3. */
export interface YarnScaling {
  type: 'yarn';
  /** Context extension factor f (V3: 40). */
  factor: number;
  /** Context length the model was pre-trained at (V3: 4096). */
  originalMaxPositionEmbeddings: number;
  /** High-frequency boundary in rotations (V3: 32). */
  betaFast: number;
  /** Low-frequency boundary in rotations (V3: 1). */
  betaSlow: number;
  /** HF cos/sin mscale; must equal `mscaleAllDim` (official code has a single mscale). */
  mscale: number;
  /** mscale of the softmax scale: m = 0.1·mscaleAllDim·ln f + 1, scale ×= m² (SPEC §5.4). */
  mscaleAllDim: number;
}

/** Block-scaled FP8 weights of a released checkpoint (HF `quantization_config`), SPEC §9. */
export interface QuantizationConfig {
  fmt: 'e4m3';
  /** [rows, cols] of one weight scale block (V3: [128, 128]). */
  weightBlockSize: [number, number];
  /** Power-of-two scales (`scale_fmt: "ue8m0"`); absent = plain float32 scales. */
  scaleFmt?: 'ue8m0';
}

/** A DeepSeek-V3/V2-style model's architecture. Defaults (`defaultConfig`) are HF DeepseekV3Config's. */
export interface DeepSeekConfig {
  /** Vocabulary size V (129280). */
  vocabSize: number;
  /** Model width H (7168). */
  hiddenSize: number;
  /** SwiGLU width of the dense layers 0..firstKDenseReplace-1 (18432). */
  intermediateSize: number;
  /** SwiGLU width of one routed (and one shared) expert (2048). */
  moeIntermediateSize: number;
  /** Transformer blocks of the main model, MTP layers not included (61). */
  numHiddenLayers: number;
  /** The first k layers use a dense FFN instead of MoE (3). */
  firstKDenseReplace: number;
  /** A layer ≥ firstKDenseReplace is MoE when `layer % moeLayerFreq == 0` (1). */
  moeLayerFreq: number;
  /** Attention heads nh (128); MLA has no separate KV head count. */
  numAttentionHeads: number;
  /** Routed experts E per MoE layer (256); 0 = no MoE layers. */
  nRoutedExperts: number;
  /** Shared experts Ns, always active; fused into one SwiGLU of width Ns·moeIntermediateSize (1). */
  nSharedExperts: number;
  /** Routed experts chosen per token k (8). */
  numExpertsPerTok: number;
  /** Expert groups G for group-limited routing (8). */
  nGroup: number;
  /** Groups kept per token Gk ≤ G (4). */
  topkGroup: number;
  /** Router score: 'sigmoid' (V3) or 'softmax' (V2). */
  scoringFunc: 'sigmoid' | 'softmax';
  /** 'noaux_tc' (V3: correction bias, group score = top-2 sum), 'group_limited_greedy' (V2: group max), 'greedy'. */
  topkMethod: 'noaux_tc' | 'greedy' | 'group_limited_greedy';
  /** Normalise the chosen k weights to sum 1 (V3 true, V2 false). */
  normTopkProb: boolean;
  /** Routed expert weights are multiplied by this (V3 2.5, V2 16). */
  routedScalingFactor: number;
  /** Query low-rank compression rank rq (1536); null = direct q_proj. */
  qLoraRank: number | null;
  /** Compressed KV latent rank rkv (512) — what the MLA cache stores. */
  kvLoraRank: number;
  /** Per-head query/key dims without RoPE dn (128). */
  qkNopeHeadDim: number;
  /** Per-head RoPE dims dr (64); the RoPE key is shared by all heads. */
  qkRopeHeadDim: number;
  /** Per-head value dims dv (128). */
  vHeadDim: number;
  /** RoPE base (10000). */
  ropeTheta: number;
  /** YaRN scaling, or null for plain RoPE. */
  ropeScaling: YarnScaling | null;
  /** Longest context the config declares (4096 default; V3 release 163840). */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon (1e-6). */
  rmsNormEps: number;
  /** Multi-token-prediction depth D: extra layers `numHiddenLayers..+D-1` (0 default; V3 release 1). */
  numNextnPredictLayers: number;
  /** Tie lm_head to the embedding (false; DeepSeek never ties). */
  tieWordEmbeddings: boolean;
  /** HF `model_type`. */
  modelType: 'deepseek_v3' | 'deepseek_v2';
  /** Beginning-of-sequence token id (0), or null. */
  bosTokenId: number | null;
  /** End-of-sequence token id (1), or null; an HF list keeps its first id. */
  eosTokenId: number | null;
  /** FP8 block quantisation of the stored weights, or null. */
  quantization: QuantizationConfig | null;
  /** HF `torch_dtype` of the stored (non-FP8) weights. */
  torchDtype: 'float32' | 'bfloat16' | 'float16';
}

/** HF DeepseekV3Config defaults, camelCase. */
export const defaultConfig: Readonly<DeepSeekConfig> = Object.freeze({
  vocabSize: 129280, hiddenSize: 7168, intermediateSize: 18432, moeIntermediateSize: 2048,
  numHiddenLayers: 61, firstKDenseReplace: 3, moeLayerFreq: 1, numAttentionHeads: 128,
  nRoutedExperts: 256, nSharedExperts: 1, numExpertsPerTok: 8, nGroup: 8, topkGroup: 4,
  scoringFunc: 'sigmoid', topkMethod: 'noaux_tc', normTopkProb: true, routedScalingFactor: 2.5,
  qLoraRank: 1536, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128,
  ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 4096, rmsNormEps: 1e-6,
  numNextnPredictLayers: 0, tieWordEmbeddings: false, modelType: 'deepseek_v3',
  bosTokenId: 0, eosTokenId: 1, quantization: null, torchDtype: 'bfloat16',
} satisfies DeepSeekConfig);

/** A config that failed validation; `problems` lists one message per bad key. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`config: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Largest integer any config key may hold (2^31 - 1). What a config implies in total (bytes to
 * allocate) is checked separately by `model/size.ts` before anything is allocated.
 */
export const MAX_CONFIG_INT = 2 ** 31 - 1;
/** Most layers (main or MTP) a config may declare; code that walks layers stays fast. */
export const MAX_LAYERS = 65536;

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) || isObj(v) ? JSON.stringify(v) : String(v));

/** Reads typed values out of an HF object, collecting one problem per bad key. */
class Reader {
  readonly problems: string[] = [];
  constructor(private readonly o: Json, private readonly prefix = '') {}
  has(k: string): boolean { return this.o[k] !== undefined; }
  private bad(k: string, what: string, v: unknown): void { this.problems.push(`${this.prefix}${k} must be ${what}, got ${show(v)}`); }
  int(k: string, d: number, min: number, max = MAX_CONFIG_INT): number {
    const v = this.o[k];
    if (v === undefined) return d;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      this.bad(k, min === 1 ? 'a positive integer' : `an integer ≥ ${min}`, v);
      return d;
    }
    if (v > max) { this.bad(k, `at most ${max}`, v); return d; }
    return v;
  }
  num(k: string, d: number, positive = true): number {
    const v = this.o[k];
    if (v === undefined) return d;
    if (typeof v !== 'number' || !Number.isFinite(v) || (positive && v <= 0)) {
      this.bad(k, positive ? 'a positive number' : 'a finite number', v);
      return d;
    }
    return v;
  }
  bool(k: string, d: boolean): boolean {
    const v = this.o[k];
    if (v === undefined) return d;
    if (typeof v !== 'boolean') { this.bad(k, 'true or false', v); return d; }
    return v;
  }
  oneOf<T extends string>(k: string, allowed: readonly T[], d: T): T {
    const v = this.o[k];
    if (v === undefined) return d;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      this.bad(k, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
      return d;
    }
    return v as T;
  }
  /** null (or absent → d) or an integer ≥ min; HF lists keep their first entry (eos_token_id). */
  intOrNull(k: string, d: number | null, min: number, zeroIsNull = false): number | null {
    let v = this.o[k];
    if (v === undefined) return d;
    if (v === null) return null;
    if (Array.isArray(v) && v.length > 0) v = v[0];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > MAX_CONFIG_INT) {
      this.bad(k, `null or an integer in [${min}, ${MAX_CONFIG_INT}]`, this.o[k]);
      return d;
    }
    return zeroIsNull && v === 0 ? null : v;
  }
}

/**
 * Parses and validates an HF `config.json` object (or its JSON text). Throws `ConfigError`
 * naming every bad key, e.g. `config: num_attention_heads must be a positive integer, got "8"`.
 */
export function parseHFConfig(json: unknown): DeepSeekConfig {
  if (typeof json === 'string') {
    try { json = JSON.parse(json); } catch (e) { throw new ConfigError([`not valid JSON (${(e as Error).message})`]); }
  }
  if (!isObj(json)) throw new ConfigError([`expected a JSON object of HF config keys, got ${show(json)}`]);
  const r = new Reader(json);
  const d = defaultConfig;
  const modelType = r.oneOf('model_type', ['deepseek_v3', 'deepseek_v2'] as const, 'deepseek_v3');
  const v2 = modelType === 'deepseek_v2';
  const c: DeepSeekConfig = {
    vocabSize: r.int('vocab_size', d.vocabSize, 1),
    hiddenSize: r.int('hidden_size', d.hiddenSize, 1),
    intermediateSize: r.int('intermediate_size', d.intermediateSize, 1),
    moeIntermediateSize: r.int('moe_intermediate_size', d.moeIntermediateSize, 1),
    numHiddenLayers: r.int('num_hidden_layers', d.numHiddenLayers, 1, MAX_LAYERS),
    firstKDenseReplace: r.int('first_k_dense_replace', v2 ? 0 : d.firstKDenseReplace, 0),
    moeLayerFreq: r.int('moe_layer_freq', d.moeLayerFreq, 1),
    numAttentionHeads: r.int('num_attention_heads', d.numAttentionHeads, 1),
    nRoutedExperts: r.intOrNull('n_routed_experts', d.nRoutedExperts, 0) ?? 0,
    nSharedExperts: r.intOrNull('n_shared_experts', d.nSharedExperts, 0) ?? 0,
    numExpertsPerTok: r.intOrNull('num_experts_per_tok', d.numExpertsPerTok, 1) ?? 1,
    nGroup: r.intOrNull('n_group', v2 ? 1 : d.nGroup, 1) ?? 1,
    topkGroup: r.intOrNull('topk_group', v2 ? 1 : d.topkGroup, 1) ?? 1,
    scoringFunc: r.oneOf('scoring_func', ['sigmoid', 'softmax'] as const, v2 ? 'softmax' : 'sigmoid'),
    topkMethod: r.oneOf('topk_method', ['noaux_tc', 'greedy', 'group_limited_greedy'] as const, v2 ? 'greedy' : 'noaux_tc'),
    normTopkProb: r.bool('norm_topk_prob', v2 ? false : d.normTopkProb),
    routedScalingFactor: r.num('routed_scaling_factor', v2 ? 1 : d.routedScalingFactor),
    qLoraRank: r.intOrNull('q_lora_rank', d.qLoraRank, 0, true),
    kvLoraRank: r.int('kv_lora_rank', d.kvLoraRank, 1),
    qkNopeHeadDim: r.int('qk_nope_head_dim', d.qkNopeHeadDim, 1),
    qkRopeHeadDim: r.int('qk_rope_head_dim', d.qkRopeHeadDim, 1),
    vHeadDim: r.int('v_head_dim', d.vHeadDim, 1),
    ropeTheta: r.num('rope_theta', d.ropeTheta),
    ropeScaling: null,
    maxPositionEmbeddings: r.int('max_position_embeddings', d.maxPositionEmbeddings, 1),
    rmsNormEps: r.num('rms_norm_eps', d.rmsNormEps),
    numNextnPredictLayers: r.int('num_nextn_predict_layers', d.numNextnPredictLayers, 0, MAX_LAYERS),
    tieWordEmbeddings: r.bool('tie_word_embeddings', d.tieWordEmbeddings),
    modelType,
    bosTokenId: r.intOrNull('bos_token_id', d.bosTokenId, 0),
    eosTokenId: r.intOrNull('eos_token_id', d.eosTokenId, 0),
    quantization: null,
    torchDtype: r.oneOf(r.has('torch_dtype') ? 'torch_dtype' : 'dtype', ['float32', 'bfloat16', 'float16'] as const, d.torchDtype),
  };
  const problems = r.problems;
  if (r.has('hidden_act') && json.hidden_act !== 'silu') problems.push(`hidden_act must be "silu" (the only activation DeepSeek models use), got ${show(json.hidden_act)}`);
  if (json.attention_bias === true) problems.push('attention_bias must be false (MLA projections have no bias)');
  c.ropeScaling = parseRopeScaling(json.rope_scaling, problems);
  c.quantization = parseQuantization(json.quantization_config, problems);
  if (problems.length === 0) problems.push(...crossCheck(c));
  if (problems.length > 0) throw new ConfigError(problems);
  return c;
}

function parseRopeScaling(v: unknown, problems: string[]): YarnScaling | null {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) { problems.push(`rope_scaling must be null or an object, got ${show(v)}`); return null; }
  const type = v.type ?? v.rope_type;
  if (type !== 'yarn') {
    problems.push(`rope_scaling.type must be "yarn" (the only scaling DeepSeek uses), got ${show(type)}`);
    return null;
  }
  const r = new Reader(v, 'rope_scaling.');
  // Official code has a single mscale (default 1); HF has two. Absent ones take the other's value.
  const given = r.has('mscale') ? r.num('mscale', 1, false) : undefined;
  const givenAll = r.has('mscale_all_dim') ? r.num('mscale_all_dim', 1, false) : undefined;
  const y: YarnScaling = {
    type: 'yarn',
    factor: r.num('factor', 1),
    originalMaxPositionEmbeddings: r.int('original_max_position_embeddings', 4096, 1),
    betaFast: r.num('beta_fast', 32),
    betaSlow: r.num('beta_slow', 1),
    mscale: given ?? givenAll ?? 1,
    mscaleAllDim: givenAll ?? given ?? 1,
  };
  problems.push(...r.problems);
  if (y.mscale !== y.mscaleAllDim) problems.push(`rope_scaling.mscale (${y.mscale}) must equal rope_scaling.mscale_all_dim (${y.mscaleAllDim}): the official code has one mscale and HF diverges from it otherwise (SPEC §5.4)`);
  if (y.betaFast <= y.betaSlow) problems.push(`rope_scaling.beta_fast (${y.betaFast}) must exceed beta_slow (${y.betaSlow})`);
  return y;
}

function parseQuantization(v: unknown, problems: string[]): QuantizationConfig | null {
  if (v === undefined || v === null) return null;
  if (!isObj(v)) { problems.push(`quantization_config must be null or an object, got ${show(v)}`); return null; }
  if (v.quant_method !== undefined && v.quant_method !== 'fp8') problems.push(`quantization_config.quant_method must be "fp8", got ${show(v.quant_method)}`);
  if (v.fmt !== undefined && v.fmt !== 'e4m3') problems.push(`quantization_config.fmt must be "e4m3", got ${show(v.fmt)}`);
  const b = v.weight_block_size ?? [128, 128];
  const ok = Array.isArray(b) && b.length === 2 && b.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0);
  if (!ok) problems.push(`quantization_config.weight_block_size must be two positive integers, got ${show(b)}`);
  const q: QuantizationConfig = { fmt: 'e4m3', weightBlockSize: ok ? [b[0] as number, b[1] as number] : [128, 128] };
  if (v.scale_fmt === 'ue8m0') q.scaleFmt = 'ue8m0';
  else if (v.scale_fmt !== undefined && v.scale_fmt !== null) problems.push(`quantization_config.scale_fmt must be null or "ue8m0", got ${show(v.scale_fmt)}`);
  return q;
}

/** Constraints between keys (run once every key is individually valid). */
function crossCheck(c: DeepSeekConfig): string[] {
  const p: string[] = [];
  if (c.hiddenSize % 2) p.push(`hidden_size (${c.hiddenSize}) must be even`);
  if (c.qkRopeHeadDim % 2) p.push(`qk_rope_head_dim (${c.qkRopeHeadDim}) must be even (RoPE rotates pairs)`);
  if (c.firstKDenseReplace > c.numHiddenLayers) p.push(`first_k_dense_replace (${c.firstKDenseReplace}) must be ≤ num_hidden_layers (${c.numHiddenLayers})`);
  if (c.nRoutedExperts > 0) {
    if (c.topkGroup > c.nGroup) p.push(`topk_group (${c.topkGroup}) must be ≤ n_group (${c.nGroup})`);
    if (c.nRoutedExperts % c.nGroup) p.push(`n_routed_experts (${c.nRoutedExperts}) must be divisible by n_group (${c.nGroup})`);
    else {
      const perGroup = c.nRoutedExperts / c.nGroup;
      if (c.numExpertsPerTok > c.nRoutedExperts) p.push(`num_experts_per_tok (${c.numExpertsPerTok}) must be ≤ n_routed_experts (${c.nRoutedExperts})`);
      else if (c.topkGroup <= c.nGroup && c.numExpertsPerTok > c.topkGroup * perGroup) p.push(`num_experts_per_tok (${c.numExpertsPerTok}) must be ≤ topk_group × experts per group (${c.topkGroup} × ${perGroup})`);
      if (c.topkMethod === 'noaux_tc' && c.nGroup > 1 && perGroup < 2) p.push(`noaux_tc group score sums the top 2 experts of a group: n_routed_experts / n_group must be ≥ 2, got ${perGroup}`);
    }
  }
  if (c.ropeScaling && c.ropeScaling.factor < 1) p.push(`rope_scaling.factor (${c.ropeScaling.factor}) must be ≥ 1`);
  if (c.topkMethod === 'noaux_tc' && c.scoringFunc !== 'sigmoid') p.push(`topk_method "noaux_tc" needs scoring_func "sigmoid", got "${c.scoringFunc}"`);
  return p;
}

/** HF `config.json` object for `c`; `parseHFConfig(toHFConfig(c))` returns `c` again. */
export function toHFConfig(c: DeepSeekConfig): Record<string, unknown> {
  const rs = c.ropeScaling;
  const out: Record<string, unknown> = {
    architectures: [c.modelType === 'deepseek_v2' ? 'DeepseekV2ForCausalLM' : 'DeepseekV3ForCausalLM'],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    moe_intermediate_size: c.moeIntermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    first_k_dense_replace: c.firstKDenseReplace,
    moe_layer_freq: c.moeLayerFreq,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numAttentionHeads,
    n_routed_experts: c.nRoutedExperts,
    n_shared_experts: c.nSharedExperts,
    num_experts_per_tok: c.numExpertsPerTok,
    n_group: c.nGroup,
    topk_group: c.topkGroup,
    topk_method: c.topkMethod,
    scoring_func: c.scoringFunc,
    norm_topk_prob: c.normTopkProb,
    routed_scaling_factor: c.routedScalingFactor,
    q_lora_rank: c.qLoraRank,
    kv_lora_rank: c.kvLoraRank,
    qk_nope_head_dim: c.qkNopeHeadDim,
    qk_rope_head_dim: c.qkRopeHeadDim,
    v_head_dim: c.vHeadDim,
    num_nextn_predict_layers: c.numNextnPredictLayers,
    hidden_act: 'silu',
    attention_bias: false,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    max_position_embeddings: c.maxPositionEmbeddings,
    rope_scaling: rs === null ? null : {
      type: 'yarn', factor: rs.factor, original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
      beta_fast: rs.betaFast, beta_slow: rs.betaSlow, mscale: rs.mscale, mscale_all_dim: rs.mscaleAllDim,
    },
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    torch_dtype: c.torchDtype,
  };
  if (c.quantization) {
    const q: Record<string, unknown> = { quant_method: 'fp8', fmt: c.quantization.fmt, activation_scheme: 'dynamic', weight_block_size: [...c.quantization.weightBlockSize] };
    if (c.quantization.scaleFmt) q.scale_fmt = c.quantization.scaleFmt;
    out.quantization_config = q;
  }
  return out;
}

/** Layers per HF semantics: MoE iff experts exist, layer ≥ firstKDenseReplace and layer % moeLayerFreq == 0 (MTP layers included). */
export function isMoeLayer(c: DeepSeekConfig, layer: number): boolean {
  return c.nRoutedExperts > 0 && layer >= c.firstKDenseReplace && layer % c.moeLayerFreq === 0;
}

/** YaRN attention magnitude m(f, mscale) = 0.1·mscale·ln f + 1 (1 when f ≤ 1). */
export function yarnMscale(factor: number, mscale: number): number {
  return factor <= 1 ? 1 : 0.1 * mscale * Math.log(factor) + 1;
}

/** Attention softmax scale: (dn+dr)^-1/2, × m(f, mscaleAllDim)² when YaRN is set (HF semantics, SPEC §5.4). */
export function softmaxScale(c: DeepSeekConfig): number {
  const s = 1 / Math.sqrt(c.qkNopeHeadDim + c.qkRopeHeadDim);
  if (!c.ropeScaling) return s;
  const m = yarnMscale(c.ropeScaling.factor, c.ropeScaling.mscaleAllDim);
  return s * m * m;
}

/** RoPE inverse frequencies θ_i, i < dr/2, YaRN-blended when rope_scaling is set (SPEC §5.3). */
export function ropeInvFreq(c: DeepSeekConfig): Float32Array {
  const d = c.qkRopeHeadDim;
  const base = c.ropeTheta;
  const out = new Float32Array(d / 2);
  const y = c.ropeScaling;
  let lo = 0;
  let hi = 0;
  if (y) {
    const corr = (rot: number): number => (d * Math.log(y.originalMaxPositionEmbeddings / (2 * Math.PI * rot))) / (2 * Math.log(base));
    lo = Math.max(Math.floor(corr(y.betaFast)), 0);
    hi = Math.min(Math.ceil(corr(y.betaSlow)), d - 1);
    if (lo === hi) hi += 0.001;
  }
  for (let i = 0; i < d / 2; i++) {
    const theta = 1 / Math.pow(base, (2 * i) / d);
    if (!y) { out[i] = theta; continue; }
    const ramp = Math.min(1, Math.max(0, (i - lo) / (hi - lo)));
    out[i] = (theta / y.factor) * ramp + theta * (1 - ramp);
  }
  return out;
}

/** A config from plain data with defaults for every omitted field (presets use this). */
export function makeConfig(fields: Partial<DeepSeekConfig>): DeepSeekConfig {
  return { ...defaultConfig, ...fields };
}

const yarn = (factor: number, original: number, mscale: number): YarnScaling => ({
  type: 'yarn', factor, originalMaxPositionEmbeddings: original, betaFast: 32, betaSlow: 1, mscale, mscaleAllDim: mscale,
});

/** Named architectures. tiny = reference/tiny-dsv3; small = ANCHORS.md; demo = `frugal train`'s default; the rest = the HF releases. */
export const presets: Record<string, DeepSeekConfig> = {
  tiny: makeConfig({
    vocabSize: 512, hiddenSize: 64, intermediateSize: 128, moeIntermediateSize: 32, numHiddenLayers: 3,
    firstKDenseReplace: 1, numAttentionHeads: 4, nRoutedExperts: 8, nSharedExperts: 1, numExpertsPerTok: 2,
    nGroup: 4, topkGroup: 2, qLoraRank: 32, kvLoraRank: 32, qkNopeHeadDim: 16, qkRopeHeadDim: 8, vHeadDim: 16,
    maxPositionEmbeddings: 256, numNextnPredictLayers: 1, torchDtype: 'float32',
  }),
  small: makeConfig({
    vocabSize: 4096, hiddenSize: 256, intermediateSize: 1024, moeIntermediateSize: 256, numHiddenLayers: 6,
    firstKDenseReplace: 1, numAttentionHeads: 8, nRoutedExperts: 16, nSharedExperts: 1, numExpertsPerTok: 2,
    nGroup: 4, topkGroup: 2, qLoraRank: 128, kvLoraRank: 64, qkNopeHeadDim: 32, qkRopeHeadDim: 16, vHeadDim: 32,
    maxPositionEmbeddings: 1024, numNextnPredictLayers: 1, torchDtype: 'float32',
  }),
  // ~4× small's active parameters per token (hidden 512): the scaling rows of `frugal bench`.
  medium: makeConfig({
    vocabSize: 4096, hiddenSize: 512, intermediateSize: 2048, moeIntermediateSize: 512, numHiddenLayers: 6,
    firstKDenseReplace: 1, numAttentionHeads: 8, nRoutedExperts: 16, nSharedExperts: 1, numExpertsPerTok: 2,
    nGroup: 4, topkGroup: 2, qLoraRank: 256, kvLoraRank: 128, qkNopeHeadDim: 64, qkRopeHeadDim: 32, vHeadDim: 64,
    maxPositionEmbeddings: 1024, numNextnPredictLayers: 1, torchDtype: 'float32',
  }),
  demo: makeConfig({
    vocabSize: 2048, hiddenSize: 128, intermediateSize: 384, moeIntermediateSize: 96, numHiddenLayers: 4,
    firstKDenseReplace: 1, numAttentionHeads: 4, nRoutedExperts: 8, nSharedExperts: 1, numExpertsPerTok: 2,
    nGroup: 4, topkGroup: 2, qLoraRank: 64, kvLoraRank: 64, qkNopeHeadDim: 32, qkRopeHeadDim: 16, vHeadDim: 32,
    maxPositionEmbeddings: 1024, numNextnPredictLayers: 1, torchDtype: 'float32',
  }),
  'deepseek-v3': makeConfig({
    maxPositionEmbeddings: 163840, numNextnPredictLayers: 1, ropeScaling: yarn(40, 4096, 1),
    quantization: { fmt: 'e4m3', weightBlockSize: [128, 128] },
  }),
  'deepseek-v2': makeConfig({
    modelType: 'deepseek_v2', vocabSize: 102400, hiddenSize: 5120, intermediateSize: 12288, moeIntermediateSize: 1536,
    numHiddenLayers: 60, firstKDenseReplace: 1, numAttentionHeads: 128, nRoutedExperts: 160, nSharedExperts: 2,
    numExpertsPerTok: 6, nGroup: 8, topkGroup: 3, topkMethod: 'group_limited_greedy', scoringFunc: 'softmax',
    normTopkProb: false, routedScalingFactor: 16, qLoraRank: 1536, maxPositionEmbeddings: 163840,
    ropeScaling: yarn(40, 4096, 0.707), bosTokenId: 100000, eosTokenId: 100001,
  }),
  'deepseek-v2-lite': makeConfig({
    modelType: 'deepseek_v2', vocabSize: 102400, hiddenSize: 2048, intermediateSize: 10944, moeIntermediateSize: 1408,
    numHiddenLayers: 27, firstKDenseReplace: 1, numAttentionHeads: 16, nRoutedExperts: 64, nSharedExperts: 2,
    numExpertsPerTok: 6, nGroup: 1, topkGroup: 1, topkMethod: 'greedy', scoringFunc: 'softmax',
    normTopkProb: false, routedScalingFactor: 1, qLoraRank: null, maxPositionEmbeddings: 163840,
    ropeScaling: yarn(40, 4096, 0.707), bosTokenId: 100000, eosTokenId: 100001,
  }),
};

/**
 * A preset name, an HF config object, or its JSON text → validated config. A preset is returned
 * as a fresh copy. Throws `ConfigError` listing the presets when a name is unknown.
 */
export function resolveConfig(nameOrJson: string | Record<string, unknown>): DeepSeekConfig {
  if (typeof nameOrJson === 'string' && !nameOrJson.trimStart().startsWith('{')) {
    const p = presets[nameOrJson];
    if (!p) throw new ConfigError([`unknown preset "${nameOrJson}" (known: ${Object.keys(presets).join(', ')}; or pass an HF config.json)`]);
    return structuredClone(p);
  }
  return parseHFConfig(nameOrJson);
}
