/**
 * `frugal train`: raw text → tokenizer → DeepSeek-style model (MLA + MoE + MTP), with checkpoints,
 * resume, live cost meter, metrics.jsonl and a loss-curve plot. With no arguments it trains the
 * `demo` config on the bundled State of the Union corpus in a few minutes on 2 CPU cores.
 *
 * Run folder (`--out`, default runs/<timestamp>): tokenizer/ (trained BPE, reused on resume),
 * checkpoint/ (HF model files + trainer_state.*), final/ (HF model + tokenizer), metrics.jsonl,
 * loss-curve.svg. An existing checkpoint is never overwritten without --resume.
 *
 * Contract:
 * - SIGINT and SIGTERM (Ctrl-C, `docker stop`, systemd, Kubernetes) both finish the current step,
 *   save a checkpoint and exit (130 / 143); the same signal again exits at once.
 * - Every option of the run (defaults included, resolved) is stored in the checkpoint; `--resume`
 *   takes them from there and refuses a different explicit value. `--resume --steps N --extend` is
 *   the one way to train past the plan: the learning-rate schedule is kept and the extra steps run
 *   at its final rate (logged), never re-warmed.
 * - A run's tokenizer/ is reused only for the same data and vocabulary (or on --resume); temp
 *   folders of killed checkpoint writes are removed. The written config.json carries the
 *   tokenizer's BOS/EOS ids. A model too large for this machine is refused before allocation.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec, type Parsed } from './args.js';
import { UsageError } from '../errors.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../backend/setup-node.js';
import { getBackend } from '../backend/registry.js';
import { resolveConfig, parseHFConfig, type DeepSeekConfig } from '../model/config.js';
import { initParams, type ModelParams } from '../model/deepseek.js';
import type { Tensor } from '../autograd/tensor.js';
import { flopsPerToken } from '../cost/flops.js';
import { countParams } from '../cost/params.js';
import { getGpu } from '../cost/hardware.js';
import { trainBpe } from '../io/bpe.js';
import { Tokenizer } from '../io/tokenizer.js';
import { loadTokenizer } from '../io/tokenizer-node.js';
import { loadCorpus } from '../train/data-node.js';
import { packDocuments, splitDocuments, unigramEntropy } from '../train/data.js';
import { Trainer, TrainingDivergedError, defaultTrainerOptions, type LogEntry, type TrainerOptions } from '../train/trainer.js';
import { CheckpointError, configHash, findCheckpoint, loadCheckpoint, readCheckpointMeta, removeStaleTemps, saveCheckpoint, shortHash, tokensHash, type CheckpointMeta } from '../train/checkpoint-node.js';
import { lrAt } from '../train/schedule.js';
import { checkAllocation, ModelSizeError } from '../model/size.js';
import { memoryLimitBytes } from '../model/load-node.js';
import { appendMetrics, fp8IntervalStats, lossCurveSvg, readMetrics, truncateMetrics } from '../train/metrics-node.js';
import { writeRunInfo, type RunInfo, type RunStatus } from '../train/run-info-node.js';
import { resolveKey, startRunDashboard, type RunDashboard } from './dashboard.js';
import { hostname } from 'node:os';

export const summary = 'train a DeepSeek-style model (MLA + MoE + MTP) on the bundled corpus or your text';

/** Defaults of `frugal train` with no arguments (sized for ~3 minutes on 2 cores). */
export const trainDefaults = { config: 'demo', steps: 1000, batch: 8, seq: 64, lr: 3e-3, warmup: 20, routerLrScale: 0.03 };
/** SIMD128 GEMM ceiling per core measured on the project machine (ANCHORS.md): the wasm/ts MFU denominator. */
export const CPU_PEAK_FLOPS_PER_THREAD = 45e9;

/**
 * The f32 peak per thread the backend could reach, the MFU denominator: native with AVX-512 is two
 * 16-lane FMAs per cycle (~3.3 GHz → ~211 GFLOP/s, ANCHORS.md), AVX2 half that; wasm/ts the
 * SIMD128 ceiling. An honest MFU divides by what the hardware could do, not by what we reach.
 */
export function peakFlopsPerThread(backendDescription: string): number {
  if (/^native/.test(backendDescription)) return /avx512/.test(backendDescription) ? 211e9 : /avx2/.test(backendDescription) ? 105e9 : CPU_PEAK_FLOPS_PER_THREAD;
  return CPU_PEAK_FLOPS_PER_THREAD;
}

const spec: OptionSpec = {
  config: { type: 'string', help: `model: tiny | small | demo | path to an HF config.json (default ${trainDefaults.config})` },
  data: { type: 'string', help: "corpus: 'sotu' (bundled), a .txt file, a folder of .txt, or .jsonl with a text field (default sotu)" },
  tokenizer: { type: 'string', help: 'folder with tokenizer.json (default: train a byte-level BPE with the config vocab)' },
  steps: { type: 'number', help: `optimizer steps (default ${trainDefaults.steps})` },
  batch: { type: 'number', help: `sequences per micro-batch (default ${trainDefaults.batch})` },
  seq: { type: 'number', help: `tokens per sequence (default ${trainDefaults.seq})` },
  'grad-accum': { type: 'number', help: 'micro-batches per optimizer step (default 1)' },
  lr: { type: 'number', help: `peak learning rate (default ${trainDefaults.lr})` },
  warmup: { type: 'number', help: `linear warmup steps (default ${trainDefaults.warmup})` },
  schedule: { type: 'string', help: 'wsd (DeepSeek: warmup, constant, cosine) | cosine | constant (default wsd)' },
  precision: { type: 'string', help: 'fp32 | fp8 (FP8 projections, BF16 optimizer moments) (default fp32)' },
  'mtp-weight': { type: 'number', help: 'MTP loss weight lambda (default 0.3)' },
  'bias-gamma': { type: 'number', help: 'aux-loss-free bias update speed gamma; 0 = off (default 0.001)' },
  'router-lr-scale': { type: 'number', help: `learning-rate multiplier of the MoE router weights; 1 = DeepSeek (default ${trainDefaults.routerLrScale}, see docs/training.md)` },
  'bias-update': { type: 'string', help: "gate-bias rule: sign (DeepSeek) | relative (step ∝ relative load error) (default sign)" },
  'aux-alpha': { type: 'number', help: 'sequence-wise balance loss weight alpha (default 0.0001)' },
  'eval-every': { type: 'number', help: 'steps between validation + sample (default steps/5)' },
  'log-every': { type: 'number', help: 'steps between log lines (default steps/30)' },
  'save-every': { type: 'number', help: 'steps between checkpoints; 0 = at the end only (default steps/3)' },
  'val-fraction': { type: 'number', help: 'documents held out for validation (default 0.05)' },
  seed: { type: 'number', help: 'seed of init, data order and split (default 1234)' },
  out: { type: 'string', help: 'run folder (default runs/<timestamp>)' },
  resume: { type: 'boolean', help: 'continue the checkpoint in --out (default: the newest run in runs/) with every option it was started with' },
  extend: { type: 'boolean', help: 'with --resume --steps N: train past the planned steps (the lr schedule is kept; extra steps run at its final rate)' },
  backend: { type: 'string', help: 'auto | ts | wasm | native | webgpu (default auto: the fastest CPU backend that loads)' },
  threads: { type: 'number', help: 'worker threads of the backend (default: all cores, at most 8)' },
  recompute: { type: 'boolean', help: 'recompute RMSNorm / MLA up-projections in backward (less memory)' },
  gpu: { type: 'string', help: 'GPU priced in the $ column (h800 | h100 | h200 | a100 | b200) (default h800)' },
  price: { type: 'number', help: '$ per GPU-hour for the $ column (default 2)' },
  quiet: { type: 'boolean', help: 'print only errors and the final summary' },
  dashboard: { type: 'boolean', help: 'serve the live dashboard of this run (prints its URL; see `frugal dashboard`)' },
  'dashboard-port': { type: 'number', help: 'port of --dashboard (default 6006; a busy port falls back to any free one)' },
  'dashboard-host': { type: 'string', help: 'address of --dashboard (default 127.0.0.1; any other needs FRUGAL_API_KEY)' },
};

/**
 * Options that define the run: stored resolved in the checkpoint; on --resume they come from it and
 * may not change. (--eval-every, --log-every and --save-every are stored and reused too, but may be
 * changed on resume: they do not change what is computed.)
 */
const RUN_KEYS = ['config', 'data', 'tokenizer', 'steps', 'batch', 'seq', 'grad-accum', 'lr', 'warmup', 'schedule', 'precision', 'mtp-weight', 'bias-gamma', 'bias-update', 'router-lr-scale', 'aux-alpha', 'val-fraction', 'seed', 'recompute'];
/** Marks tokenizer/ with what it was trained from, so another run never reuses it by accident. */
const TOKENIZER_SOURCE = 'frugal-tokenizer-source.json';

/** The resolved options of a checkpointed run (older checkpoints: rebuilt from their trainer options). */
function savedOptions(meta: CheckpointMeta): Record<string, unknown> {
  const o = meta.options as Partial<TrainerOptions> & { cli?: Record<string, unknown> };
  const fromTrainer: Record<string, unknown> = {
    config: meta.config, data: meta.data, precision: meta.precision, steps: o.steps, batch: o.batch, seq: o.seq, 'grad-accum': o.gradAccum,
    lr: o.lr, warmup: o.warmup, schedule: o.schedule, 'mtp-weight': o.mtpWeight, 'bias-gamma': o.biasGamma, 'bias-update': o.biasUpdate,
    'router-lr-scale': o.routerLrScale, 'aux-alpha': o.auxAlpha, seed: o.seed, recompute: o.recompute,
    'eval-every': o.evalEvery, 'log-every': o.logEvery, 'save-every': o.saveEvery, 'schedule-steps': o.scheduleSteps ?? o.steps,
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries({ ...fromTrainer, ...(o.cli ?? {}) })) if (v !== undefined && v !== null) out[k] = v;
  return out;
}

const fmtTime = (s: number): string => (s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, '0')}`);
const fmtUsd = (x: number): string => (x >= 0.01 ? x.toFixed(2) : x.toExponential(1));

/** The fixed log line: `step | loss | val | lr | tok/s | MFU | MaxVio | $`. */
export function formatLogLine(e: LogEntry, steps: number): string {
  const w = String(steps).length;
  return [`step ${String(e.step).padStart(w)}/${steps}`, `loss ${e.mainLoss.toFixed(3)}`, `val ${e.valLoss === null ? '  -  ' : e.valLoss.toFixed(3)}`,
    `lr ${e.lr.toExponential(1)}`, `tok/s ${e.tokensPerSec.toFixed(0).padStart(4)}`, `MFU ${(100 * e.mfu).toFixed(2)}%`,
    `MaxVio ${e.maxVio.toFixed(2)}`, `$ ${fmtUsd(e.usd)}`].join(' | ') + (e.skippedSteps ? ` | skipped ${e.skippedSteps}` : '');
}

function newestRun(root: string): string | null {
  if (!existsSync(root)) return null;
  const dirs = readdirSync(root).map((n) => path.join(root, n)).filter((d) => findCheckpoint(path.join(d, 'checkpoint')) !== null);
  dirs.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return dirs[0] ?? null;
}

async function readConfig(specStr: string): Promise<DeepSeekConfig> {
  if (/\.json$/i.test(specStr) || specStr.includes('/') || existsSync(specStr)) {
    const file = existsSync(path.join(specStr, 'config.json')) ? path.join(specStr, 'config.json') : specStr;
    let json: unknown;
    try { json = JSON.parse(await readFile(file, 'utf8')); } catch (e) { throw new UsageError(`--config ${specStr}: cannot read an HF config.json (${(e as Error).message})`); }
    return parseHFConfig(json);
  }
  try { return resolveConfig(specStr); } catch (e) { throw new UsageError(`--config: ${(e as Error).message}`); }
}

/**
 * The run folder and, on --resume, the run's saved options: refuses a checkpoint without
 * --resume, a run option that differs from the run's, and --extend without --steps above the plan.
 */
async function resolveRun(a: Parsed): Promise<{ out: string; ckptDir: string; found: string | null; saved: Record<string, unknown> }> {
  let out: string = a.out ?? (a.resume ? newestRun('runs') : null) ?? path.join('runs', new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15));
  out = path.normalize(out);
  const ckptDir = path.join(out, 'checkpoint');
  const found = findCheckpoint(ckptDir);
  if (a.extend && !a.resume) throw new UsageError('--extend continues a checkpointed run past its planned steps: use it with --resume --steps N');
  if (!a.resume) {
    if (found) throw new UsageError(`${out} already holds a checkpoint (${found}); pass --resume to continue it, or choose another --out (nothing was overwritten)`);
    return { out, ckptDir, found, saved: {} };
  }
  if (!found) throw new UsageError(`--resume: no checkpoint in ${ckptDir} (train without --resume first, or give the run folder with --out)`);
  const saved = savedOptions(await readCheckpointMeta(found));
  const extending = a.extend === true && a.steps !== undefined && a.steps !== saved.steps;
  const clash = RUN_KEYS.filter((k) => a[k] !== undefined && saved[k] !== undefined && a[k] !== saved[k] && !(k === 'steps' && extending));
  if (clash.length) {
    const hint = clash.includes('steps') ? `; to train past the planned ${String(saved.steps)} steps, add --extend` : '';
    throw new UsageError(`--resume: ${clash.map((k) => `--${k} ${String(a[k])} differs from the run's ${String(saved[k])}`).join('; ')} (a resumed run keeps every option it was started with: drop these options${hint}, or start a new run with another --out)`);
  }
  if (a.extend && !(typeof a.steps === 'number' && typeof saved.steps === 'number' && a.steps > saved.steps)) {
    throw new UsageError(`--extend needs --steps above the run's planned ${String(saved.steps)} steps`);
  }
  return { out, ckptDir, found, saved };
}

/** Entry point of the verb. */
export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('train', '[options]', spec)); return 0; }
  if (a._.length) throw new UsageError(`unexpected argument '${a._[0]}' (options start with --)`);
  const quiet = a.quiet === true;
  const say = (s: string): void => { if (!quiet) console.log(s); };

  // Run folder and resume.
  const { out, ckptDir, found, saved } = await resolveRun(a);
  const opt = (k: string, d: unknown): unknown => a[k] ?? saved[k] ?? d;

  const precision = String(opt('precision', 'fp32'));
  if (precision !== 'fp32' && precision !== 'fp8') throw new UsageError(`--precision must be fp32 or fp8, got '${precision}'`);
  const schedule = String(opt('schedule', 'wsd'));
  if (!['wsd', 'cosine', 'constant'].includes(schedule)) throw new UsageError(`--schedule must be wsd, cosine or constant, got '${schedule}'`);
  const biasUpdate = String(opt('bias-update', 'sign'));
  if (biasUpdate !== 'sign' && biasUpdate !== 'relative') throw new UsageError(`--bias-update must be sign or relative, got '${biasUpdate}'`);
  const backendChoice = String(a.backend ?? 'auto');
  if (!['auto', 'ts', 'wasm', 'native', 'webgpu'].includes(backendChoice)) throw new UsageError(`--backend must be auto, ts, wasm, native or webgpu, got '${backendChoice}'`);
  const intOpt = (k: string, d: number, min: number): number => {
    const v = Number(opt(k, d));
    if (!Number.isInteger(v) || v < min) throw new UsageError(`--${k} must be an integer >= ${min}, got ${v}`);
    return v;
  };
  const steps = intOpt('steps', trainDefaults.steps, 1), batch = intOpt('batch', trainDefaults.batch, 1), seq = intOpt('seq', trainDefaults.seq, 2);
  const numOpt = (k: string, d: number, ok: (x: number) => boolean, what: string): number => {
    const v = Number(opt(k, d));
    if (!ok(v)) throw new UsageError(`--${k} must be ${what}, got ${v}`);
    return v;
  };
  const valFraction = numOpt('val-fraction', 0.05, (x) => x > 0 && x < 1, 'in (0, 1)');
  const scheduleSteps = intOpt('schedule-steps', steps, 1);
  if (a.dashboard) resolveKey(String(a['dashboard-host'] ?? '127.0.0.1'), undefined); // a non-loopback dashboard needs FRUGAL_API_KEY: say so before any work
  const gpu = (() => { try { return getGpu(String(a.gpu ?? 'h800')); } catch (e) { throw new UsageError(`--gpu: ${(e as Error).message}`); } })();

  // FP8 recipe: the FP8 linear from src/fp8 when it is built.
  let projLinear: ((x: Tensor, w: Tensor) => Tensor) | undefined;
  if (precision === 'fp8') {
    try {
      const modPath = '../fp8/linear.js';
      const mod = (await import(modPath)) as { fp8Linear?: (x: Tensor, w: Tensor) => Tensor };
      if (typeof mod.fp8Linear !== 'function') throw new Error('fp8Linear is not exported');
      const fp8Linear = mod.fp8Linear;
      projLinear = (x, w) => fp8Linear(x, w);
    } catch (e) {
      console.error(`frugal train: --precision fp8 is not available in this build yet (${(e as Error).message}); use --precision fp32`);
      return 2;
    }
  }

  // Backend.
  const threads = a.threads === undefined ? undefined : Number(a.threads);
  try { await useBackend(backendChoice as BackendChoice, threads === undefined ? {} : { threads }); } catch (e) { throw new UsageError((e as Error).message); }
  const backend = getBackend();
  try {
    return await train();
  } finally {
    await disposeBackends();
  }

  async function train(): Promise<number> {
    const t0 = performance.now();
    say(`backend: ${describeBackend()} — threads ${backend.threads}`);
    // Model config (on resume: the checkpoint's).
    const resumeFrom = a.resume ? found! : null;
    const configSpec = String(opt('config', trainDefaults.config));
    const cfg = resumeFrom ? parseHFConfig(JSON.parse(readFileSync(path.join(resumeFrom, 'config.json'), 'utf8'))) : await readConfig(configSpec);
    if (seq > cfg.maxPositionEmbeddings) throw new UsageError(`--seq ${seq} exceeds the model's max_position_embeddings ${cfg.maxPositionEmbeddings}`);
    try {
      // Weights, gradients and two AdamW moments per parameter, before anything is allocated.
      checkAllocation(cfg, { limitBytes: memoryLimitBytes(), bytesPerElement: precision === 'fp8' ? 12 : 16, what: `--config ${configSpec}`, purpose: 'training',
        fix: "train a preset sized for a CPU (tiny, small, demo) or a smaller config.json ('frugal cost --config NAME' shows the sizes)" });
    } catch (e) {
      if (e instanceof ModelSizeError) throw new UsageError(e.message);
      throw e;
    }
    const stale = await removeStaleTemps(out);
    if (stale.length) say(`removed ${stale.length} temp folder(s) of interrupted checkpoint writes in ${out}: ${stale.join(', ')}`);

    // Data.
    const dataSpec = String(opt('data', 'sotu'));
    const corpus = await loadCorpus(dataSpec);
    if (corpus.documents.length < 2) throw new UsageError(`--data ${dataSpec}: ${corpus.documents.length} document; need at least 2 to hold one out for validation (split the text into several files or JSONL lines)`);
    const seed = intOpt('seed', 1234, 0);
    const split = splitDocuments(corpus.documents, valFraction, seed);

    // Tokenizer: given, cached in the run folder, or trained now.
    const tokDir = path.join(out, 'tokenizer');
    let tok: Tokenizer;
    const given = opt('tokenizer', undefined) as string | undefined;
    const tokSource = JSON.stringify({ format: 1, vocabSize: cfg.vocabSize, documents: shortHash(split.train.join('\u0000')) });
    const readText = (f: string): string | null => { try { return readFileSync(f, 'utf8'); } catch { return null; } };
    const haveTok = existsSync(path.join(tokDir, 'tokenizer.json'));
    if (given && !resumeFrom) tok = await loadTokenizer(given);
    else if (haveTok && (resumeFrom || readText(path.join(tokDir, TOKENIZER_SOURCE)) === tokSource)) tok = await loadTokenizer(tokDir);
    else {
      if (haveTok) say(`tokenizer: ${tokDir} was left by another run (other data or vocabulary, or an unfinished one); training a new one`);
      const tb = performance.now();
      const json = trainBpe(split.train, { vocabSize: cfg.vocabSize });
      tok = Tokenizer.fromJSON(json);
      await mkdir(tokDir, { recursive: true });
      await writeFile(path.join(tokDir, 'tokenizer.json'), JSON.stringify(json));
      await writeFile(path.join(tokDir, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', bos_token: null, add_bos_token: false, add_eos_token: false, clean_up_tokenization_spaces: false }, null, 2) + '\n');
      await writeFile(path.join(tokDir, TOKENIZER_SOURCE), tokSource);
      say(`tokenizer: trained byte-level BPE, vocab ${tok.vocabSize}, in ${((performance.now() - tb) / 1000).toFixed(1)} s → ${tokDir}`);
    }
    const tokSrc = given && !resumeFrom ? given : tokDir;
    const tokFiles: Record<string, string> = {};
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) if (existsSync(path.join(tokSrc, f))) tokFiles[f] = readFileSync(path.join(tokSrc, f), 'utf8');
    if (tok.vocabSize > cfg.vocabSize) throw new UsageError(`tokenizer vocabulary ${tok.vocabSize} exceeds the model's vocab_size ${cfg.vocabSize} (use a config with a larger vocab_size or a smaller tokenizer)`);
    const eos = tok.eosId;
    if (eos === null) throw new UsageError('the tokenizer has no end-of-text token (eos_token); add one to tokenizer_config.json');
    // The model's config.json names the tokenizer's special ids (a resumed checkpoint is matched as saved).
    const savedConfigHash = configHash(cfg);
    cfg.eosTokenId = eos;
    cfg.bosTokenId = tok.bosId;
    const encode = (docs: string[]): Int32Array => packDocuments(docs.map((d) => tok.encode(d, { addSpecialTokens: false })), eos);
    const trainTokens = encode(split.train), valTokens = encode(split.val);
    if (valTokens.length < seq + 1) throw new UsageError(`validation data has ${valTokens.length} tokens, fewer than --seq ${seq} + 1 (use a larger --val-fraction or a shorter --seq)`);
    if (trainTokens.length < batch * (seq + 1)) throw new UsageError(`training data has ${trainTokens.length} tokens, too few for --batch ${batch} × --seq ${seq}`);
    const entropy = unigramEntropy(trainTokens, cfg.vocabSize);
    say(`data: ${corpus.name} — ${split.train.length} train documents (${trainTokens.length} tokens), ${split.val.length} validation (${valTokens.length} tokens); unigram entropy ${entropy.toFixed(3)} nats/token`);

    // Trainer options.
    const opts: TrainerOptions = {
      ...defaultTrainerOptions, steps, batch, seq, seed,
      gradAccum: intOpt('grad-accum', 1, 1), lr: numOpt('lr', trainDefaults.lr, (x) => x > 0 && Number.isFinite(x), 'a positive number'),
      warmup: intOpt('warmup', Math.min(trainDefaults.warmup, steps), 0), schedule: schedule as TrainerOptions['schedule'],
      mtpWeight: numOpt('mtp-weight', 0.3, (x) => x >= 0, '>= 0'), biasGamma: numOpt('bias-gamma', 0.001, (x) => x >= 0, '>= 0'),
      auxAlpha: numOpt('aux-alpha', 0.0001, (x) => x >= 0, '>= 0'),
      routerLrScale: numOpt('router-lr-scale', trainDefaults.routerLrScale, (x) => x >= 0 && Number.isFinite(x), 'a number >= 0'), biasUpdate: biasUpdate as TrainerOptions['biasUpdate'],
      evalEvery: intOpt('eval-every', Math.max(1, Math.round(steps / 5)), 1), logEvery: intOpt('log-every', Math.max(1, Math.round(steps / 30)), 1),
      saveEvery: intOpt('save-every', Math.max(1, Math.round(steps / 3)), 0),
      momentDtype: precision === 'fp8' ? 'bf16' : 'f32', recompute: opt('recompute', false) === true, scheduleSteps,
    };
    // Every option, resolved (defaults included): a resume takes them all from the checkpoint.
    const cli: Record<string, unknown> = {
      config: configSpec, data: dataSpec, steps, batch, seq, 'grad-accum': opts.gradAccum, lr: opts.lr, warmup: opts.warmup, schedule, precision,
      'mtp-weight': opts.mtpWeight, 'bias-gamma': opts.biasGamma, 'bias-update': opts.biasUpdate, 'router-lr-scale': opts.routerLrScale,
      'aux-alpha': opts.auxAlpha, 'val-fraction': valFraction, seed, recompute: opts.recompute,
      'eval-every': opts.evalEvery, 'log-every': opts.logEvery, 'save-every': opts.saveEvery, 'schedule-steps': scheduleSteps,
    };
    if (given !== undefined) cli.tokenizer = given;
    if (resumeFrom && typeof saved.steps === 'number' && steps > saved.steps) {
      const finalLr = lrAt({ kind: opts.schedule, peak: opts.lr, warmup: Math.min(opts.warmup, scheduleSteps), total: scheduleSteps, minRatio: opts.minLrRatio, decayStart: opts.decayStart }, scheduleSteps);
      say(`extending the run from ${saved.steps} to ${steps} steps (--extend): the learning-rate schedule planned for ${scheduleSteps} steps is kept; steps ${scheduleSteps + 1}..${steps} run at its final rate ${finalLr.toExponential(1)}, no re-warmup`);
    }
    const f = flopsPerToken(cfg, seq);
    const perToken = opts.mtpWeight > 0 ? f.training : f.trainingMain;
    const price = numOpt('price', 2, (x) => x >= 0, '>= 0');
    const meter = { flopsPerToken: perToken, peakFlops: peakFlopsPerThread(backend.describe ? backend.describe() : backend.name) * backend.threads, usdPerToken: (perToken / (0.39 * gpu.bf16Tflops * 1e12) / 3600) * price };

    // Model.
    let params: ModelParams;
    let ck = null;
    const dataHash = tokensHash(trainTokens), tokenizerHash = shortHash(tokFiles['tokenizer.json'] ?? '');
    if (resumeFrom) {
      try {
        ck = await loadCheckpoint(resumeFrom, { configHash: savedConfigHash, tokenizerHash, dataHash, momentDtype: opts.momentDtype });
      } catch (e) {
        if (e instanceof CheckpointError) { console.error(`frugal train: ${e.message}`); return 1; }
        throw e;
      }
      params = ck.params;
    } else params = initParams(cfg, { seed });
    const pc = countParams(cfg);
    say(`model: ${configSpec} — ${(pc.total / 1e6).toFixed(2)}M params (+${(pc.mtp.unique / 1e6).toFixed(2)}M MTP), ${(pc.active / 1e6).toFixed(2)}M active; ${cfg.numHiddenLayers} layers, ${cfg.nRoutedExperts} experts top-${cfg.numExpertsPerTok}; precision ${precision}${precision === 'fp8' ? ' (emulated on CPU: FP8 saves memory, not time)' : ''}`);
    say(`run: ${steps} steps × ${batch}×${seq} tokens${opts.gradAccum > 1 ? ` × ${opts.gradAccum} accum` : ''}; lr ${opts.lr} (${schedule}, warmup ${opts.warmup}); MTP λ ${opts.mtpWeight}; bias γ ${opts.biasGamma}${opts.biasUpdate === 'sign' ? '' : ' (relative)'}; router lr ×${opts.routerLrScale}; α ${opts.auxAlpha}; out ${out}`);

    // Hooks: log, metrics, checkpoints, SIGINT.
    await mkdir(out, { recursive: true });
    const metricsFile = path.join(out, 'metrics.jsonl');
    if (ck) truncateMetrics(metricsFile, ck.meta.state.step);
    else await writeFile(metricsFile, '');
    // run.json: what a dashboard shows besides the metrics, and whether the run is going.
    const runInfo: RunInfo = {
      format: 1, status: 'running', pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), steps, tokensPerStep: batch * seq * opts.gradAccum,
      options: cli, precision, data: corpus.name, unigramEntropy: entropy, backend: describeBackend(),
      model: { config: configSpec, layers: cfg.numHiddenLayers, experts: cfg.nRoutedExperts, expertsPerToken: cfg.numExpertsPerTok, paramsTotal: pc.total, paramsActive: pc.active,
        moeLayers: [...params.layers.map((l, i) => (l.moe ? i : -1)), ...params.mtp.map((m, j) => (m.layer.moe ? cfg.numHiddenLayers + j : -1))].filter((i) => i >= 0) },
      cost: { gpu: gpu.name, pricePerHour: price, usdPerToken: meter.usdPerToken, mfuAssumed: 0.39 },
    };
    await writeRunInfo(out, runInfo);
    const endRun = (status: RunStatus, note: string): Promise<void> => writeRunInfo(out, { ...runInfo, status, note, endedAt: new Date().toISOString() });
    let dashboard: RunDashboard | null = null;
    if (a.dashboard) {
      dashboard = await startRunDashboard(out, { host: a['dashboard-host'], port: a['dashboard-port'] });
      console.log(`dashboard: ${dashboard.url}/  (live while training; afterwards: npx frugal dashboard ${out})`);
    }
    const fp8Stats = precision === 'fp8' ? fp8IntervalStats(ck ? ck.meta.state.elapsedMs / 1000 : 0) : null;
    const tty = process.stdout.isTTY === true && !quiet;
    let bar = '';
    const clearBar = (): void => { if (tty && bar) process.stdout.write('\r\x1b[K'); };
    const drawBar = (step: number, tr: Trainer): void => {
      if (!tty) return;
      const frac = step / steps, w = 30, done = Math.round(frac * w);
      const st = tr.progress, ran = st.step - startStep;
      const eta = ran > 0 ? ((performance.now() - tLoop) / 1000 / ran) * (steps - step) : NaN;
      bar = `[${'#'.repeat(done)}${'-'.repeat(w - done)}] ${step}/${steps} ETA ${Number.isFinite(eta) ? fmtTime(eta) : '--:--'}`;
      process.stdout.write(`\r${bar}`);
    };
    // SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, Kubernetes): save after this step, then exit.
    let stop: NodeJS.Signals | null = null;
    const exitCode = (sig: NodeJS.Signals): number => (sig === 'SIGTERM' ? 143 : 130);
    const onSignal = (sig: NodeJS.Signals): void => {
      const what = sig === 'SIGINT' ? 'Ctrl-C' : sig;
      if (stop) { console.error(`\nfrugal train: second ${what}, exiting without saving`); process.exit(exitCode(sig)); }
      stop = sig;
      clearBar();
      console.error(`\nfrugal train: ${what} — saving a checkpoint after this step (${what} again to quit at once)`);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    const metaBase = {
      options: { ...opts, cli } as Record<string, unknown>, configHash: configHash(cfg), tokenizerHash, dataHash,
      data: dataSpec, config: configSpec, precision,
    };
    let lastSaved = ck ? ck.meta.state.step : 0;
    const save = async (reason: string, snap: ReturnType<Trainer['snapshot']>): Promise<void> => {
      try {
        await saveCheckpoint(ckptDir, { cfg, params, optim: snap.optim, meta: { ...metaBase, state: snap.state }, extraFiles: tokFiles });
        lastSaved = snap.state.step;
        if (reason === 'final') await saveCheckpoint(path.join(out, 'final'), { cfg, params, optim: snap.optim, meta: { ...metaBase, state: snap.state }, extraFiles: tokFiles, modelOnly: true });
      } catch (e) {
        if (reason === 'interval') { clearBar(); console.error(`frugal train: warning: ${(e as Error).message}; training continues`); return; }
        throw e;
      }
    };
    const trainer = new Trainer({ cfg, params, train: trainTokens, val: valTokens, options: opts, meter, ...(projLinear ? { projLinear } : {}), promptIds: tok.encode('The', { addSpecialTokens: false }), eosId: eos, sampleVocab: tok.vocabSize }, {
      onLog: (e) => { appendMetrics(metricsFile, e, fp8Stats?.(e)); if (!quiet) { clearBar(); console.log(formatLogLine(e, steps)); } },
      onEval: (e) => { if (!quiet) { clearBar(); console.log(`  sample @${e.step}: ${JSON.stringify(e.sample.slice(0, 160))}`); } },
      onStep: (s) => drawBar(s, trainer),
      onSkip: (s, why) => { clearBar(); console.error(`frugal train: step ${s} skipped: ${why}`); },
      save: (reason, snap) => save(reason, snap),
      shouldStop: () => stop !== null,
      decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
    });
    if (ck) {
      trainer.restore({ state: ck.meta.state, optim: ck.optim });
      say(`resumed from ${resumeFrom} at step ${ck.meta.state.step}`);
    }
    const startStep = trainer.progress.step;
    if (startStep >= steps) { await endRun('finished', `checkpoint already at step ${startStep}`); await dashboard?.close(); say(`checkpoint is at step ${startStep} of the run's ${steps}; nothing to do (to train longer: --resume --out ${out} --steps ${steps * 2} --extend)`); return 0; }
    const tLoop = performance.now();
    fp8Stats?.(null); // start the first interval here, after start-up's quantisations
    let result;
    try {
      result = await trainer.run();
      await endRun(result.interrupted ? 'interrupted' : 'finished', result.interrupted ? `stopped by ${stop ?? 'a signal'} at step ${result.state.step}; resume with --resume` : '');
    } catch (e) {
      clearBar();
      await endRun('failed', (e as Error).message ?? String(e)).catch(() => undefined); // the training error is the one to report
      if (e instanceof TrainingDivergedError) {
        console.error(`frugal train: ${e.message}. The last good checkpoint is ${lastSaved > 0 ? `${ckptDir} (step ${lastSaved})` : 'none (no checkpoint was written before the failure)'}.`);
        return 1;
      }
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await dashboard?.close();
    }
    clearBar();
    const rows = readMetrics(metricsFile);
    await writeFile(path.join(out, 'loss-curve.svg'), lossCurveSvg(rows, { title: `frugal train — ${metaBase.config} on ${corpus.name}`, baseline: entropy, baselineLabel: 'unigram entropy' }));
    const st = result.state, secs = (performance.now() - t0) / 1000;
    const last = result.lastLog;
    if (result.interrupted) {
      console.log(`interrupted at step ${st.step}/${steps}; checkpoint saved to ${ckptDir}. Continue with (every option of the run is kept):\n  npx frugal train --resume --out ${out}`);
      return exitCode(stop ?? 'SIGINT');
    }
    const vios = rows.map((r) => r.maxVio).filter((x): x is number => typeof x === 'number');
    console.log([
      `done: ${st.step} steps, ${st.tokensSeen} tokens in ${fmtTime(secs)} (${(st.tokensSeen / Math.max(1e-9, st.elapsedMs / 1000)).toFixed(0)} tok/s in steps)${st.skippedSteps ? `, ${st.skippedSteps} skipped` : ''}`,
      `loss ${result.firstLoss?.toFixed(3) ?? '-'} → ${last ? last.mainLoss.toFixed(3) : '-'} (train), val ${result.finalValLoss?.toFixed(3) ?? '-'}; unigram entropy ${entropy.toFixed(3)}; MaxVio ${vios.length ? vios[vios.length - 1]!.toFixed(2) : '-'}; cost on ${gpu.name} at $${price}/h: $${fmtUsd(last?.usd ?? 0)}`,
      `saved: ${path.join(out, 'final')} (HF layout), checkpoint ${ckptDir}, metrics ${metricsFile}, plot ${path.join(out, 'loss-curve.svg')}`,
      'next:',
      `  npx frugal generate --model ${path.join(out, 'final')} --prompt "The Congress"`,
      `  npx frugal serve --model ${path.join(out, 'final')}`,
      `  npx frugal train --resume --out ${out} --steps ${steps * 2} --extend   # train longer (extra steps at the final lr)`,
    ].join('\n'));
    return 0;
  }
}
