/**
 * Training checkpoints on disk (Node). A checkpoint is a folder in the Hugging Face model layout
 * (config.json, model.safetensors, tokenizer.json, tokenizer_config.json — loadable by any
 * DeepSeek-V3 tool) plus `trainer_state.safetensors` (AdamW moments, F32 or BF16, named
 * `exp_avg.<param>` / `exp_avg_sq.<param>`) and `trainer_state.json` (step, data position, seed,
 * options, hashes of config / tokenizer / data, sha256 of both safetensors files).
 *
 * Writing never damages the previous checkpoint: everything goes to a fresh temp folder (each
 * file fsynced), then `ckpt` → `ckpt.old`, temp → `ckpt`, `ckpt.old` removed. A crash between the
 * renames leaves `ckpt.old`, which `findCheckpoint` returns. A failed write (disk full) removes the
 * temp folder and throws; the old checkpoint is untouched.
 * Temp folders and files of writes that were killed (`.<name>.tmp-<pid>`, `<file>.tmp-<pid>`)
 * are removed by the next save or `removeStaleTemps` once their process is gone.
 * Reading verifies the checksums and every hash the caller expects, and throws a
 * {@link CheckpointError} naming the file and the fix.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Tensor } from '../autograd/tensor.js';
import { toHFConfig, type DeepSeekConfig } from '../model/config.js';
import { paramEntries, trainableParams, type ModelParams } from '../model/deepseek.js';
import { atomicWrite, loadModel, saveModel } from '../model/load-node.js';
import { openSafetensorsFile, writeSafetensors } from '../io/safetensors-node.js';
import type { AdamWState } from './optim.js';
import type { TrainerState } from './trainer.js';

export const STATE_FORMAT = 'frugal-trainer-state';
export const STATE_VERSION = 1;

/** A checkpoint that cannot be used: corrupt, incomplete or from a different run. */
export class CheckpointError extends Error {}

/** trainer_state.json. */
export interface CheckpointMeta {
  format: typeof STATE_FORMAT;
  version: number;
  state: TrainerState;
  /** Run options (batch, seq, lr ...) as given to the trainer. */
  options: Record<string, unknown>;
  configHash: string;
  tokenizerHash: string;
  dataHash: string;
  /** Data spec and config spec, for messages. */
  data: string;
  config: string;
  precision: string;
  files: Record<string, string>;
  savedAt: string;
}

/** sha256 of bytes/text, hex, first 16 chars. */
export function shortHash(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

/** Hash of a config (its HF JSON). */
export function configHash(cfg: DeepSeekConfig): string {
  return shortHash(JSON.stringify(toHFConfig(cfg)));
}

/** Hash of a token stream. */
export function tokensHash(tokens: Int32Array): string {
  return shortHash(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength));
}

async function fileSha(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

/** Unique trainable tensors with their (first) HF name, in trainableParams order. */
export function namedTrainable(p: ModelParams, cfg: DeepSeekConfig): Array<[string, Tensor]> {
  const names = new Map<Tensor, string>();
  for (const [n, t] of paramEntries(p, cfg)) if (!names.has(t)) names.set(t, n);
  return trainableParams(p, cfg).map((t) => [names.get(t)!, t]);
}

/** The checkpoint folder to resume from in `outDir/name` (or its `.old` twin after a crash mid-swap). */
export function findCheckpoint(dir: string): string | null {
  if (existsSync(path.join(dir, 'trainer_state.json'))) return dir;
  if (existsSync(path.join(`${dir}.old`, 'trainer_state.json'))) return `${dir}.old`;
  return null;
}

async function fsyncDir(dir: string): Promise<void> {
  try { const d = await open(dir, 'r'); await d.sync().catch(() => undefined); await d.close(); } catch { /* best effort */ }
}

/** True while process `pid` exists (EPERM: it exists but is not ours). */
function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/**
 * Removes temp folders/files left in `dir` by killed writes (`*.tmp-<pid>[-suffix]` of a process
 * that no longer runs); returns the names removed.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  let names: string[];
  try { names = await readdir(dir); } catch { return []; }
  const removed: string[] = [];
  for (const n of names) {
    const m = /\.tmp-(\d+)(?:-[0-9a-z]+)?$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    await rm(path.join(dir, n), { recursive: true, force: true }).catch(() => undefined);
    removed.push(n);
  }
  return removed;
}

export interface SaveInput {
  cfg: DeepSeekConfig;
  params: ModelParams;
  optim: AdamWState;
  meta: Omit<CheckpointMeta, 'format' | 'version' | 'files' | 'savedAt'>;
  /** Extra files copied in (tokenizer.json, tokenizer_config.json ...). */
  extraFiles: Record<string, string>;
  /** Write only the model files (no optimizer state): a `final` export. */
  modelOnly?: boolean;
}

/** Writes a checkpoint to `dir` atomically (see the file comment). */
export async function saveCheckpoint(dir: string, input: SaveInput): Promise<void> {
  const parent = path.dirname(path.resolve(dir));
  await mkdir(parent, { recursive: true });
  await removeStaleTemps(parent);
  const tmp = path.join(parent, `.${path.basename(dir)}.tmp-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  try {
    await saveModel(tmp, input.cfg, input.params, input.extraFiles);
    if (!input.modelOnly) {
      const bf16 = input.optim.momentDtype === 'bf16';
      const tensors = namedTrainable(input.params, input.cfg).flatMap(([name, t], i) => [
        { name: `exp_avg.${name}`, dtype: (bf16 ? 'BF16' : 'F32') as 'BF16' | 'F32', shape: t.shape.slice(), data: input.optim.m[i]! },
        { name: `exp_avg_sq.${name}`, dtype: (bf16 ? 'BF16' : 'F32') as 'BF16' | 'F32', shape: t.shape.slice(), data: input.optim.v[i]! },
      ]);
      await writeSafetensors(path.join(tmp, 'trainer_state.safetensors'), tensors, { format: 'pt', step: String(input.optim.step) });
      const meta: CheckpointMeta = {
        format: STATE_FORMAT, version: STATE_VERSION, ...input.meta,
        files: {
          'model.safetensors': await fileSha(path.join(tmp, 'model.safetensors')),
          'trainer_state.safetensors': await fileSha(path.join(tmp, 'trainer_state.safetensors')),
        },
        savedAt: new Date().toISOString(),
      };
      meta.state = { ...meta.state, elapsedMs: Math.round(meta.state.elapsedMs) };
      // The optimizer step travels in the JSON too (safetensors metadata is informational).
      (meta.options as Record<string, unknown>).optimizerStep = input.optim.step;
      await atomicWrite(path.join(tmp, 'trainer_state.json'), JSON.stringify(meta, null, 2) + '\n');
    }
    await fsyncDir(tmp);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    throw new CheckpointError(`cannot write checkpoint ${dir}: ${(e as Error).message} (the previous checkpoint, if any, is intact)`);
  }
  const old = `${dir}.old`;
  if (existsSync(dir)) {
    await rm(old, { recursive: true, force: true });
    await rename(dir, old);
  }
  await rename(tmp, dir);
  await fsyncDir(parent);
  await rm(old, { recursive: true, force: true });
}

/** What the resuming run expects to match. */
export interface Expect { configHash?: string; tokenizerHash?: string; dataHash?: string; momentDtype?: 'f32' | 'bf16' }

export interface LoadedCheckpoint { dir: string; meta: CheckpointMeta; cfg: DeepSeekConfig; params: ModelParams; optim: AdamWState }

/** Reads and fully verifies trainer_state.json of `dir` (no tensors). */
export async function readCheckpointMeta(dir: string): Promise<CheckpointMeta> {
  const file = path.join(dir, 'trainer_state.json');
  let text: string;
  try {
    if ((await stat(file)).size > 1 << 20) throw new Error('over 1 MiB');
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new CheckpointError(`checkpoint ${dir}: cannot read trainer_state.json (${(e as Error).message}); it is not a complete checkpoint — start a new run with another --out`);
  }
  let meta: CheckpointMeta;
  try { meta = JSON.parse(text) as CheckpointMeta; } catch (e) {
    throw new CheckpointError(`checkpoint ${dir} is corrupt: trainer_state.json is not valid JSON (${(e as Error).message}); refusing to resume — start a new run with another --out`);
  }
  if (meta?.format !== STATE_FORMAT || meta.version !== STATE_VERSION || typeof meta.state?.step !== 'number' || typeof meta.files !== 'object') {
    throw new CheckpointError(`checkpoint ${dir}: trainer_state.json is not a ${STATE_FORMAT} v${STATE_VERSION} file; refusing to resume`);
  }
  return meta;
}

/** Loads a checkpoint, verifying checksums and the expected hashes. */
export async function loadCheckpoint(dir: string, expect: Expect = {}): Promise<LoadedCheckpoint> {
  const meta = await readCheckpointMeta(dir);
  for (const [name, sha] of Object.entries(meta.files)) {
    let got: string;
    try { got = await fileSha(path.join(dir, name)); } catch (e) {
      throw new CheckpointError(`checkpoint ${dir}: ${name} is missing (${(e as Error).message}); refusing to resume`);
    }
    if (got !== sha) throw new CheckpointError(`checkpoint ${dir} is corrupt: ${name} does not match its checksum in trainer_state.json (truncated or modified); refusing to resume — restore the file or start a new run with another --out`);
  }
  const mismatch = (what: string, saved: string, now: string | undefined, fix: string): void => {
    if (now !== undefined && now !== saved) throw new CheckpointError(`checkpoint ${dir} does not match this run: ${what} differs (checkpoint ${saved}, this run ${now}); ${fix}`);
  };
  mismatch('model config', meta.configHash, expect.configHash, `resume with the same --config (${meta.config}) or start a new run with another --out`);
  mismatch('tokenizer', meta.tokenizerHash, expect.tokenizerHash, 'use the tokenizer saved in the checkpoint (omit --tokenizer)');
  mismatch('training data', meta.dataHash, expect.dataHash, `resume with the same --data (${meta.data})`);
  let loaded;
  try { loaded = await loadModel(dir); } catch (e) { throw new CheckpointError(`checkpoint ${dir}: ${(e as Error).message}; refusing to resume`); }
  const { cfg, params } = loaded;
  mismatch('model config', meta.configHash, configHash(cfg), 'the checkpoint config.json was edited; restore it');
  const dtype = (meta.options.momentDtype as 'f32' | 'bf16' | undefined) ?? 'f32';
  mismatch('optimizer moment dtype', dtype, expect.momentDtype, `resume with the same --precision (${meta.precision})`);
  const { file, close } = await openSafetensorsFile(path.join(dir, 'trainer_state.safetensors'));
  try {
    const m: (Float32Array | Uint16Array)[] = [], v: (Float32Array | Uint16Array)[] = [];
    for (const [name, t] of namedTrainable(params, cfg)) {
      for (const [key, list] of [[`exp_avg.${name}`, m], [`exp_avg_sq.${name}`, v]] as const) {
        if (!file.has(key)) throw new CheckpointError(`checkpoint ${dir}: trainer_state.safetensors lacks ${key}; refusing to resume`);
        const bytes = (await file.bytes(key)).slice();
        const arr = dtype === 'bf16' ? new Uint16Array(bytes.buffer, 0, bytes.byteLength / 2) : new Float32Array(bytes.buffer, 0, bytes.byteLength / 4);
        if (arr.length !== t.size || file.info(key).dtype !== (dtype === 'bf16' ? 'BF16' : 'F32')) throw new CheckpointError(`checkpoint ${dir}: ${key} has the wrong size or dtype; refusing to resume`);
        list.push(arr);
      }
    }
    const step = Number(meta.options.optimizerStep ?? meta.state.step - meta.state.skippedSteps);
    return { dir, meta, cfg, params, optim: { step, momentDtype: dtype, m, v } };
  } finally {
    close();
  }
}
