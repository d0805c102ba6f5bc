/**
 * The dense Llama-style model (dense.ts) as llama.cpp's `llama` GGUF architecture, both ways.
 * Browser-safe.
 *
 * Contract:
 * - `denseGguf` writes standard multi-head attention (head_count_kv = head_count), SwiGLU, an
 *   untied output head. RoPE needs no permutation: Frugal's dense model rotates interleaved pairs,
 *   which is llama.cpp's `llama` rope type (NORM); HF Llama checkpoints rotate halves and are
 *   permuted by llama.cpp's converter, Frugal's are not HF-Llama-rotated.
 * - `denseFromGguf` loads such a file (F32/F16/BF16/Q8_0) and refuses grouped-query attention,
 *   rope scaling, experts and other layouts the dense model cannot run.
 */
import { Tensor } from '../autograd/tensor.js';
import type { GgufReader, GgufOutKV } from '../io/gguf.js';
import { vocabToKVs, type GgufVocab } from '../io/gguf-vocab.js';
import { type DenseConfig, type DenseLayerParams, type DenseParams, denseHeadDim } from './dense.js';
import { FILE_TYPES, GgufExportError, GgufTensorLoader, TensorList, type GgufFileType, type GgufPlan, type Q8Blocks } from './gguf.js';

/** The `llama`-architecture GGUF metadata and tensors of a dense model. */
export function denseGguf(cfg: DenseConfig, p: DenseParams, opts: { type: GgufFileType; vocab: GgufVocab; name?: string }): GgufPlan {
  if (opts.vocab.tokens.length !== cfg.vocabSize) throw new GgufExportError(`vocabulary has ${opts.vocab.tokens.length} tokens, the model ${cfg.vocabSize}`);
  const A = 'llama', H = cfg.hiddenSize, F = cfg.intermediateSize, hd = denseHeadDim(cfg);
  const u32 = (key: string, value: number): GgufOutKV => ({ key: `${A}.${key}`, type: 'u32', value });
  const kvs: GgufOutKV[] = [
    { key: 'general.architecture', type: 'str', value: A },
    { key: 'general.name', type: 'str', value: opts.name ?? 'frugal-dense' },
    { key: 'general.file_type', type: 'u32', value: FILE_TYPES[opts.type].ftype },
    u32('context_length', cfg.maxPositionEmbeddings), u32('embedding_length', H), u32('block_count', cfg.numHiddenLayers),
    u32('feed_forward_length', F), u32('attention.head_count', cfg.numAttentionHeads), u32('attention.head_count_kv', cfg.numAttentionHeads),
    u32('rope.dimension_count', hd), { key: `${A}.rope.freq_base`, type: 'f32', value: cfg.ropeTheta },
    { key: `${A}.attention.layer_norm_rms_epsilon`, type: 'f32', value: cfg.rmsNormEps }, u32('vocab_size', cfg.vocabSize),
    ...vocabToKVs(opts.vocab),
  ];
  const out = new TensorList(FILE_TYPES[opts.type].tensor);
  const mat = (t: Tensor): (() => Float32Array) => () => t.f32;
  out.add('token_embd.weight', [H, cfg.vocabSize], mat(p.embed));
  out.add('output_norm.weight', [H], mat(p.norm));
  out.add('output.weight', [H, cfg.vocabSize], mat(p.head));
  p.layers.forEach((l, i) => {
    const b = `blk.${i}.`;
    out.add(`${b}attn_norm.weight`, [H], mat(l.attnNorm));
    out.add(`${b}attn_q.weight`, [H, H], mat(l.attn.qProj));
    out.add(`${b}attn_k.weight`, [H, H], mat(l.attn.kProj));
    out.add(`${b}attn_v.weight`, [H, H], mat(l.attn.vProj));
    out.add(`${b}attn_output.weight`, [H, H], mat(l.attn.oProj));
    out.add(`${b}ffn_norm.weight`, [H], mat(l.ffnNorm));
    out.add(`${b}ffn_gate.weight`, [H, F], mat(l.mlp.gate));
    out.add(`${b}ffn_up.weight`, [H, F], mat(l.mlp.up));
    out.add(`${b}ffn_down.weight`, [F, H], mat(l.mlp.down));
  });
  const notes = out.fallback.length ? [`${out.fallback.length} tensors stay F16 (ne[0] not a multiple of 32)`] : [];
  return { kvs, tensors: out.tensors, notes };
}

/** The dense config a `llama` file describes (throws naming what the dense model cannot run). */
export function denseConfigFromGguf(r: GgufReader): DenseConfig {
  const m = r.metadata, A = 'llama';
  if (m.str('general.architecture') !== A) throw new Error(`gguf: architecture "${m.str('general.architecture')}" is not llama`);
  const k = (key: string, d?: number): number => m.uint(`${A}.${key}`, d, 1 << 24);
  const heads = k('attention.head_count'), H = k('embedding_length');
  if (k('attention.head_count_kv', heads) !== heads) throw new Error('gguf: grouped-query attention (head_count_kv < head_count) is not supported by Frugal\'s dense model');
  if (k('expert_count', 0) > 0) throw new Error('gguf: a llama-architecture MoE model is not supported');
  if (m.has(`${A}.rope.scaling.type`) && m.str(`${A}.rope.scaling.type`) !== 'none') throw new Error('gguf: rope scaling is not supported by Frugal\'s dense model');
  const cfg: DenseConfig = {
    vocabSize: m.strArray('tokenizer.ggml.tokens', true)?.length ?? k('vocab_size'), hiddenSize: H, numHiddenLayers: k('block_count'),
    numAttentionHeads: heads, intermediateSize: k('feed_forward_length'), ropeTheta: m.float(`${A}.rope.freq_base`, 10000),
    rmsNormEps: m.float(`${A}.attention.layer_norm_rms_epsilon`), maxPositionEmbeddings: k('context_length'),
  };
  if (heads === 0 || H === 0 || cfg.numHiddenLayers === 0 || cfg.vocabSize === 0) throw new Error('gguf: llama metadata has a zero size');
  let hd: number;
  try { hd = denseHeadDim(cfg); } catch (e) { throw new Error(`gguf: ${(e as Error).message}`); }
  if (k('rope.dimension_count', hd) !== hd) throw new Error(`gguf: rope.dimension_count ${k('rope.dimension_count')} must equal the head size ${hd} (partial rotary is not supported)`);
  return cfg;
}

/** Loads a `llama` GGUF file's weights (float32; Q8_0 blocks into `q8` when given). */
export async function denseFromGguf(r: GgufReader, q8: Q8Blocks | null = null): Promise<{ cfg: DenseConfig; params: DenseParams; unused: string[] }> {
  const cfg = denseConfigFromGguf(r);
  const ld = new GgufTensorLoader(r, q8);
  const H = cfg.hiddenSize, F = cfg.intermediateSize, V = cfg.vocabSize;
  const embed = await ld.tensor('token_embd.weight', [H, V]);
  const norm = await ld.tensor('output_norm.weight', [H]);
  const head = ld.has('output.weight') ? await ld.tensor('output.weight', [H, V]) : embed;
  const layers: DenseLayerParams[] = [];
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const t = (name: string, ne: number[]): Promise<Tensor> => ld.tensor(`blk.${i}.${name}`, ne);
    layers.push({
      attnNorm: await t('attn_norm.weight', [H]), ffnNorm: await t('ffn_norm.weight', [H]),
      attn: { qProj: await t('attn_q.weight', [H, H]), kProj: await t('attn_k.weight', [H, H]), vProj: await t('attn_v.weight', [H, H]), oProj: await t('attn_output.weight', [H, H]) },
      mlp: { gate: await t('ffn_gate.weight', [H, F]), up: await t('ffn_up.weight', [H, F]), down: await t('ffn_down.weight', [F, H]) },
    });
  }
  return { cfg, params: { embed, layers, norm, head }, unused: ld.unused() };
}
