/**
 * Loading and saving Hugging Face model directories (config.json + *.safetensors): every tensor
 * the config implies must be present with the right shape; FP8 weights are dequantised through
 * their `weight_scale_inv`; unknown tensors are reported, not silently used.
 *
 * Contract:
 * - Nothing is allocated from config.json before it is checked against the weights: the
 *   parameters it implies (closed form, `model/size.ts`) must be held by the safetensors headers
 *   and must fit `maxBytes` (default: this machine's memory, `memoryLimitBytes`). A config that
 *   says more than the weights hold is a clear error, never a multi-GB allocation.
 * - Every loaded tensor is finite: a NaN or Inf weight is an error naming the tensor.
 * - No stored tensor overwrites another: when a checkpoint stores MTP copies of `embed_tokens` /
 *   `shared_head.head` that differ from the main ones, the MTP module keeps its own copy (noted in
 *   `notes`); identical or absent copies share the main tensor.
 */
import { readFile, mkdir } from 'node:fs/promises';
import { totalmem } from 'node:os';
import path from 'node:path';
import { SafetensorsModel, writeSafetensors } from '../io/safetensors-node.js';
import { writeDataAtomic } from '../io/atomic-node.js';
import { parseHFConfig, toHFConfig, type DeepSeekConfig } from './config.js';
import { initParams, paramEntries, type ModelParams } from './deepseek.js';
import { checkAllocation, modelSize } from './size.js';
import { Tensor } from '../autograd/tensor.js';

const MAX_CONFIG_BYTES = 1 << 20;

/**
 * Bytes a model may take in this process: FRUGAL_MAX_MEMORY_BYTES when set, else 90% of the
 * machine's memory (or of the cgroup limit when one is set).
 */
export function memoryLimitBytes(): number {
  const env = Number(process.env.FRUGAL_MAX_MEMORY_BYTES);
  if (Number.isFinite(env) && env > 0) return env;
  const constrained = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() ?? 0 : 0;
  const total = constrained > 0 && constrained < totalmem() ? constrained : totalmem();
  return Math.floor(0.9 * total);
}

/** Reads and validates DIR/config.json. */
export async function loadConfig(dir: string): Promise<DeepSeekConfig> {
  const file = path.join(dir, 'config.json');
  let text: Buffer;
  try { text = await readFile(file); } catch (e) { throw new Error(`model: cannot read ${file}: ${(e as Error).message}`); }
  if (text.length > MAX_CONFIG_BYTES) throw new Error(`model: ${file} is ${text.length} bytes (over 1 MiB); not a config`);
  let json: unknown;
  try { json = JSON.parse(text.toString('utf8')); } catch (e) { throw new Error(`model: ${file} is not valid JSON: ${(e as Error).message}`); }
  return parseHFConfig(json);
}

export interface LoadedModel {
  cfg: DeepSeekConfig; params: ModelParams; dir: string; extraTensors: string[];
  /** Things the user should know about the load (e.g. untied MTP copies). */
  notes: string[];
}

/** An MTP copy of the embedding or head: `model.layers.<L+d>.(embed_tokens|shared_head.head).weight`. */
function mtpCopy(name: string, cfg: DeepSeekConfig): { depth: number; which: 'embed' | 'head' } | null {
  const m = /^model\.layers\.(\d+)\.(embed_tokens|shared_head\.head)\.weight$/.exec(name);
  if (!m) return null;
  const depth = Number(m[1]) - cfg.numHiddenLayers;
  if (depth < 0 || depth >= cfg.numNextnPredictLayers) return null;
  return { depth, which: m[2] === 'embed_tokens' ? 'embed' : 'head' };
}

/** Checks that the weights hold at least what the config implies, before anything is allocated. */
function checkImpliedSize(cfg: DeepSeekConfig, st: SafetensorsModel, dir: string, maxBytes: number): void {
  let stored = 0, storedTensors = 0;
  for (const n of st.names()) {
    if (n.endsWith('_scale_inv')) continue;
    stored += st.info(n).shape.reduce((a, b) => a * b, 1);
    storedTensors++;
  }
  const implied = modelSize(cfg);
  if (implied.elements > stored || implied.tensors > storedTensors) {
    throw new Error(`model: ${path.join(dir, 'config.json')} implies ${implied.elements.toExponential(3)} parameters in ${implied.tensors} tensors, but the weights hold ${stored} in ${storedTensors}: config.json does not describe these weights (check num_hidden_layers, hidden_size, vocab_size and the expert counts)`);
  }
  checkAllocation(cfg, { limitBytes: maxBytes, bytesPerElement: 4, what: `model: ${path.join(dir, 'config.json')}`, purpose: 'loading', fix: 'this machine cannot hold the model as f32 (set FRUGAL_MAX_MEMORY_BYTES to raise the limit if it can)' });
}

/** Index of the first non-finite value and how many there are, or null when all are finite. */
function nonFinite(x: Float32Array): { first: number; count: number } | null {
  let first = -1, count = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) { if (first < 0) first = i; count++; }
  }
  return first < 0 ? null : { first, count };
}

/** Loads a model directory into float32 parameters (see the file comment for what is checked). */
export async function loadModel(dir: string, opts: { onProgress?: (done: number, total: number) => void; maxBytes?: number } = {}): Promise<LoadedModel> {
  const cfg = await loadConfig(dir);
  const st = await SafetensorsModel.open(dir);
  try {
    checkImpliedSize(cfg, st, dir, opts.maxBytes ?? memoryLimitBytes());
    const params = initParams(cfg, { init: 'zeros' });
    const entries = paramEntries(params, cfg);
    const wanted = new Set(entries.map(([n]) => n));
    const notes: string[] = [];
    const read = async (name: string, shape: readonly number[]): Promise<Float32Array> => {
      const info = st.info(name);
      if (info.shape.join('x') !== shape.join('x')) throw new Error(`model: tensor ${name} has shape [${info.shape}] but the config implies [${shape}]`);
      const data = await st.float32(name);
      const bad = nonFinite(data);
      if (bad) throw new Error(`model: tensor ${name} in ${dir} holds ${bad.count} non-finite value(s) (NaN/Inf; first at index ${bad.first}): the weights are damaged or come from a diverged run — refusing to load them`);
      return data;
    };
    // Main tensors first, then the MTP copies of embed/head, so a copy can never overwrite the main tensor.
    const copies = entries.filter(([n]) => mtpCopy(n, cfg) !== null);
    let done = 0;
    for (const [name, t] of entries) {
      if (mtpCopy(name, cfg)) continue;
      if (!st.has(name)) throw new Error(`model: ${dir} lacks tensor ${name} (config implies it)`);
      (t.data as Float32Array).set(await read(name, t.shape));
      t.version++; // announced: a device copy of the old values is stale
      opts.onProgress?.(++done, entries.length);
    }
    for (const [name, t] of copies) {
      const c = mtpCopy(name, cfg)!;
      const main = c.which === 'embed' ? params.embed : params.head;
      if (st.has(name)) {
        const data = await read(name, t.shape);
        const mainData = main.data as Float32Array;
        if (t !== main || !data.every((v, i) => v === mainData[i])) {
          // The file stores a different copy: the MTP module keeps its own tensor.
          const own = new Tensor(data, t.shape.slice()).param();
          if (c.which === 'embed') params.mtp[c.depth]!.embed = own; else params.mtp[c.depth]!.head = own;
          notes.push(`${name} differs from ${c.which === 'embed' ? 'model.embed_tokens.weight' : 'lm_head.weight'}: the MTP module uses its own copy`);
        }
      } // absent: MTP shares the main tensor (DeepSeek-V3 ties them).
      opts.onProgress?.(++done, entries.length);
    }
    const extraTensors = st.names().filter((n) => !wanted.has(n) && !n.endsWith('_scale_inv'));
    return { cfg, params, dir, extraTensors, notes };
  } finally {
    st.close();
  }
}

/** Writes config.json and model.safetensors (F32) atomically into dir. */
export async function saveModel(dir: string, cfg: DeepSeekConfig, params: ModelParams, extraFiles: Record<string, string> = {}): Promise<void> {
  await mkdir(dir, { recursive: true });
  const seen = new Set<string>();
  const tensors = [];
  for (const [name, t] of paramEntries(params, cfg)) {
    if (seen.has(name)) continue;
    seen.add(name);
    tensors.push({ name, dtype: 'F32' as const, shape: t.shape.slice(), data: t.data as Float32Array });
  }
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  await atomicWrite(path.join(dir, 'config.json'), JSON.stringify(toHFConfig(cfg), null, 2) + '\n');
  for (const [name, text] of Object.entries(extraFiles)) await atomicWrite(path.join(dir, name), text);
}

/** Write to a temp file, fsync, rename: a crash leaves either the old or the new file. */
export async function atomicWrite(file: string, data: string | Uint8Array): Promise<void> {
  await writeDataAtomic(file, data);
}
