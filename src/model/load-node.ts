/**
 * Loading and saving Hugging Face model directories (config.json + *.safetensors): every tensor
 * the config implies must be present with the right shape; FP8 weights are dequantised through
 * their `weight_scale_inv`; unknown tensors are reported, not silently used.
 */
import { readFile, mkdir, writeFile, rename, open } from 'node:fs/promises';
import path from 'node:path';
import { SafetensorsModel, writeSafetensors } from '../io/safetensors-node.js';
import { parseHFConfig, toHFConfig, type DeepSeekConfig } from './config.js';
import { initParams, paramEntries, type ModelParams } from './deepseek.js';

const MAX_CONFIG_BYTES = 1 << 20;

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

export interface LoadedModel { cfg: DeepSeekConfig; params: ModelParams; dir: string; extraTensors: string[] }

/** Loads a model directory into float32 parameters. */
export async function loadModel(dir: string, opts: { onProgress?: (done: number, total: number) => void } = {}): Promise<LoadedModel> {
  const cfg = await loadConfig(dir);
  const params = initParams(cfg, { init: 'zeros' });
  const st = await SafetensorsModel.open(dir);
  try {
    const entries = paramEntries(params, cfg);
    const wanted = new Set(entries.map(([n]) => n));
    let done = 0;
    for (const [name, t] of entries) {
      if (!st.has(name)) {
        // MTP copies of embed/head may be absent: share the main ones.
        if (/\.(embed_tokens|shared_head\.head)\.weight$/.test(name) && name.startsWith(`model.layers.${cfg.numHiddenLayers}`)) continue;
        throw new Error(`model: ${dir} lacks tensor ${name} (config implies it)`);
      }
      const info = st.info(name);
      const expect = t.shape.join('x');
      if (info.shape.join('x') !== expect) throw new Error(`model: tensor ${name} has shape [${info.shape}] but the config implies [${t.shape}]`);
      const data = await st.float32(name);
      (t.data as Float32Array).set(data);
      opts.onProgress?.(++done, entries.length);
    }
    // Main and MTP embed/head are separate tensors after loading when both are stored.
    const extraTensors = st.names().filter((n) => !wanted.has(n) && !n.endsWith('_scale_inv'));
    return { cfg, params, dir, extraTensors };
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
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  const fh = await open(tmp, 'r+');
  try { await fh.sync(); } finally { await fh.close(); }
  await rename(tmp, file);
}
