/**
 * Shared by the `logits`, `generate`, `info` and `serve` verbs: finding the model (a model
 * directory, a `frugal train` run folder, or a GGUF file), opening it (with its tokenizer when
 * present; a GGUF file's tokenizer comes from the file), parsing `--tokens` lists, choosing a
 * backend and threads, and the model's content fingerprint that keys the disk cache.
 *
 * Contract:
 * - `resolveModelDir` accepts a model folder (config.json), a GGUF file, or a run folder: its
 *   `final/` model, else its latest checkpoint; the default served name is the run's name (or the
 *   GGUF file's name without `.gguf`), never "final".
 * - `modelFingerprint` hashes what the model computes with (config + every parameter's bytes),
 *   once per loaded model: weights replaced in place (same size and mtime: `cp -p`, `rsync -a`)
 *   get a new fingerprint, so a disk cache never serves another model's rows.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { loadModel, type LoadedModel } from '../model/load-node.js';
import { toHFConfig } from '../model/config.js';
import { paramEntries } from '../model/deepseek.js';
import { isGgufPath, loadGguf, type GgufModel } from '../model/gguf-node.js';
import { loadTokenizer } from '../io/tokenizer-node.js';
import type { Tokenizer } from '../io/tokenizer.js';
import type { Model } from '../infer/generate.js';
import { findCheckpoint } from '../train/checkpoint-node.js';
import { useBackend, type BackendChoice } from '../backend/setup-node.js';

/** Folder names that say where a model sits in a run, never what it is. */
const RUN_PARTS = new Set(['final', 'checkpoint', 'checkpoint.old']);

/** A model folder found from what the user passed: the folder, a default name, and what was chosen. */
export interface ResolvedModel { dir: string; name: string; note: string | null }

/**
 * Finds the model in `dir`: a GGUF file (unless `gguf` is false), a model folder (config.json),
 * or a `frugal train` run folder (its `final/`, else its latest checkpoint). Throws UsageError
 * naming what was looked for.
 */
export function resolveModelDir(dir: unknown, flag = '--model', opts: { gguf?: boolean } = {}): ResolvedModel {
  const gguf = opts.gguf ?? true;
  if (typeof dir !== 'string' || dir === '') throw new UsageError(`${flag} DIR is required (a folder with config.json and *.safetensors, a 'frugal train' run folder${gguf ? ', or a .gguf file' : ''})`);
  const nameOf = (d: string): string => {
    const abs = path.resolve(d);
    return RUN_PARTS.has(path.basename(abs)) ? path.basename(path.dirname(abs)) : path.basename(abs);
  };
  if (gguf && isGgufPath(dir)) return { dir, name: path.basename(dir).replace(/\.gguf$/i, ''), note: null };
  if (existsSync(path.join(dir, 'config.json'))) return { dir, name: nameOf(dir), note: null };
  const final = path.join(dir, 'final');
  if (existsSync(path.join(final, 'config.json'))) return { dir: final, name: nameOf(dir), note: `${dir} is a run folder; using its final model ${final}` };
  const ckpt = findCheckpoint(path.join(dir, 'checkpoint'));
  if (ckpt && existsSync(path.join(ckpt, 'config.json'))) return { dir: ckpt, name: nameOf(dir), note: `${dir} is a run folder without final/ (training not finished); using its latest checkpoint ${ckpt}` };
  throw new UsageError(`${flag} ${dir}: no config.json there, nor a run's final/ or checkpoint/ (expected a Hugging Face model folder, a 'frugal train' run folder${gguf ? ' or a GGUF file' : ''})`);
}

/** Checks that dir holds a model (see resolveModelDir) and returns the model folder. */
export function checkModelDir(dir: unknown, flag = '--model', opts: { gguf?: boolean } = {}): string {
  return resolveModelDir(dir, flag, opts).dir;
}

/** A DeepSeek model opened from a folder or a GGUF file (with its Q8_0 blocks, when any). */
export type OpenedModel = LoadedModel & { gguf: GgufModel | null };

/** Loads a GGUF file as a DeepSeek model, or explains that it holds the dense model. */
async function openGguf(file: string): Promise<{ model: OpenedModel; tokenizer: Tokenizer | null }> {
  const g = await loadGguf(file);
  if (g.kind !== 'deepseek') throw new Error(`${file} holds a llama-architecture (dense) model: 'frugal logits' and 'frugal info' read it; generate and serve run deepseek2 models`);
  return { model: { cfg: g.cfg, params: g.params, dir: file, extraTensors: g.unused, notes: [], gguf: g }, tokenizer: g.tokenizer };
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

/** Largest tokenizer_config.json read (the same bound as tokenizer files). */
const MAX_TOKENIZER_CONFIG_BYTES = 64 * 1024 * 1024;

/**
 * Reads `chat_template` (a string, or HF's list of named templates: `default`, else the first)
 * and the BOS/EOS strings from DIR/tokenizer_config.json, when present. Throws an Error naming
 * the file when it is not a JSON object of bounded size.
 */
export function readTokenizerConfig(dir: string): { chatTemplate: string | null; bos: string; eos: string } {
  const file = path.join(dir, 'tokenizer_config.json');
  if (!existsSync(file)) return { chatTemplate: null, bos: '', eos: '' };
  const st = statSync(file);
  if (!st.isFile() || st.size > MAX_TOKENIZER_CONFIG_BYTES) throw new Error(`${file} is not a regular file of at most ${MAX_TOKENIZER_CONFIG_BYTES} bytes`);
  let j: unknown;
  try { j = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file} is not valid JSON: ${(e as Error).message}`); }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error(`${file} must hold a JSON object`);
  const o = j as Record<string, unknown>;
  const tok = (v: unknown): string => (typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : '');
  let t = o.chat_template;
  if (Array.isArray(t)) {
    const named = t.find((x) => x && typeof x === 'object' && (x as { name?: unknown }).name === 'default') ?? t[0];
    t = named && typeof named === 'object' ? (named as { template?: unknown }).template : undefined;
  }
  return { chatTemplate: typeof t === 'string' ? t : null, bos: tok(o.bos_token), eos: tok(o.eos_token) };
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

/** Selects the compute backend named by `--backend` (ts needs no set-up) with `--threads`. */
export async function selectBackend(choice: unknown, threads?: unknown): Promise<void> {
  const c = String(choice ?? 'ts');
  if (!['auto', 'ts', 'wasm', 'native', 'webgpu'].includes(c)) throw new UsageError(`--backend must be auto, ts, wasm, native or webgpu, got '${c}'`);
  if (threads !== undefined && !(Number.isInteger(threads) && (threads as number) >= 1 && (threads as number) <= 64)) throw new UsageError(`--threads must be an integer 1..64, got ${String(threads)}`);
  if (c === 'ts') return;
  try {
    await useBackend(c as BackendChoice, threads === undefined ? {} : { threads: threads as number });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const fingerprints = new WeakMap<object, string>();

/**
 * Content fingerprint of a model: SHA-256 over its config and every parameter (name, shape,
 * bytes), computed once per loaded model. `variant` adds what else changes the computed rows
 * (e.g. decode weight precision).
 */
export function modelFingerprint(model: Model, variant = ''): string {
  let base = fingerprints.get(model.params);
  if (base === undefined) {
    const h = createHash('sha256');
    h.update(JSON.stringify(toHFConfig(model.cfg)));
    const seen = new Set<object>();
    for (const [name, t] of paramEntries(model.params, model.cfg)) {
      if (seen.has(t)) continue;
      seen.add(t);
      const d = t.data as Float32Array;
      h.update(`\0${name}\0${t.shape.join('x')}\0`).update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    }
    base = h.digest('hex');
    fingerprints.set(model.params, base);
  }
  return createHash('sha256').update(`${base}\0${variant}`).digest('hex').slice(0, 32);
}
