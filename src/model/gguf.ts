/**
 * DeepSeek models as llama.cpp's `deepseek2` GGUF architecture, both ways (facts and source lines:
 * ../shared/docs/GGUF.md): the metadata keys and tensors a writer must emit so that llama.cpp
 * computes the same function, and the reverse mapping that loads such a file into `ModelParams`.
 * The dense Llama-style model maps to the `llama` architecture in gguf-dense.ts. Browser-safe.
 *
 * Contract:
 * - `deepseekGguf(cfg, params, opts)` returns the metadata and lazily-encoded tensors of a file
 *   llama.cpp loads as this model: MLA as MQA (head_count_kv 1, key/value lengths plus the `_mla`
 *   keys), `kv_b_proj` split into `attn_k_b` / `attn_v_b`, `expert_gating_func`, `exp_probs_b`,
 *   group keys only when topk_group < n_group, YaRN with `yarn_log_multiplier`, no MTP tensors.
 *   Matrices take the file type (Q8_0 falls back to F16 where ne[0] is not a multiple of 32, as
 *   llama.cpp's converter does); norms, router and bias stay F32.
 * - It throws (`GgufExportError`) instead of writing a file that would load wrong: depth 26/27
 *   with a q LoRA (llama.cpp's "V2-Lite" rule), moe_layer_freq ≠ 1, YaRN betas other than 32/1,
 *   MoE layers without a shared expert.
 * - `deepseekFromGguf(reader)` rebuilds the config and float32 parameters (dequantised) from a
 *   `deepseek2` file written by Frugal or llama.cpp's converter (MLA split or legacy `attn_kv_b`),
 *   checking every tensor's presence and shape; `q8` gets the raw Q8_0 blocks of each matrix
 *   that has them (for the Q8_0 decode kernel).
 */
import { Tensor } from '../autograd/tensor.js';
import { type GgufOutKV, type GgufOutTensor, type GgufReader, tensorBytes } from '../io/gguf.js';
import { GGML_TYPE, Q8_0_BLOCK, Q8_0_BYTES, encodeTensor, type GgmlTypeId } from '../io/gguf-quant.js';
import { vocabToKVs, type GgufVocab } from '../io/gguf-vocab.js';
import { type DeepSeekConfig, ConfigError, isMoeLayer, makeConfig, parseHFConfig, toHFConfig } from './config.js';
import type { LayerParams, MlaParams, MlpParams, ModelParams } from './deepseek.js';

/** A model that cannot be written as a GGUF file llama.cpp would run correctly. */
export class GgufExportError extends Error { override name = 'GgufExportError'; }

/** File types `frugal export --type` accepts. */
export type GgufFileType = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const FILE_TYPES: Record<GgufFileType, { tensor: GgmlTypeId; ftype: number }> = {
  f32: { tensor: GGML_TYPE.F32, ftype: 0 }, f16: { tensor: GGML_TYPE.F16, ftype: 1 },
  q8_0: { tensor: GGML_TYPE.Q8_0, ftype: 7 }, bf16: { tensor: GGML_TYPE.BF16, ftype: 32 },
};

export interface GgufPlan { kvs: GgufOutKV[]; tensors: GgufOutTensor[]; notes: string[] }

/** Tensor writer shared by both architectures: matrices in the file type, 1-D and `f32` ones in F32. */
export class TensorList {
  readonly tensors: GgufOutTensor[] = [];
  readonly fallback: string[] = [];
  constructor(private readonly type: GgmlTypeId) {}
  /** `ne` in GGUF order; `data` computes the float32 values in that layout. */
  add(name: string, ne: number[], data: () => Float32Array, f32 = false): void {
    let type = f32 || ne.length === 1 ? GGML_TYPE.F32 : this.type;
    if (type === GGML_TYPE.Q8_0 && ne[0]! % Q8_0_BLOCK !== 0) { type = GGML_TYPE.F16; this.fallback.push(name); }
    const t = type;
    this.tensors.push({ name, ne, type: t, nbytes: tensorBytes(t, ne), bytes: () => encodeTensor(t, data()) });
  }
}

/** Checks that llama.cpp's deepseek2 loader computes this config's function; throws otherwise. */
export function checkExportable(cfg: DeepSeekConfig): void {
  const L = cfg.numHiddenLayers;
  if (cfg.qLoraRank !== null && (L === 26 || L === 27 || (L === 48 && cfg.vocabSize === 128256))) {
    throw new GgufExportError(`llama.cpp treats a ${L}-layer deepseek2 model${L === 48 ? ' with vocab 128256' : ''} as "V2-Lite" and does not read q_lora_rank, so this model (q_lora_rank ${cfg.qLoraRank}) would fail to load; train it with another depth`);
  }
  if (cfg.moeLayerFreq !== 1) throw new GgufExportError(`moe_layer_freq ${cfg.moeLayerFreq}: llama.cpp makes every layer from leading_dense_block_count on MoE (moe_layer_freq 1 only)`);
  const y = cfg.ropeScaling;
  if (y && (y.betaFast !== 32 || y.betaSlow !== 1)) throw new GgufExportError(`YaRN beta_fast ${y.betaFast} / beta_slow ${y.betaSlow}: llama.cpp's deepseek2 uses 32 / 1 and has no key for others`);
  const anyMoe = Array.from({ length: L }, (_, i) => isMoeLayer(cfg, i)).some(Boolean);
  if (anyMoe && cfg.nSharedExperts < 1) throw new GgufExportError('llama.cpp\'s deepseek2 MoE layers need a shared expert (n_shared_experts ≥ 1)');
}

/** The GGUF metadata and tensors of a DeepSeek model (see the contract). */
export function deepseekGguf(cfg: DeepSeekConfig, p: ModelParams, opts: { type: GgufFileType; vocab: GgufVocab; name?: string }): GgufPlan {
  checkExportable(cfg);
  if (opts.vocab.tokens.length !== cfg.vocabSize) throw new GgufExportError(`vocabulary has ${opts.vocab.tokens.length} tokens, the model ${cfg.vocabSize}`);
  const A = 'deepseek2';
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, dn = cfg.qkNopeHeadDim, dr = cfg.qkRopeHeadDim, dv = cfg.vHeadDim, rkv = cfg.kvLoraRank;
  const L = cfg.numHiddenLayers;
  const anyMoe = Array.from({ length: L }, (_, i) => isMoeLayer(cfg, i)).some(Boolean);
  const dense = anyMoe ? cfg.firstKDenseReplace : L;
  const notes: string[] = [];
  const u32 = (key: string, value: number): GgufOutKV => ({ key: `${A}.${key}`, type: 'u32', value });
  const f32 = (key: string, value: number): GgufOutKV => ({ key: `${A}.${key}`, type: 'f32', value });
  const kvs: GgufOutKV[] = [
    { key: 'general.architecture', type: 'str', value: A },
    { key: 'general.name', type: 'str', value: opts.name ?? 'frugal-deepseek' },
    { key: 'general.file_type', type: 'u32', value: FILE_TYPES[opts.type].ftype },
    u32('context_length', cfg.maxPositionEmbeddings), u32('embedding_length', H), u32('block_count', L),
    u32('feed_forward_length', cfg.intermediateSize), u32('attention.head_count', nh), u32('attention.head_count_kv', 1),
    u32('attention.key_length', rkv + dr), u32('attention.value_length', rkv),
    u32('attention.key_length_mla', dn + dr), u32('attention.value_length_mla', dv),
    u32('rope.dimension_count', dr), f32('rope.freq_base', cfg.ropeTheta),
    f32('attention.layer_norm_rms_epsilon', cfg.rmsNormEps), u32('leading_dense_block_count', dense),
    u32('attention.q_lora_rank', cfg.qLoraRank ?? 0), u32('attention.kv_lora_rank', rkv),
    u32('expert_feed_forward_length', cfg.moeIntermediateSize), u32('vocab_size', cfg.vocabSize),
  ];
  if (anyMoe) {
    kvs.push(u32('expert_count', cfg.nRoutedExperts), u32('expert_used_count', cfg.numExpertsPerTok), u32('expert_shared_count', cfg.nSharedExperts));
    // 2 = sigmoid; absent would mean softmax (V2 back-compat).
    kvs.push(u32('expert_gating_func', cfg.scoringFunc === 'sigmoid' ? 2 : 1));
    // Frugal (like DeepSeek's code) always normalises sigmoid weights; softmax only when norm_topk_prob.
    const norm = cfg.scoringFunc === 'sigmoid' || cfg.normTopkProb;
    kvs.push({ key: `${A}.expert_weights_norm`, type: 'bool', value: norm }, f32('expert_weights_scale', cfg.routedScalingFactor));
    const limited = cfg.topkMethod !== 'greedy' && cfg.nGroup > 1 && cfg.topkGroup < cfg.nGroup;
    if (limited) {
      kvs.push(u32('expert_group_count', cfg.nGroup), u32('expert_group_used_count', cfg.topkGroup));
      if (cfg.topkMethod === 'group_limited_greedy') notes.push('group_limited_greedy scores a group by its best expert; llama.cpp sums the top two, so a token can pick other groups there (DeepSeek-V2 behaviour differs)');
    }
  } else kvs.push(u32('expert_count', 0), u32('expert_used_count', 0), u32('expert_shared_count', cfg.nSharedExperts));
  const y = cfg.ropeScaling;
  if (y) {
    kvs.push({ key: `${A}.rope.scaling.type`, type: 'str', value: 'yarn' }, f32('rope.scaling.factor', y.factor),
      u32('rope.scaling.original_context_length', y.originalMaxPositionEmbeddings),
      // llama.cpp divides this by 0.1 again: the softmax scale gets (1 + 0.1·mscale_all_dim·ln f)².
      f32('rope.scaling.yarn_log_multiplier', 0.1 * y.mscaleAllDim));
  }
  kvs.push(...vocabToKVs(opts.vocab));

  const out = new TensorList(FILE_TYPES[opts.type].tensor);
  const mat = (t: Tensor): (() => Float32Array) => () => t.f32;
  const [V] = p.embed.shape as [number];
  out.add('token_embd.weight', [H, V], mat(p.embed));
  out.add('output_norm.weight', [H], mat(p.norm));
  if (!(cfg.tieWordEmbeddings || p.head === p.embed)) out.add('output.weight', [H, V], mat(p.head));
  p.layers.forEach((l, i) => {
    const b = `blk.${i}.`, a = l.attn;
    out.add(`${b}attn_norm.weight`, [H], mat(l.attnNorm));
    if (a.qProj) out.add(`${b}attn_q.weight`, [H, nh * (dn + dr)], mat(a.qProj));
    else {
      out.add(`${b}attn_q_a.weight`, [H, cfg.qLoraRank!], mat(a.qAProj!));
      out.add(`${b}attn_q_a_norm.weight`, [cfg.qLoraRank!], mat(a.qANorm!));
      out.add(`${b}attn_q_b.weight`, [cfg.qLoraRank!, nh * (dn + dr)], mat(a.qBProj!));
    }
    out.add(`${b}attn_kv_a_mqa.weight`, [H, rkv + dr], mat(a.kvAProj));
    out.add(`${b}attn_kv_a_norm.weight`, [rkv], mat(a.kvANorm));
    out.add(`${b}attn_k_b.weight`, [dn, rkv, nh], () => splitKvB(a.kvBProj.f32, nh, dn, dv, rkv).kB);
    out.add(`${b}attn_v_b.weight`, [rkv, dv, nh], () => splitKvB(a.kvBProj.f32, nh, dn, dv, rkv).vB);
    out.add(`${b}attn_output.weight`, [nh * dv, H], mat(a.oProj));
    out.add(`${b}ffn_norm.weight`, [H], mat(l.ffnNorm));
    if (l.mlp) {
      out.add(`${b}ffn_gate.weight`, [H, cfg.intermediateSize], mat(l.mlp.gate));
      out.add(`${b}ffn_up.weight`, [H, cfg.intermediateSize], mat(l.mlp.up));
      out.add(`${b}ffn_down.weight`, [cfg.intermediateSize, H], mat(l.mlp.down));
    } else {
      const m = l.moe!, E = cfg.nRoutedExperts, Fe = cfg.moeIntermediateSize, Fs = Fe * cfg.nSharedExperts;
      out.add(`${b}ffn_gate_inp.weight`, [H, E], mat(m.router), true);
      out.add(`${b}exp_probs_b.bias`, [E], () => (m.bias ? m.bias.f32 : new Float32Array(E)), true);
      const stack = (k: keyof MlpParams) => (): Float32Array => stackExperts(m.experts.map((e) => e[k].f32));
      out.add(`${b}ffn_gate_exps.weight`, [H, Fe, E], stack('gate'));
      out.add(`${b}ffn_up_exps.weight`, [H, Fe, E], stack('up'));
      out.add(`${b}ffn_down_exps.weight`, [Fe, H, E], stack('down'));
      out.add(`${b}ffn_gate_shexp.weight`, [H, Fs], mat(m.shared!.gate));
      out.add(`${b}ffn_up_shexp.weight`, [H, Fs], mat(m.shared!.up));
      out.add(`${b}ffn_down_shexp.weight`, [Fs, H], mat(m.shared!.down));
    }
  });
  if (out.fallback.length) notes.push(`${out.fallback.length} tensors stay F16 (ne[0] not a multiple of 32, as llama.cpp's converter does): ${out.fallback.slice(0, 3).join(', ')}${out.fallback.length > 3 ? ', …' : ''}`);
  if (p.mtp.length) notes.push(`${p.mtp.length} MTP layer(s) not written (llama.cpp's deepseek2 converter drops them)`);
  return { kvs, tensors: out.tensors, notes };
}

/**
 * kv_b_proj [nh·(dn+dv), rkv] (per head: dn rows of W_UK, then dv rows of W_UV) →
 * k_b torch [nh, rkv, dn] (W_UK transposed per head) and v_b torch [nh, dv, rkv].
 */
export function splitKvB(w: Float32Array, nh: number, dn: number, dv: number, rkv: number): { kB: Float32Array; vB: Float32Array } {
  const kB = new Float32Array(nh * rkv * dn), vB = new Float32Array(nh * dv * rkv);
  for (let h = 0; h < nh; h++) {
    const base = h * (dn + dv) * rkv;
    for (let i = 0; i < dn; i++) for (let c = 0; c < rkv; c++) kB[(h * rkv + c) * dn + i] = w[base + i * rkv + c]!;
    vB.set(w.subarray(base + dn * rkv, base + (dn + dv) * rkv), h * dv * rkv);
  }
  return { kB, vB };
}

/** The inverse of `splitKvB`. */
export function joinKvB(kB: Float32Array, vB: Float32Array, nh: number, dn: number, dv: number, rkv: number): Float32Array {
  const w = new Float32Array(nh * (dn + dv) * rkv);
  for (let h = 0; h < nh; h++) {
    const base = h * (dn + dv) * rkv;
    for (let i = 0; i < dn; i++) for (let c = 0; c < rkv; c++) w[base + i * rkv + c] = kB[(h * rkv + c) * dn + i]!;
    w.set(vB.subarray(h * dv * rkv, (h + 1) * dv * rkv), base + dn * rkv);
  }
  return w;
}

function stackExperts(parts: Float32Array[]): Float32Array {
  const n = parts[0]!.length;
  const out = new Float32Array(n * parts.length);
  parts.forEach((x, e) => out.set(x, e * n));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reading

/** Raw Q8_0 blocks of weights read from a file, keyed by the parameter tensor they fill. */
export type Q8Blocks = WeakMap<Tensor, Uint8Array>;

/**
 * Creates parameter tensors from a GGUF file's tensors, checking each name and shape first: every
 * float allocated has been found in the file, so a hostile config cannot make it allocate more.
 */
export class GgufTensorLoader {
  readonly used = new Set<string>();
  constructor(private readonly r: GgufReader, private readonly q8: Q8Blocks | null) {}
  has(name: string): boolean { return this.r.has(name); }
  /** The data of `name` as float32 after checking its ne (GGUF order). */
  async read(name: string, ne: number[]): Promise<Float32Array> {
    const t = this.r.info(name);
    if (t.ne.join(',') !== ne.join(',')) throw new Error(`gguf: tensor ${name} has ne [${t.ne.join(', ')}], the metadata implies [${ne.join(', ')}]`);
    this.used.add(name);
    return this.r.float32(name);
  }
  /** A parameter tensor (torch shape = ne reversed); its Q8_0 blocks are kept when asked. */
  async tensor(name: string, ne: number[]): Promise<Tensor> {
    const t = new Tensor(await this.read(name, ne), ne.slice().reverse());
    if (this.q8 && this.r.info(name).type === GGML_TYPE.Q8_0) this.q8.set(t, await this.r.bytes(name));
    return t;
  }
  /** Tensors per expert from one stacked {a, b, E} tensor (Q8_0 blocks sliced per expert). */
  async stacked(name: string, ne: [number, number, number]): Promise<Tensor[]> {
    const all = await this.read(name, ne);
    const [a, b, E] = ne, n = a * b;
    const out = Array.from({ length: E }, (_, e) => new Tensor(all.slice(e * n, (e + 1) * n), [b, a]));
    if (this.q8 && this.r.info(name).type === GGML_TYPE.Q8_0) {
      const raw = await this.r.bytes(name);
      const per = (n / Q8_0_BLOCK) * Q8_0_BYTES;
      out.forEach((t, e) => this.q8!.set(t, raw.subarray(e * per, (e + 1) * per)));
    }
    return out;
  }
  /** Names in the file that no parameter took. */
  unused(): string[] { return this.r.header.tensors.map((t) => t.name).filter((n) => !this.used.has(n)); }
}

/** The DeepSeek config a `deepseek2` file describes (throws naming the key at fault). */
export function deepseekConfigFromGguf(r: GgufReader): DeepSeekConfig {
  const m = r.metadata, A = 'deepseek2';
  const arch = m.str('general.architecture');
  if (arch !== A) throw new Error(`gguf: architecture "${arch}" is not deepseek2`);
  const LIM = 1 << 24;
  const k = (key: string, d?: number, max = LIM): number => m.uint(`${A}.${key}`, d, max);
  const V = m.strArray('tokenizer.ggml.tokens', true)?.length ?? k('vocab_size');
  const blocks = k('block_count', undefined, 4096), nextn = k('nextn_predict_layers', 0, 4096);
  if (nextn > blocks) throw new Error(`gguf: ${A}.nextn_predict_layers ${nextn} exceeds block_count ${blocks}`);
  const L = blocks - nextn;
  const nh = k('attention.head_count'), dr = k('rope.dimension_count');
  const rkv = k('attention.kv_lora_rank');
  const mla = m.has(`${A}.attention.key_length_mla`) && m.has(`${A}.attention.value_length_mla`);
  const dq = mla ? k('attention.key_length_mla') : k('attention.key_length');
  const dv = mla ? k('attention.value_length_mla') : k('attention.value_length');
  if (dq <= dr) throw new Error(`gguf: key length ${dq} must exceed rope.dimension_count ${dr}`);
  const E = k('expert_count', 0), gating = k('expert_gating_func', 1, 3);
  const groups = k('expert_group_count', 1), groupsUsed = k('expert_group_used_count', groups);
  const sigmoid = gating === 2;
  const norm = m.has(`${A}.expert_weights_norm`) ? m.bool(`${A}.expert_weights_norm`) : false;
  if (E > 0 && sigmoid && !norm) throw new Error(`gguf: sigmoid routing without ${A}.expert_weights_norm: Frugal always normalises sigmoid expert weights (DeepSeek-V3 semantics)`);
  const scale = m.float(`${A}.expert_weights_scale`, 0);
  const qLora = r.has('blk.0.attn_q.weight') ? null : k('attention.q_lora_rank');
  const ropeType = m.str(`${A}.rope.scaling.type`, 'none');
  let ropeScaling: DeepSeekConfig['ropeScaling'] = null;
  if (ropeType === 'yarn') {
    const mscale = m.float(`${A}.rope.scaling.yarn_log_multiplier`, 0) / 0.1;
    ropeScaling = {
      type: 'yarn', factor: m.float(`${A}.rope.scaling.factor`), betaFast: 32, betaSlow: 1, mscale, mscaleAllDim: mscale,
      originalMaxPositionEmbeddings: k('rope.scaling.original_context_length', k('context_length')),
    };
  } else if (ropeType !== 'none' && !(ropeType === 'linear' && m.float(`${A}.rope.scaling.factor`, 1) === 1)) {
    throw new Error(`gguf: rope scaling "${ropeType}" is not supported (DeepSeek uses yarn)`);
  }
  const tok = (key: string): number | null => (m.has(key) ? m.uint(key) : null);
  const cfg = makeConfig({
    vocabSize: V, hiddenSize: k('embedding_length'), intermediateSize: k('feed_forward_length'), moeIntermediateSize: k('expert_feed_forward_length', 1),
    numHiddenLayers: L, firstKDenseReplace: Math.min(k('leading_dense_block_count', 0), L), moeLayerFreq: 1, numAttentionHeads: nh,
    nRoutedExperts: E, nSharedExperts: k('expert_shared_count', 0), numExpertsPerTok: Math.max(1, k('expert_used_count', 1)),
    nGroup: groups > 1 ? groups : 1, topkGroup: groups > 1 ? groupsUsed : 1, scoringFunc: sigmoid ? 'sigmoid' : 'softmax',
    topkMethod: sigmoid ? 'noaux_tc' : groups > 1 ? 'group_limited_greedy' : 'greedy', normTopkProb: norm,
    routedScalingFactor: scale === 0 ? 1 : scale, qLoraRank: qLora === 0 ? null : qLora, kvLoraRank: rkv, qkNopeHeadDim: dq - dr,
    qkRopeHeadDim: dr, vHeadDim: dv, ropeTheta: m.float(`${A}.rope.freq_base`, 10000), ropeScaling,
    maxPositionEmbeddings: k('context_length'), rmsNormEps: m.float(`${A}.attention.layer_norm_rms_epsilon`),
    numNextnPredictLayers: 0, tieWordEmbeddings: !r.has('output.weight'), bosTokenId: tok('tokenizer.ggml.bos_token_id'),
    eosTokenId: tok('tokenizer.ggml.eos_token_id'), torchDtype: 'float32', quantization: null,
  });
  // Validate like a config.json (positive sizes, group arithmetic), naming the GGUF as the source.
  try { return parseHFConfig(toHFConfig(cfg)); } catch (e) {
    if (e instanceof ConfigError) throw new Error(`gguf: the ${A} metadata describes an invalid model: ${e.problems.join('; ')}`);
    throw e;
  }
}

/** Loads a `deepseek2` GGUF file's weights (float32; Q8_0 blocks into `q8` when given). */
export async function deepseekFromGguf(r: GgufReader, q8: Q8Blocks | null = null): Promise<{ cfg: DeepSeekConfig; params: ModelParams; unused: string[] }> {
  const cfg = deepseekConfigFromGguf(r);
  const ld = new GgufTensorLoader(r, q8);
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, dn = cfg.qkNopeHeadDim, dr = cfg.qkRopeHeadDim, dv = cfg.vHeadDim, rkv = cfg.kvLoraRank, V = cfg.vocabSize;
  const embed = await ld.tensor('token_embd.weight', [H, V]);
  const norm = await ld.tensor('output_norm.weight', [H]);
  const head = cfg.tieWordEmbeddings ? embed : await ld.tensor('output.weight', [H, V]);
  const layers: LayerParams[] = [];
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const b = `blk.${i}.`, q = cfg.qLoraRank;
    const t = (name: string, ne: number[]): Promise<Tensor> => ld.tensor(b + name, ne);
    let kvBProj: Tensor;
    if (ld.has(`${b}attn_k_b.weight`)) {
      const kB = await ld.read(`${b}attn_k_b.weight`, [dn, rkv, nh]);
      const vB = await ld.read(`${b}attn_v_b.weight`, [rkv, dv, nh]);
      kvBProj = new Tensor(joinKvB(kB, vB, nh, dn, dv, rkv), [nh * (dn + dv), rkv]);
    } else kvBProj = await t('attn_kv_b.weight', [rkv, nh * (dn + dv)]);
    const attn: MlaParams = {
      qProj: q === null ? await t('attn_q.weight', [H, nh * (dn + dr)]) : null,
      qAProj: q === null ? null : await t('attn_q_a.weight', [H, q]),
      qANorm: q === null ? null : await t('attn_q_a_norm.weight', [q]),
      qBProj: q === null ? null : await t('attn_q_b.weight', [q, nh * (dn + dr)]),
      kvAProj: await t('attn_kv_a_mqa.weight', [H, rkv + dr]), kvANorm: await t('attn_kv_a_norm.weight', [rkv]),
      kvBProj, oProj: await t('attn_output.weight', [nh * dv, H]),
    };
    const layer: LayerParams = { attnNorm: await t('attn_norm.weight', [H]), attn, ffnNorm: await t('ffn_norm.weight', [H]), mlp: null, moe: null };
    if (!isMoeLayer(cfg, i)) {
      const F = cfg.intermediateSize;
      layer.mlp = { gate: await t('ffn_gate.weight', [H, F]), up: await t('ffn_up.weight', [H, F]), down: await t('ffn_down.weight', [F, H]) };
    } else {
      const E = cfg.nRoutedExperts, Fe = cfg.moeIntermediateSize, Fs = Fe * cfg.nSharedExperts;
      let gates: Tensor[], ups: Tensor[];
      if (ld.has(`${b}ffn_gate_up_exps.weight`)) {
        // Fused form: per expert, Fe gate rows then Fe up rows.
        const gu = await ld.read(`${b}ffn_gate_up_exps.weight`, [H, 2 * Fe, E]), n = Fe * H;
        gates = Array.from({ length: E }, (_, x) => new Tensor(gu.slice(2 * x * n, (2 * x + 1) * n), [Fe, H]));
        ups = Array.from({ length: E }, (_, x) => new Tensor(gu.slice((2 * x + 1) * n, (2 * x + 2) * n), [Fe, H]));
      } else {
        gates = await ld.stacked(`${b}ffn_gate_exps.weight`, [H, Fe, E]);
        ups = await ld.stacked(`${b}ffn_up_exps.weight`, [H, Fe, E]);
      }
      const downs = await ld.stacked(`${b}ffn_down_exps.weight`, [Fe, H, E]);
      layer.moe = {
        router: await t('ffn_gate_inp.weight', [H, E]),
        bias: ld.has(`${b}exp_probs_b.bias`) ? await t('exp_probs_b.bias', [E]) : cfg.topkMethod === 'noaux_tc' ? new Tensor(new Float32Array(E), [E]) : null,
        experts: gates.map((g, x) => ({ gate: g, up: ups[x]!, down: downs[x]! })),
        shared: cfg.nSharedExperts > 0 ? { gate: await t('ffn_gate_shexp.weight', [H, Fs]), up: await t('ffn_up_shexp.weight', [H, Fs]), down: await t('ffn_down_shexp.weight', [Fs, H]) } : null,
      };
    }
    layers.push(layer);
  }
  return { cfg, params: { embed, layers, norm, head, mtp: [] }, unused: ld.unused() };
}
