/**
 * Loading a Hugging Face-format model folder served over HTTP (config.json, model.safetensors,
 * optional tokenizer.json) into float32 parameters — the browser's counterpart of
 * src/model/load-node.ts, over `fetch` instead of files.
 *
 * Contract:
 * - Only the three fixed file names under the given base URL are fetched; nothing else.
 * - Sizes are bounded before allocation: the config's implied parameter count against `maxBytes`
 *   (default 2 GiB of f32), and the safetensors body against its Content-Length and the header.
 * - Every tensor the config implies must be present with the implied shape; non-finite weights
 *   are refused. FP8 (`F8_E4M3` + `weight_scale_inv`) weights are dequantised (128×128 blocks or
 *   the config's `weight_block_size`). MTP copies of embed/head that differ get their own tensor.
 * - Errors name the URL and what is wrong.
 */
import { Tensor } from '../autograd/tensor.js';
import { parseHFConfig, type DeepSeekConfig } from '../model/config.js';
import { initParams, paramEntries, type ModelParams } from '../model/deepseek.js';
import { modelSize } from '../model/size.js';
import { SafetensorsFile, dequantizeFp8Weight, memorySource } from '../io/safetensors.js';
import { Tokenizer } from '../io/tokenizer.js';

/** A model loaded from a URL. */
export interface UrlModel { cfg: DeepSeekConfig; params: ModelParams; tokenizer: Tokenizer | null; base: string }

const join = (base: string, file: string): string => base.replace(/\/+$/, '') + '/' + file;

async function get(url: string, fetchFn: typeof fetch): Promise<Response> {
  const r = await fetchFn(url);
  if (!r.ok) throw new Error(`model: GET ${url} answered ${r.status} ${r.statusText}`);
  return r;
}

/** Loads config, weights and (when present) tokenizer from `base` (see the contract). */
export async function loadModelFromUrl(base: string, opts: { maxBytes?: number; fetch?: typeof fetch } = {}): Promise<UrlModel> {
  const fetchFn = opts.fetch ?? fetch;
  const maxBytes = opts.maxBytes ?? 2 ** 31;
  const raw = await (await get(join(base, 'config.json'), fetchFn)).json() as Record<string, unknown>;
  const cfg = parseHFConfig(raw);
  const implied = modelSize(cfg);
  if (implied.elements * 4 > maxBytes) throw new Error(`model: ${join(base, 'config.json')} implies ${implied.elements} parameters (${(implied.elements * 4 / 2 ** 30).toFixed(1)} GiB as f32), more than this page may hold (${(maxBytes / 2 ** 30).toFixed(1)} GiB)`);
  const res = await get(join(base, 'model.safetensors'), fetchFn);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes * 1.5) throw new Error(`model: ${join(base, 'model.safetensors')} is ${declared} bytes, more than this page may hold`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const st = await SafetensorsFile.open(memorySource(bytes));
  const block = (raw.quantization_config as { weight_block_size?: number[] } | undefined)?.weight_block_size ?? [128, 128];
  const float32 = async (name: string): Promise<Float32Array> => {
    const info = st.info(name);
    if (info.dtype === 'F8_E4M3' && st.has(`${name}_scale_inv`)) {
      const scale = await st.float32(`${name}_scale_inv`);
      return dequantizeFp8Weight(await st.bytes(name), scale, info.shape[0]!, info.shape[1]!, block[0], block[1]);
    }
    return st.float32(name);
  };
  const params = initParams(cfg, { init: 'zeros' });
  const entries = paramEntries(params, cfg);
  const mtpCopy = (name: string): { depth: number; which: 'embed' | 'head' } | null => {
    const m = /^model\.layers\.(\d+)\.(embed_tokens|shared_head\.head)\.weight$/.exec(name);
    const depth = m ? Number(m[1]) - cfg.numHiddenLayers : -1;
    return m && depth >= 0 && depth < cfg.numNextnPredictLayers ? { depth, which: m[2] === 'embed_tokens' ? 'embed' : 'head' } : null;
  };
  const read = async (name: string, shape: readonly number[]): Promise<Float32Array> => {
    const info = st.info(name);
    if (info.shape.join('x') !== shape.join('x')) throw new Error(`model: tensor ${name} has shape [${info.shape}] but the config implies [${shape}]`);
    const data = await float32(name);
    for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) throw new Error(`model: tensor ${name} holds a non-finite value at index ${i}; refusing to load it`);
    return data;
  };
  for (const [name, t] of entries) {
    if (mtpCopy(name)) continue;
    if (!st.has(name)) throw new Error(`model: ${join(base, 'model.safetensors')} lacks tensor ${name} (config implies it)`);
    (t.data as Float32Array).set(await read(name, t.shape));
    t.version++; // announced: a device copy of the old values is stale
  }
  for (const [name, t] of entries) {
    const c = mtpCopy(name);
    if (!c || !st.has(name)) continue; // absent: MTP shares the main tensor (DeepSeek-V3 ties them)
    const data = await read(name, t.shape);
    const main = (c.which === 'embed' ? params.embed : params.head).data as Float32Array;
    if (data.some((v, i) => v !== main[i])) {
      const own = new Tensor(data, t.shape.slice()).param();
      if (c.which === 'embed') params.mtp[c.depth]!.embed = own; else params.mtp[c.depth]!.head = own;
    }
  }
  let tokenizer: Tokenizer | null = null;
  const tr = await fetchFn(join(base, 'tokenizer.json'));
  if (tr.ok) tokenizer = Tokenizer.fromJSON(await tr.json() as object);
  return { cfg, params, tokenizer, base };
}
