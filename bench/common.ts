/**
 * Shared machinery of the model benchmarks (train, prefill, decode, memory) that put Frugal next
 * to the PyTorch peer (bench/peer/model.py): the configs and shapes, the token stream both sides
 * draw (one 32-bit LCG, so batches are identical), statistics (median/min/max), the peer process
 * (JSON lines over stdin/stdout, started with the environment that makes PyTorch fast here:
 * OpenBLAS threads = thread count, OMP_WAIT_POLICY=PASSIVE, tcmalloc preloaded, OPENBLAS_CORETYPE
 * and OPENBLAS_L2_SIZE unset), the optimizer, and the table/JSON/markdown output.
 * Node-only (bench code).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { Tensor } from '../src/autograd/tensor.js';
import { presets, type DeepSeekConfig } from '../src/model/config.js';
import { initParams, forward, lossFn, trainableParams, KVCache } from '../src/model/deepseek.js';
import { RowDecoder, f32RowsLinear, type RowsLinear } from '../src/model/decode.js';
import { engineLinear, f32EngineWeights } from '../src/model/decode-engine.js';
import * as op from '../src/ops/index.js';
import { bf16Linear } from '../src/infer/bf16-node.js';
import { q8Linear } from '../src/infer/q8-node.js';
import { saveModel } from '../src/model/load-node.js';
import {
  denseConfigs, initDenseParams, denseForward, denseLossFn, denseParamEntries, denseTrainableParams, denseHFConfig, DenseKVCache,
  type DenseConfig,
} from '../src/model/dense.js';
import { writeSafetensors } from '../src/io/safetensors-node.js';

/** The command a user runs to install the peer. */
export const PEER_INSTALL = 'sh bench/peer/setup-trixie.sh   (PyTorch 2.6 in a Debian trixie chroot: the main peer) and sh bench/peer/setup.sh   (PyTorch 1.13 for /usr/bin/python3: the second column)';
export const PYTHON = '/usr/bin/python3';
const TCMALLOC = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4';

/** The trixie chroot of bench/peer/setup-trixie.sh (FRUGAL_PEER_CHROOT overrides the default). */
export function trixieRoot(): string { return process.env.FRUGAL_PEER_CHROOT ?? '/var/tmp/frugal-trixie'; }

/**
 * One PyTorch peer: 'torch' is the current PyTorch from the trixie chroot (eager, or with
 * torch.compile), 'torch-legacy' the host's /usr/bin/python3 (Debian bookworm's 1.13).
 */
export interface PeerSpec {
  id: 'torch' | 'torch-compile' | 'torch-blas1' | 'torch-legacy';
  /** Chroot directory the peer runs in (null: the host's python3). */
  root: string | null;
  compile: boolean;
  /**
   * OpenBLAS single-threaded while torch's own threads stay at the row's count ('torch-blas1').
   * On this shared 2-vCPU machine OpenBLAS 0.3.29 (trixie) with 2 threads under load burns 5–30×
   * the CPU of a 1-thread run (its threads wait on each other when one is descheduled), so the
   * current PyTorch also runs this way and its faster setup counts. Only at threads > 1.
   */
  blas1?: boolean;
}
export const LEGACY_PEER: PeerSpec = { id: 'torch-legacy', root: null, compile: false };

/** Why the chroot peer cannot run (null when DIR/usr/bin/python3 imports torch), mounting /proc, /dev, /sys if needed. */
export function chrootUnavailable(root = trixieRoot()): string | null {
  if (!existsSync(path.join(root, 'usr', 'bin', 'python3'))) return `no trixie chroot at ${root} (FRUGAL_PEER_CHROOT)`;
  if (process.getuid?.() !== 0) return 'running a chroot needs root';
  for (const m of ['proc', 'dev', 'sys']) {
    const dir = path.join(root, m);
    if (spawnSync('mountpoint', ['-q', dir]).status !== 0 && spawnSync('mount', ['--bind', `/${m}`, dir]).status !== 0) return `could not mount /${m} into ${root}`;
  }
  const r = spawnSync('chroot', [root, PYTHON, '-c', 'import torch'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? null : `torch does not import in ${root}: ${(r.stderr ?? '').trim().split('\n').pop()}`;
}

/** The peers this machine can run, the current PyTorch first, plus a note per missing one. */
export function availablePeers(): { specs: PeerSpec[]; notes: string[] } {
  const specs: PeerSpec[] = [], notes: string[] = [];
  const root = trixieRoot(), whyChroot = chrootUnavailable(root);
  if (whyChroot) notes.push(`PyTorch 2.6 peer skipped: ${whyChroot}`);
  else specs.push({ id: 'torch', root, compile: false }, { id: 'torch-blas1', root, compile: false, blas1: true }, { id: 'torch-compile', root, compile: true });
  const whyHost = peerUnavailable();
  if (whyHost) notes.push(`PyTorch 1.13 peer skipped: ${whyHost}`);
  else specs.push(LEGACY_PEER);
  return { specs, notes };
}

/** Shapes one config is benchmarked at. */
interface ShapeBase {
  /** Training and prefill batch × sequence. */
  batch: number; seq: number;
  /** decode: prompt then `steps` single-token steps (short context, and at ~1K context). */
  decodeShort: { prompt: number; steps: number };
  decodeLong: { prompt: number; steps: number };
  /** The scaling row: decode steps at ~4K tokens of context (past small's max_position_embeddings
   *  of 1024: RoPE positions are extrapolated; what is measured is cost, not quality). */
  decodeXL?: { prompt: number; steps: number };
}
/** A DeepSeek-style benchmark config (src/model/deepseek.ts). */
export type DeepSeekBenchShape = ShapeBase & { kind: 'deepseek'; cfg: DeepSeekConfig };
/** A dense Llama-style benchmark config (src/model/dense.ts). */
export type DenseBenchShape = ShapeBase & { kind: 'dense'; cfg: DenseConfig };
/** A benchmark config of either kind. */
export type BenchShape = DeepSeekBenchShape | DenseBenchShape;

/**
 * The DeepSeek-style benchmark configs: `small` is ANCHORS.md's model (= presets.small), `tiny`
 * the test model. Scripts that drive deepseek.ts directly (profile.ts, train-steps.ts) use these.
 */
export const BENCH_CONFIGS: Record<string, DeepSeekBenchShape> = {
  small: { kind: 'deepseek', cfg: presets.small!, batch: 8, seq: 256, decodeShort: { prompt: 16, steps: 240 }, decodeLong: { prompt: 992, steps: 32 }, decodeXL: { prompt: 4064, steps: 32 } },
  medium: { kind: 'deepseek', cfg: presets.medium!, batch: 8, seq: 256, decodeShort: { prompt: 16, steps: 240 }, decodeLong: { prompt: 992, steps: 32 }, decodeXL: { prompt: 4064, steps: 32 } },
  tiny: { kind: 'deepseek', cfg: presets.tiny!, batch: 2, seq: 32, decodeShort: { prompt: 4, steps: 16 }, decodeLong: { prompt: 200, steps: 16 } },
};

/**
 * Every config the model suites (train, prefill, decode, memory) accept: BENCH_CONFIGS plus
 * ANCHORS' `dense-10m` Llama-style baseline (standard MHA, SwiGLU, untied head; src/model/dense.ts),
 * run through the `BenchModel` adapter.
 */
export const MODEL_BENCH_CONFIGS: Record<string, BenchShape> = {
  small: BENCH_CONFIGS.small!,
  medium: BENCH_CONFIGS.medium!,
  'dense-10m': { kind: 'dense', cfg: denseConfigs['dense-10m']!, batch: 8, seq: 256, decodeShort: { prompt: 16, steps: 240 }, decodeLong: { prompt: 992, steps: 32 }, decodeXL: { prompt: 4064, steps: 32 } },
  tiny: BENCH_CONFIGS.tiny!,
};

/** A decode cache of either model kind (opaque to the benchmarks). */
export type BenchCache = KVCache | DenseKVCache;

/** What the benchmarks need of a model, whatever its kind; holds its parameters. */
export interface BenchModel {
  readonly kind: BenchShape['kind'];
  readonly vocabSize: number;
  /** Whether the model has MTP layers (the "+ MTP loss" training case). */
  readonly hasMtp: boolean;
  /** The tensors the optimizer updates. */
  trainable(): Tensor[];
  /** Training loss: inputs [B, T], targets [B·T]; `mtpWeight` > 0 adds the MTP loss (DeepSeek only). */
  loss(inputs: Tensor, targets: Tensor, mtpWeight: number): Tensor;
  /** Logits [B, T, V] ([B, 1, V] with `last`); with a cache, the tokens sit at `startPos` and are appended to it. */
  forward(tokens: Tensor, cache?: BenchCache, startPos?: number, last?: boolean): Tensor;
  /** Bytes the decode cache holds per token of context (all layers, f32). */
  cacheBytesPerToken(): number;
  /** A batch-1 decode cache for `capacity` tokens (DeepSeek: the absorbed latent cache). */
  makeCache(capacity: number): BenchCache;
  /** Writes config.json + model.safetensors (F32) for the peer. */
  save(dir: string): Promise<void>;
  /** Switches decode steps (cached, startPos > 0) to bf16 weights; returns what it did (throws if unsupported). */
  useBf16Decode(): string;
  /** Switches decode steps to Q8_0 weights (quantised as llama.cpp's converter does); returns what it did. */
  useQ8Decode(): string;
}

/** The model of a benchmark config with deterministic initial weights. */
export function benchModel(shape: BenchShape, seed = 1): BenchModel {
  if (shape.kind === 'dense') {
    const cfg = shape.cfg, p = initDenseParams(cfg, { seed });
    // Decode steps' linears on the decode engine's few-row products (f32 unless switched below).
    let decodeLinear: ((x: Tensor, w: Tensor) => Tensor) | undefined = engineLinear(f32EngineWeights, op.linear);
    return {
      kind: 'dense', vocabSize: cfg.vocabSize, hasMtp: false,
      trainable: () => denseTrainableParams(p),
      loss: (x, y, mtp) => {
        if (mtp > 0) throw new Error('bench: the dense model has no MTP layers');
        return denseLossFn(p, cfg, x, y).loss;
      },
      forward: (t, cache, startPos, last) => denseForward(p, cfg, t, { ...(cache ? { cache: cache as DenseKVCache, startPos: startPos ?? 0, ...(decodeLinear && startPos ? { linear: decodeLinear } : {}) } : {}), lastLogits: last ?? false }),
      // K and V, every head, every layer.
      cacheBytesPerToken: () => 2 * cfg.hiddenSize * cfg.numHiddenLayers * 4,
      makeCache: (capacity) => new DenseKVCache(cfg, capacity),
      useBf16Decode: () => {
        const r = bf16Linear();
        if (!r.linear || !r.rowsLinear?.engine) throw new Error(`bench: ${r.note}`);
        decodeLinear = engineLinear(r.rowsLinear.engine, r.linear);
        return `${r.note}; decode-engine products`;
      },
      useQ8Decode: () => { const r = q8Linear(); decodeLinear = engineLinear(r.rowsLinear.engine!, r.linear); return `${r.note}; decode-engine products`; },
      save: async (dir) => {
        mkdirSync(dir, { recursive: true });
        await writeSafetensors(path.join(dir, 'model.safetensors'),
          denseParamEntries(p).map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape.slice(), data: t.f32 })));
        writeFileSync(path.join(dir, 'config.json'), JSON.stringify(denseHFConfig(cfg), null, 2) + '\n');
      },
    };
  }
  const cfg = shape.cfg, p = initParams(cfg, { seed });
  // Decode steps (one token at startPos > 0 through a cache) run on RowDecoder, as `frugal generate`
  // decodes: the native decode engine where the backend has it, else the rows path.
  let rowsLinear: RowsLinear = f32RowsLinear;
  let dec: RowDecoder | null = null;
  const step = (t: Tensor, cache: KVCache, pos: number): Tensor => {
    dec ??= new RowDecoder(p, cfg, { linear: rowsLinear });
    const logits = dec.main([t.i32[0]!], [{ cache, start: pos, rows: 1 }]).logits;
    cache.length = pos + 1;
    return new Tensor(logits, [1, 1, cfg.vocabSize]);
  };
  return {
    kind: 'deepseek', vocabSize: cfg.vocabSize, hasMtp: cfg.numNextnPredictLayers > 0,
    trainable: () => trainableParams(p, cfg),
    loss: (x, y, mtp) => lossFn(p, cfg, x, y, { mtpWeight: mtp }).loss,
    forward: (t, cache, startPos, last) => (cache && startPos && t.size === 1 ? step(t, cache as KVCache, startPos)
      : forward(p, cfg, t, { ...(cache ? { cache: cache as KVCache, startPos: startPos ?? 0 } : {}), lastLogits: last ?? false }).logits),
    // MLA's absorbed cache: the normalised latent and the roped k_pe per token, main layers.
    cacheBytesPerToken: () => (cfg.kvLoraRank + cfg.qkRopeHeadDim) * cfg.numHiddenLayers * 4,
    makeCache: (capacity) => new KVCache(cfg, 1, capacity, 'absorb'),
    useBf16Decode: () => {
      const r = bf16Linear();
      if (!r.rowsLinear) throw new Error(`bench: ${r.note}`);
      rowsLinear = r.rowsLinear;
      dec = null;
      return r.note;
    },
    useQ8Decode: () => { const r = q8Linear(); rowsLinear = r.rowsLinear; dec = null; return r.note; },
    save: (dir) => saveModel(dir, cfg, p),
  };
}

/** Same stream as bench/peer/model.py lcg_tokens. */
export function lcgTokens(seed: number, n: number, vocab: number): Int32Array {
  let s = seed >>> 0;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = s % vocab; }
  return out;
}

/** inputs [B, T] and next-token targets [B·T] from B rows of T+1 LCG tokens. */
export function lcgBatch(seed: number, B: number, T: number, vocab: number): { inputs: Int32Array; targets: Int32Array } {
  const all = lcgTokens(seed, B * (T + 1), vocab);
  const inputs = new Int32Array(B * T), targets = new Int32Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) { inputs[b * T + t] = all[b * (T + 1) + t]!; targets[b * T + t] = all[b * (T + 1) + t + 1]!; }
  return { inputs, targets };
}

export interface Stats { median: number; min: number; max: number; n: number }
export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** One result row; `--json` prints an array of these. ratio > 1 means Frugal is better (faster, or less memory). */
export interface BenchRow {
  suite: string; config: string; case: string; threads: number; unit: string;
  frugal: number; pytorch: number | null; ratio: number | null;
  frugalRange: [number, number]; pytorchRange: [number, number] | null; reps: number;
  backend: string;
  /** What the `pytorch` column ran: 'PyTorch 2.6 eager' / '… compile' (the faster per row), or 'PyTorch 1.13' when only it ran. */
  pytorchPeer?: string;
  /** Every peer's median and range by id ('torch', 'torch-compile', 'torch-legacy'). */
  peers?: Record<string, { median: number; min: number; max: number }>;
  /** The second column (PyTorch 1.13) when the current PyTorch ran too, and Frugal's ratio to it. */
  legacy?: number | null; legacyRange?: [number, number] | null; legacyRatio?: number | null;
}

/** The repository root (holds bench/peer/model.py), from source (bench/) or compiled (dist/bench/) code. */
export function repoRoot(): string {
  let d = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(path.join(d, 'bench', 'peer', 'model.py'))) return d;
    d = path.dirname(d);
  }
  return process.cwd();
}

/** Why the peer cannot run (null when /usr/bin/python3 imports torch). */
export function peerUnavailable(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? null : 'torch is not installed for /usr/bin/python3';
}

/** The peer's environment: threads, passive OpenMP waits, tcmalloc; the forced AVX2 OpenBLAS core removed. */
export function peerEnv(threads: number, root: string | null = null, blasThreads = threads): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(blasThreads), OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE', MKL_NUM_THREADS: String(threads) };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  delete env.LD_PRELOAD;
  if (existsSync(path.join(root ?? '/', TCMALLOC))) env.LD_PRELOAD = TCMALLOC;
  return env;
}

/**
 * argv and environment that run bench/peer/model.py for `spec`. A chroot peer reads model.py from
 * `dir` (copied there; dir must lie inside the chroot) and sees paths relative to the chroot, so
 * `peerPath` maps host paths into it. LD_PRELOAD is set inside the chroot (via env), not on chroot.
 */
export function peerCommand(spec: PeerSpec, dir: string, threads: number, args: string[]): { cmd: string; argv: string[]; env: NodeJS.ProcessEnv; peerPath: (p: string) => string } {
  const script = path.join(repoRoot(), 'bench', 'peer', 'model.py');
  const env = peerEnv(threads, spec.root, spec.blas1 ? 1 : threads);
  const compile = spec.compile ? ['--compile', '1'] : [];
  if (!spec.root) return { cmd: PYTHON, argv: [script, ...args, ...compile], env, peerPath: (p) => p };
  const root = path.resolve(spec.root);
  const peerPath = (p: string): string => {
    const abs = path.resolve(p);
    if (!abs.startsWith(root + path.sep)) throw new Error(`bench: ${abs} is outside the peer's chroot ${root}`);
    return abs.slice(root.length);
  };
  copyFileSync(script, path.join(dir, 'model.py'));
  const inner = Object.entries(env).filter(([k]) => /^(OPENBLAS_NUM_THREADS|OMP_NUM_THREADS|OMP_WAIT_POLICY|MKL_NUM_THREADS|LD_PRELOAD)$/.test(k)).map(([k, v]) => `${k}=${v}`);
  const outer = { ...env };
  delete outer.LD_PRELOAD;
  return { cmd: 'chroot', argv: [root, '/usr/bin/env', ...inner, PYTHON, peerPath(path.join(dir, 'model.py')), ...args.map((a, i) => (args[i - 1] === '--dir' ? peerPath(a) : a)), ...compile], env: outer, peerPath };
}

/** A running peer process serving one model directory at a fixed thread count. */
export class Peer {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending: Array<(line: string) => void> = [];
  private stderr = '';
  private exited: string | null = null;

  private readonly peerPath: (p: string) => string;

  constructor(modelDir: string, readonly threads: number, readonly spec: PeerSpec = LEGACY_PEER) {
    const c = peerCommand(spec, modelDir, threads, ['serve', '--dir', modelDir, '--threads', String(threads)]);
    this.peerPath = c.peerPath;
    this.proc = spawn(c.cmd, c.argv, { env: c.env, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout }).on('line', (l) => this.pending.shift()?.(l));
    this.proc.stderr.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.proc.on('exit', (code) => {
      this.exited = `peer exited with code ${code}: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`;
      for (const f of this.pending.splice(0)) f(JSON.stringify({ error: this.exited }));
    });
  }

  /** Sends one request; resolves with the reply, rejects on a reported error. */
  request<T = Record<string, unknown>>(req: Record<string, unknown>): Promise<T & { maxRssKB: number }> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => {
      this.pending.push((line) => {
        let r: Record<string, unknown>;
        try { r = JSON.parse(line) as Record<string, unknown>; } catch { reject(new Error(`peer said: ${line}`)); return; }
        if (typeof r.error === 'string') reject(new Error(`peer: ${r.error}`));
        else resolve(r as T & { maxRssKB: number });
      });
      // File arguments (the logits check) as the peer sees them.
      const r = { ...req };
      for (const k of ['tokens', 'logits']) if (typeof r[k] === 'string') r[k] = this.peerPath(r[k] as string);
      this.proc.stdin.write(JSON.stringify(r) + '\n');
    });
  }

  /** Seconds of one timed repetition (`train`, `prefill`, `decode`). */
  async time(req: Record<string, unknown>): Promise<number> { return (await this.request<{ s: number }>(req)).s; }

  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.stdin.end(JSON.stringify({ op: 'quit' }) + '\n');
    await Promise.race([done, new Promise<void>((r) => setTimeout(() => { this.proc.kill(); r(); }, 5000))]);
  }
}

/** A description line of the peer's BLAS, kernels and allocator. */
export function describePeer(info: Record<string, unknown>): string {
  const env = info.env as Record<string, string> | undefined;
  return `PyTorch ${String(info.torch)}${info.compile ? ' + torch.compile' : ' eager'} (${String(info.threads)} threads; BLAS ${String(info.blas)} [build ${String(info.build_blas)}]${info.openblas ? ' ' + String(info.openblas) : ''}; ` +
    `ATen CPU capability ${String(info.cpu_capability || '?')}; allocator ${String(info.allocator)}; OMP_WAIT_POLICY=${env?.OMP_WAIT_POLICY ?? ''})`;
}

/** Temporary model directory for the peers (inside the trixie chroot's /tmp when that exists, so
 *  every peer sees it); removed by the returned function. */
export function tempModelDir(): { dir: string; remove: () => void } {
  const chrootTmp = path.join(trixieRoot(), 'tmp');
  const dir = mkdtempSync(path.join(existsSync(chrootTmp) ? chrootTmp : tmpdir(), 'frugal-bench-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes raw little-endian arrays for the peer's logits check. */
export function writeRaw(file: string, a: Int32Array | Float32Array): void {
  writeFileSync(file, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
}

interface Optimizer { step(lr: number): void }

/** AdamW from src/train/optim.ts when present, else a minimal one here (same math, f32 moments). */
export async function makeAdamW(params: Tensor[]): Promise<{ opt: Optimizer; source: string }> {
  try {
    const modPath = '../src/train/optim.js';
    const mod = (await import(modPath)) as { AdamW?: new (p: Tensor[], o?: Record<string, unknown>) => Optimizer };
    if (mod.AdamW) return { opt: new mod.AdamW(params, { weightDecay: 0.1 }), source: 'src/train/optim.ts AdamW' };
  } catch { /* fall through to the local one */ }
  const m = params.map((p) => new Float32Array(p.size)), v = params.map((p) => new Float32Array(p.size));
  let t = 0;
  const b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  const opt: Optimizer = {
    step(lr: number): void {
      t++;
      const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
      params.forEach((p, i) => {
        const g = p.grad;
        if (!g) return;
        const w = p.data as Float32Array, mi = m[i]!, vi = v[i]!;
        for (let j = 0; j < w.length; j++) {
          const gj = g[j]!;
          mi[j] = b1 * mi[j]! + (1 - b1) * gj;
          vi[j] = b2 * vi[j]! + (1 - b2) * gj * gj;
          w[j] = w[j]! * (1 - lr * wd) - (lr * mi[j]! / c1) / (Math.sqrt(vi[j]! / c2) + eps);
        }
      });
    },
  };
  return { opt, source: 'bench-local AdamW' };
}

const fmt = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** Markdown table of rows (ratio = Frugal/PyTorch speed, or PyTorch/Frugal memory); the PyTorch
 *  column is the current PyTorch (the faster of eager and compiled, named), then PyTorch 1.13. */
export function formatRows(rows: BenchRow[]): string {
  const legacy = rows.some((r) => r.legacy !== undefined && r.legacy !== null);
  const lines = [`| suite | config | case | threads | unit | Frugal median (min–max) | PyTorch median (min–max) | ratio |${legacy ? ' PyTorch 1.13 median (min–max) | ratio vs 1.13 |' : ''}`,
    `|---|---|---|---|---|---|---|---|${legacy ? '---|---|' : ''}`];
  const range = (v: number | null | undefined, r: [number, number] | null | undefined): string => (v === null || v === undefined ? 'skipped' : `${fmt(v)} (${fmt(r![0])}–${fmt(r![1])})`);
  const ratio = (x: number | null | undefined): string => (x === null || x === undefined ? '—' : x.toFixed(2) + '×');
  for (const r of rows) {
    const p = r.pytorch === null ? 'skipped' : `${range(r.pytorch, r.pytorchRange)}${r.pytorchPeer ? ' ' + r.pytorchPeer.replace(/^PyTorch /, '') : ''}`;
    lines.push(`| ${r.suite} | ${r.config} | ${r.case} | ${r.threads} | ${r.unit} | ${range(r.frugal, r.frugalRange)} | ${p} | ${ratio(r.ratio)} |` +
      (legacy ? ` ${range(r.legacy, r.legacyRange)} | ${ratio(r.legacyRatio)} |` : ''));
  }
  return lines.join('\n');
}

/** Replaces (or appends) this suite's section of docs/results/bench.md. */
export function writeResults(suite: string, body: string): string {
  const file = path.join(repoRoot(), 'docs', 'results', 'bench.md');
  mkdirSync(path.dirname(file), { recursive: true });
  const begin = `<!-- bench:${suite} -->`, end = `<!-- /bench:${suite} -->`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Frugal vs PyTorch benchmarks\n\n';
  const block = `${begin}\n${body.trim()}\n${end}`;
  const i = text.indexOf(begin), j = text.indexOf(end);
  text = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : text.trimEnd() + '\n\n' + block + '\n';
  writeFileSync(file, text);
  return file;
}
