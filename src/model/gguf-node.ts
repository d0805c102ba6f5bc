/**
 * GGUF in and out for model folders (node-only): `exportGguf` turns a Frugal/HF model directory
 * (DeepSeek-style, FP8 checkpoints dequantised through `weight_scale_inv`, or Frugal's dense
 * Llama-style model) into a GGUF file llama.cpp runs; `loadGguf` reads a GGUF file back into the
 * same parameter trees, with the tokenizer from the file.
 *
 * Contract:
 * - The exported vocabulary is the folder's tokenizer.json (gpt2 BPE with merges) when present,
 *   else a generated one of the model's vocab size (token ids only).
 * - A dense folder must be Frugal's own (`rope_interleaved: true`): an HF Llama checkpoint rotates
 *   halves, which neither Frugal's dense model nor this writer handles.
 * - `loadGguf` never allocates a weight the file does not hold (gguf.ts / GgufTensorLoader), keeps
 *   Q8_0 blocks for the Q8_0 decode kernel, and reports tensors it did not use (e.g. MTP blocks).
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { openGgufFile, writeGguf } from '../io/gguf-node.js';
import type { GgufReader } from '../io/gguf.js';
import { generatedVocab, tokenizerJsonFromVocab, vocabFromMetadata, vocabFromTokenizerJson, type GgufVocab } from '../io/gguf-vocab.js';
import { describeGgmlType } from '../io/gguf-quant.js';
import { SafetensorsModel } from '../io/safetensors-node.js';
import { Tokenizer } from '../io/tokenizer.js';
import { MAX_TOKENIZER_FILE_BYTES, loadTokenizer } from '../io/tokenizer-node.js';
import type { DeepSeekConfig } from './config.js';
import type { ModelParams } from './deepseek.js';
import { type DenseConfig, type DenseParams, denseParamEntries, initDenseParams } from './dense.js';
import { checkExportable, deepseekFromGguf, deepseekGguf, type GgufFileType, type GgufPlan, type Q8Blocks } from './gguf.js';
import { denseFromGguf, denseGguf } from './gguf-dense.js';
import { loadConfig, loadModel } from './load-node.js';

/** A model read from a GGUF file. */
export type GgufModel = {
  file: string;
  /** The file's `general.file_type` as a name, and the count of tensors per ggml type. */
  fileType: string; tensorTypes: Record<string, number>;
  tokenizer: Tokenizer | null;
  /** Why there is no tokenizer (token ids only), or null. */
  tokenizerNote: string | null;
  /** Raw Q8_0 blocks of the weights stored as Q8_0. */
  q8: Q8Blocks;
  /** Tensors in the file no parameter took (e.g. MTP blocks). */
  unused: string[];
} & ({ kind: 'deepseek'; cfg: DeepSeekConfig; params: ModelParams } | { kind: 'dense'; cfg: DenseConfig; params: DenseParams });

const FTYPE_NAMES: Record<number, string> = { 0: 'F32', 1: 'F16', 7: 'Q8_0', 32: 'BF16' };

/** True when `p` names a GGUF file (by extension or its magic bytes). */
export function isGgufPath(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
  } catch { return false; }
  if (p.toLowerCase().endsWith('.gguf')) return true;
  const b = Buffer.alloc(4);
  const fd = openSync(p, 'r');
  try { readSync(fd, b, 0, 4, 0); } finally { closeSync(fd); }
  return b.toString('latin1') === 'GGUF';
}

/** Reads a GGUF file (deepseek2 or llama architecture) into float32 parameters. */
export async function loadGguf(file: string): Promise<GgufModel> {
  const { reader, close } = await openGgufFile(file);
  try {
    return await readGgufModel(reader, file);
  } finally {
    close();
  }
}

/** The model in an opened GGUF file (`file` names it in errors). Every failure is an Error starting "gguf". */
export async function readGgufModel(reader: GgufReader, file: string): Promise<GgufModel> {
  const m = reader.metadata;
  const arch = m.str('general.architecture');
  const q8: Q8Blocks = new WeakMap();
  const tensorTypes: Record<string, number> = {};
  for (const t of reader.header.tensors) { const n = describeGgmlType(t.type); tensorTypes[n] = (tensorTypes[n] ?? 0) + 1; }
  const ft = m.has('general.file_type') ? m.uint('general.file_type') : -1;
  const fileType = FTYPE_NAMES[ft] ?? (ft < 0 ? 'unknown' : `file type ${ft}`);
  let tokenizer: Tokenizer | null = null, tokenizerNote: string | null = null;
  if (m.has('tokenizer.ggml.tokens')) {
    const built = tokenizerJsonFromVocab(vocabFromMetadata(m));
    if (built.json) {
      try { tokenizer = Tokenizer.fromJSON(built.json, built.config); } catch (e) { throw new Error(`gguf: ${file}: the vocabulary does not form a tokenizer: ${(e as Error).message}`); }
    } else tokenizerNote = built.reason;
  } else tokenizerNote = 'the file has no tokenizer.ggml.tokens';
  const base = { file, fileType, tensorTypes, tokenizer, tokenizerNote, q8 };
  if (arch === 'deepseek2') {
    const r = await deepseekFromGguf(reader, q8);
    if (tokenizer && tokenizer.vocabSize > r.cfg.vocabSize) throw new Error(`gguf: ${file}: the vocabulary has ${tokenizer.vocabSize} ids, the model ${r.cfg.vocabSize}`);
    return { ...base, kind: 'deepseek', cfg: r.cfg, params: r.params, unused: r.unused };
  }
  if (arch === 'llama') {
    const r = await denseFromGguf(reader, q8);
    return { ...base, kind: 'dense', cfg: r.cfg, params: r.params, unused: r.unused };
  }
  throw new Error(`gguf: ${file}: architecture "${arch}" is not one Frugal runs (deepseek2, llama)`);
}

/** Reads a JSON file of at most the tokenizer size limit. */
function readJsonFile(file: string): Record<string, unknown> {
  const size = statSync(file).size;
  if (size > MAX_TOKENIZER_FILE_BYTES) throw new Error(`${file} is ${size} bytes, over the ${MAX_TOKENIZER_FILE_BYTES}-byte limit`);
  let v: unknown;
  try { v = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file} is not valid JSON: ${(e as Error).message}`); }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${file} must hold a JSON object`);
  return v as Record<string, unknown>;
}

/** The folder's tokenizer as a GGUF vocabulary, or a generated one (and which). */
async function folderVocab(dir: string, vocabSize: number, bos: number | null, eos: number | null): Promise<{ vocab: GgufVocab; source: string }> {
  if (!existsSync(path.join(dir, 'tokenizer.json'))) return { vocab: generatedVocab(vocabSize, bos, eos), source: `generated (${vocabSize} placeholder tokens: no tokenizer.json in ${dir})` };
  const json = readJsonFile(path.join(dir, 'tokenizer.json'));
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const config = existsSync(cfgFile) ? readJsonFile(cfgFile) : {};
  const tok = await loadTokenizer(dir);
  const vocab = vocabFromTokenizerJson(json, config, vocabSize, { bos: tok.bosId ?? bos, eos: tok.eosId ?? eos });
  return { vocab, source: `tokenizer.json (${tok.vocabSize} tokens${tok.vocabSize < vocabSize ? `, padded to ${vocabSize}` : ''}, pre-tokenizer ${vocab.pre})` };
}

/** Frugal's dense model from a folder written by the benchmarks (config.json model_type "llama"). */
async function loadDenseFolder(dir: string, json: Record<string, unknown>): Promise<{ cfg: DenseConfig; params: DenseParams }> {
  if (json.rope_interleaved !== true) throw new Error(`${dir}: a llama config without "rope_interleaved": true is an HF Llama checkpoint (half-rotation RoPE); Frugal exports its own dense models only`);
  const int = (k: string): number => {
    const v = json[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${dir}/config.json: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    return v;
  };
  const heads = int('num_attention_heads');
  if ((json.num_key_value_heads ?? heads) !== heads) throw new Error(`${dir}: grouped-query attention is not supported by Frugal's dense model`);
  const cfg: DenseConfig = {
    vocabSize: int('vocab_size'), hiddenSize: int('hidden_size'), numHiddenLayers: int('num_hidden_layers'), numAttentionHeads: heads,
    intermediateSize: int('intermediate_size'), ropeTheta: typeof json.rope_theta === 'number' ? json.rope_theta : 10000,
    rmsNormEps: typeof json.rms_norm_eps === 'number' ? json.rms_norm_eps : 1e-6, maxPositionEmbeddings: int('max_position_embeddings'),
  };
  const params = initDenseParams(cfg, { init: 'zeros' });
  const st = await SafetensorsModel.open(dir);
  try {
    for (const [name, t] of denseParamEntries(params)) {
      if (!st.has(name)) throw new Error(`${dir} lacks tensor ${name}`);
      const info = st.info(name);
      if (info.shape.join('x') !== t.shape.join('x')) throw new Error(`tensor ${name} has shape [${info.shape}] but the config implies [${t.shape}]`);
      (t.data as Float32Array).set(await st.float32(name));
      t.version++; // announced: a device copy of the old values is stale
    }
  } finally { st.close(); }
  return { cfg, params };
}

/** What `exportGguf` did. */
export interface ExportResult { file: string; bytes: number; arch: string; tensors: number; vocab: string; notes: string[] }

/** Writes `dir`'s model as a GGUF file of `type` (see the contract). */
export async function exportGguf(dir: string, out: string, type: GgufFileType, name?: string): Promise<ExportResult> {
  const json = readJsonFile(path.join(dir, 'config.json'));
  let plan: GgufPlan, vocab: string, arch: string;
  const nm = name ?? path.basename(path.resolve(dir));
  if (json.model_type === 'llama') {
    const d = await loadDenseFolder(dir, json);
    const v = await folderVocab(dir, d.cfg.vocabSize, null, null);
    plan = denseGguf(d.cfg, d.params, { type, vocab: v.vocab, name: nm });
    vocab = v.source; arch = 'llama';
  } else {
    checkExportable(await loadConfig(dir)); // before reading any weights
    const m = await loadModel(dir);
    const v = await folderVocab(dir, m.cfg.vocabSize, m.cfg.bosTokenId, m.cfg.eosTokenId);
    plan = deepseekGguf(m.cfg, m.params, { type, vocab: v.vocab, name: nm });
    vocab = v.source; arch = 'deepseek2';
    if (m.cfg.quantization) plan.notes.unshift('FP8 weights dequantised through weight_scale_inv');
  }
  const bytes = await writeGguf(out, plan.kvs, plan.tensors);
  return { file: out, bytes, arch, tensors: plan.tensors.length, vocab, notes: plan.notes };
}
