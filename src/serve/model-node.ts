/**
 * Shared by the `logits`, `generate`, `info` and `serve` verbs: opening a model directory (with its
 * tokenizer when present) or a GGUF file (tokenizer from the file), parsing `--tokens` lists,
 * choosing a backend, and a stable model id (hash of config.json and the weight files' names, sizes
 * and mtimes, or of the GGUF file's name, size and mtime) that keys the disk cache.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { UsageError } from '../cli/main.js';
import { loadModel, type LoadedModel } from '../model/load-node.js';
import { isGgufPath, loadGguf, type GgufModel } from '../model/gguf-node.js';
import { loadTokenizer } from '../io/tokenizer-node.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { useBackend, type BackendChoice } from '../backend/setup.js';

/**
 * Checks that dir is a model directory (config.json present) or, unless `gguf` is false, a GGUF
 * file; throws UsageError naming the fix.
 */
export function checkModelDir(dir: unknown, flag = '--model', opts: { gguf?: boolean } = {}): string {
  const gguf = opts.gguf ?? true;
  if (typeof dir !== 'string' || dir === '') throw new UsageError(`${flag} DIR is required (a folder with config.json and *.safetensors${gguf ? ', or a .gguf file' : ''})`);
  if (gguf && isGgufPath(dir)) return dir;
  if (!existsSync(path.join(dir, 'config.json'))) throw new UsageError(`${flag} ${dir}: no config.json there (expected a Hugging Face model folder${gguf ? ' or a GGUF file' : ''})`);
  return dir;
}

/** A DeepSeek model opened from a folder or a GGUF file (with its Q8_0 blocks, when any). */
export type OpenedModel = LoadedModel & { gguf: GgufModel | null };

/** Loads a GGUF file as a DeepSeek model, or explains that it holds the dense model. */
async function openGguf(file: string): Promise<{ model: OpenedModel; tokenizer: Tokenizer | null }> {
  const g = await loadGguf(file);
  if (g.kind !== 'deepseek') throw new Error(`${file} holds a llama-architecture (dense) model: 'frugal logits' and 'frugal info' read it; generate and serve run deepseek2 models`);
  return { model: { cfg: g.cfg, params: g.params, dir: file, extraTensors: g.unused, gguf: g }, tokenizer: g.tokenizer };
}

/** Loads the model and, when the folder has tokenizer.json (or the GGUF file a vocabulary), its tokenizer. */
export async function openModel(dir: string, opts: { tokenizer?: boolean } = {}): Promise<{ model: OpenedModel; tokenizer: Tokenizer | null }> {
  if (isGgufPath(dir)) {
    const r = await openGguf(dir);
    return opts.tokenizer === false ? { model: r.model, tokenizer: null } : r;
  }
  const model: OpenedModel = { ...(await loadModel(dir)), gguf: null };
  let tokenizer: Tokenizer | null = null;
  if ((opts.tokenizer ?? true) && existsSync(path.join(dir, 'tokenizer.json'))) tokenizer = await loadTokenizer(dir);
  if (tokenizer && tokenizer.vocabSize > model.cfg.vocabSize) {
    throw new Error(`${dir}: tokenizer.json has ${tokenizer.vocabSize} ids but the model's vocab_size is ${model.cfg.vocabSize}`);
  }
  return { model, tokenizer };
}

/** Parses "3,17,42" (or space-separated) into ids; throws UsageError on anything else. */
export function parseTokenList(s: unknown, flag = '--tokens'): number[] {
  if (typeof s !== 'string' || s.trim() === '') throw new UsageError(`${flag} expects comma-separated token ids, e.g. ${flag} 3,17,42`);
  const parts = s.split(/[\s,]+/).filter((x) => x !== '');
  return parts.map((p) => {
    const n = Number(p);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag}: '${p}' is not a token id (non-negative integer)`);
    return n;
  });
}

/** Selects the compute backend named by `--backend` (ts needs no set-up). */
export async function selectBackend(choice: unknown): Promise<void> {
  const c = String(choice ?? 'ts');
  if (!['auto', 'ts', 'wasm', 'native'].includes(c)) throw new UsageError(`--backend must be auto, ts, wasm or native, got '${c}'`);
  if (c !== 'ts') await useBackend(c as BackendChoice);
}

/** Stable id of a model directory's contents (config + weight file names, sizes, mtimes). */
export function modelFingerprint(dir: string): string {
  const h = createHash('sha256');
  if (isGgufPath(dir)) {
    const st = statSync(dir);
    h.update(`gguf\0${path.resolve(dir)}\0${st.size}\0${st.mtimeMs}`);
    return h.digest('hex').slice(0, 32);
  }
  h.update(readFileSync(path.join(dir, 'config.json')));
  for (const f of readdirSync(dir).sort()) {
    if (!f.endsWith('.safetensors')) continue;
    const st = statSync(path.join(dir, f));
    h.update(`\0${f}\0${st.size}\0${st.mtimeMs}`);
  }
  return h.digest('hex').slice(0, 32);
}
