/**
 * `frugal experiment fp8`: one DeepSeek-style model (MLA + MoE + MTP), the same data (the bundled
 * corpus, BPE trained on its training split with the config's vocabulary), trained with the
 * precision recipes (src/fp8/recipe.ts: fp32, bf16, fp8) and the fp8 recipe's ablations, for N
 * steps each, over several seeds.
 *
 * Contract:
 * - Data (split, tokenizer, validation batches) is fixed by --data-seed; a seed sets the
 *   initialisation and the order of training batches. Runs are trained seed by seed, recipes
 *   interleaved within a seed (machine load hits them alike), then the ablations.
 * - Per run: final train loss (mean of the last 10 steps' main CE), validation loss (mean over
 *   --val-batches batches; the curve uses the first 4), peak projection-activation bytes saved for
 *   backward, optimizer bytes, wall ms/step, CPU ms/step, and the shares of the step spent in FP8
 *   quantisation and FP8 GEMMs. Summary across seeds in experiment-report.ts.
 * - With --out DIR every finished (recipe, seed) run is written at once to DIR/fp8-runs/ and, with
 *   --resume, reused (when its settings match; a mismatch is an error, never an overwrite), so an
 *   interrupted run loses at most the run in progress. DIR/fp8.json, fp8.svg and fp8-gap.svg are
 *   written from every matching run file in DIR/fp8-runs/, so separate invocations (e.g. the
 *   ablations in a second process) add up; --report-only rebuilds them without training.
 * - All low-precision arithmetic is emulated on the CPU.
 */
import { mkdir, readFile, readdir, writeFile, rename } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from './main.js';
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../autograd/tape.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../backend/setup-node.js';
import { presets } from '../model/config.js';
import { initParams, lossFn, trainableParams } from '../model/deepseek.js';
import { loadCorpus } from '../train/data-node.js';
import { BatchSampler, packDocuments, splitDocuments } from '../train/data.js';
import { trainBpe } from '../io/bpe.js';
import { Tokenizer } from '../io/tokenizer.js';
import { AdamW } from '../train/optim.js';
import { ABLATIONS, describeRecipe, makeProjLinear, parseVariant, recipeSettings, type Variant } from '../fp8/recipe.js';
import { fp8KernelTime, resetFp8KernelTime, resetSavedActivationStats, savedActivationStats } from '../fp8/linear.js';
import { gapSvg, lossSvg, pairedGaps, sd, variantRows, type RunResult } from './experiment-report.js';

const spec: OptionSpec = {
  steps: { type: 'number', help: 'optimizer steps per run', default: 80 },
  config: { type: 'string', help: 'model preset: tiny, small or demo', default: 'tiny' },
  recipes: { type: 'string', help: 'comma-separated recipes (fp32, bf16, fp8) or ablations to train', default: 'fp32,bf16,fp8' },
  ablations: { type: 'string', help: `fp8 ablations to train too, comma-separated or 'all' (${Object.keys(ABLATIONS).join(', ')})`, default: '' },
  seeds: { type: 'string', help: 'comma-separated seeds (init and batch order); overrides --seed' },
  'ablation-seeds': { type: 'string', help: 'seeds of the ablation runs (default: the first seed)' },
  batch: { type: 'number', help: 'sequences per step', default: 8 },
  seq: { type: 'number', help: 'tokens per sequence', default: 64 },
  lr: { type: 'number', help: 'peak learning rate (warmup, then cosine to 10%)', default: 3e-3 },
  seed: { type: 'number', help: 'seed when --seeds is not given', default: 1234 },
  'data-seed': { type: 'number', help: 'seed of the split, tokenizer sample and validation batches', default: 1234 },
  data: { type: 'string', help: "corpus: 'sotu' (bundled), a .txt/.jsonl file or a folder", default: 'sotu' },
  'eval-every': { type: 'number', help: 'validation every N steps (for the curve, on 4 batches)', default: 25 },
  'val-batches': { type: 'number', help: 'batches of the final validation loss', default: 16 },
  backend: { type: 'string', help: 'auto (native > wasm > ts), native, wasm or ts', default: 'auto' },
  threads: { type: 'number', help: 'backend threads (default: the backend\'s own)' },
  out: { type: 'string', help: 'folder for fp8.json, fp8.svg, fp8-gap.svg and the per-run files (fp8-runs/)' },
  resume: { type: 'boolean', help: 'reuse finished runs found in OUT/fp8-runs (same settings)' },
  'report-only': { type: 'boolean', help: 'only rebuild the report from OUT/fp8-runs (no training)' },
  json: { type: 'boolean', help: 'print one JSON object instead of the table' },
};

/** The settings a run file must match to be reused or reported together. */
interface RunKey { config: string; steps: number; batch: number; seq: number; lr: number; dataSeed: number; data: string; valBatches: number }

interface Data { train: Int32Array; val: Int32Array; tokenizer: string }

async function prepareData(spec: string, vocab: number, seed: number, log: (s: string) => void): Promise<Data> {
  const corpus = await loadCorpus(spec);
  const { train, val } = splitDocuments(corpus.documents, 0.05, seed);
  // BPE on up to ~2 M characters of the training split (about 0.4 s), as `frugal tokenizer train` does.
  const sample: string[] = [];
  let chars = 0;
  for (const d of train) { if (chars > 2_000_000) break; sample.push(d); chars += d.length; }
  const tok = Tokenizer.fromJSON(trainBpe(sample, { vocabSize: vocab }), { eos_token: '<|endoftext|>' });
  if (tok.eosId === null) throw new Error('experiment: the trained tokenizer has no <|endoftext|> token');
  const enc = (docs: string[]): Int32Array => packDocuments(docs.map((d) => tok.encode(d, { addSpecialTokens: false })), tok.eosId!);
  const data = { train: enc(train), val: enc(val), tokenizer: `byte-level BPE ${vocab} trained on ${chars} chars of ${corpus.name}` };
  log(`data: ${corpus.name}, ${train.length} train / ${val.length} val documents, ${data.train.length} / ${data.val.length} tokens (${data.tokenizer})`);
  return data;
}

function lrAt(step: number, steps: number, peak: number): number {
  const warm = Math.max(1, Math.min(50, Math.floor(steps / 10)));
  if (step < warm) return (peak * (step + 1)) / warm;
  const p = (step - warm) / Math.max(1, steps - warm);
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * p)));
}

function clipGradNorm(params: Tensor[], max: number): void {
  let ss = 0;
  for (const p of params) if (p.grad) for (const g of p.grad) ss += g * g;
  const norm = Math.sqrt(ss);
  if (norm <= max) return;
  const s = max / norm;
  for (const p of params) if (p.grad) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= s;
}

interface TrainArgs { cfgName: string; steps: number; batch: number; seq: number; lr: number; seed: number; dataSeed: number; evalEvery: number; valBatches: number }

function trainRun(recipe: Variant, a: TrainArgs, data: Data, log: (s: string) => void): RunResult {
  const cfg = structuredClone(presets[a.cfgName]!);
  const params = initParams(cfg, { seed: a.seed });
  const trainable = trainableParams(params, cfg);
  const settings = recipeSettings(recipe);
  const opt = new AdamW(trainable, { momentDtype: settings.momentDtype });
  const projLinear = makeProjLinear(recipe);
  const opts = { projLinear, recompute: settings.recompute, mtpWeight: 0.3 };
  const sampler = new BatchSampler(data.train, a.batch, a.seq, a.seed);
  // Validation batches depend on the data seed only: every recipe and seed sees the same ones.
  const valSampler = new BatchSampler(data.val, a.batch, a.seq, a.dataSeed + 1);
  const valBatches = Array.from({ length: Math.max(4, a.valBatches) }, () => valSampler.next());
  const toT = (b: { inputs: Int32Array; targets: Int32Array }): [Tensor, Tensor] => [new Tensor(b.inputs, [a.batch, a.seq], 'i32'), new Tensor(b.targets, [a.batch * a.seq], 'i32')];
  const evalVal = (n: number): number => noGrad(() => {
    let s = 0;
    for (const b of valBatches.slice(0, n)) { const [i, t] = toT(b); s += lossFn(params, cfg, i, t, { projLinear, recompute: false }).mainLoss; }
    return s / n;
  });
  const curve: { step: number; train: number }[] = [];
  const valCurve: { step: number; val: number }[] = [];
  let peak = 0, timeMs = 0, cpuUs = 0, quantMs = 0, gemmMs = 0;
  for (let step = 0; step < a.steps; step++) {
    const [inputs, targets] = toT(sampler.next());
    resetFp8KernelTime();
    const t0 = performance.now(), c0 = process.cpuUsage();
    resetSavedActivationStats();
    const r = lossFn(params, cfg, inputs, targets, opts);
    backward(r.loss);
    peak = Math.max(peak, savedActivationStats().peak);
    clipGradNorm(trainable, 1);
    opt.step(lrAt(step, a.steps, a.lr));
    zeroGrad(trainable);
    timeMs += performance.now() - t0;
    const c = process.cpuUsage(c0);
    cpuUs += c.user + c.system;
    const k = fp8KernelTime();
    quantMs += k.quantizeMs; gemmMs += k.gemmMs;
    curve.push({ step: step + 1, train: r.mainLoss });
    if (!Number.isFinite(r.mainLoss)) throw new Error(`experiment: ${recipe} seed ${a.seed}: loss became ${r.mainLoss} at step ${step + 1} (lower --lr)`);
    if ((step + 1) % a.evalEvery === 0 || step + 1 === a.steps) {
      const v = evalVal(4);
      valCurve.push({ step: step + 1, val: v });
      log(`  ${recipe} seed ${a.seed} step ${step + 1}/${a.steps} train ${r.mainLoss.toFixed(4)} val ${v.toFixed(4)} (${(timeMs / (step + 1)).toFixed(0)} ms/step, quantise ${((100 * quantMs) / timeMs).toFixed(1)}%)`);
    }
  }
  const last = curve.slice(-10);
  const optimizerBytes = opt.stateBytes();
  return {
    recipe, seed: a.seed, description: describeRecipe(recipe),
    trainLoss: last.reduce((s, c) => s + c.train, 0) / last.length,
    valLoss: evalVal(Math.max(4, a.valBatches)),
    savedActivationBytes: peak, savedActivationBytesPerToken: peak / (a.batch * a.seq),
    optimizerBytes, memoryBytes: peak + optimizerBytes,
    msPerStep: timeMs / a.steps, stepsPerSec: (1000 * a.steps) / timeMs, cpuMsPerStep: cpuUs / 1000 / a.steps,
    quantizeShare: quantMs / timeMs, fp8GemmShare: gemmMs / timeMs, curve, valCurve,
  };
}

const runFile = (dir: string, v: Variant, seed: number): string => path.join(dir, 'fp8-runs', `${v.replace(/[^a-z0-9-]/gi, '_')}-seed${seed}.json`);
const sameKey = (a: RunKey, b: RunKey): boolean => (Object.keys(a) as (keyof RunKey)[]).every((k) => a[k] === b[k]);

/** Finished runs in DIR/fp8-runs with the given settings (others are left alone). */
async function loadRuns(dir: string, key: RunKey): Promise<RunResult[]> {
  let names: string[];
  try { names = await readdir(path.join(dir, 'fp8-runs')); } catch { return []; }
  const out: RunResult[] = [];
  for (const n of names.filter((x) => x.endsWith('.json')).sort()) {
    const j = JSON.parse(await readFile(path.join(dir, 'fp8-runs', n), 'utf8')) as { key: RunKey; result: RunResult };
    if (j.key && sameKey(j.key, key) && j.result) out.push(j.result);
  }
  return out;
}

async function saveRun(dir: string, key: RunKey, r: RunResult): Promise<void> {
  const f = runFile(dir, r.recipe, r.seed);
  await mkdir(path.dirname(f), { recursive: true });
  await writeFile(f + '.tmp', JSON.stringify({ key, result: r }) + '\n');
  await rename(f + '.tmp', f); // a crash mid-write never leaves a half file under the real name
}

const fmtB = (n: number): string => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n.toFixed(0)} B`);
const pc = (x: number | null, d = 3): string => (x === null ? '—' : `${(100 * x).toFixed(d)}%`);
const parseSeeds = (s: string, what: string): number[] => {
  const xs = s.split(',').map((t) => Number(t.trim()));
  if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 0)) throw new UsageError(`--${what} must be comma-separated non-negative integers, got '${s}'`);
  return [...new Set(xs)];
};

/** Entry point of `frugal experiment`. */
export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  const synopsis = 'fp8 [--steps N] [--config tiny|small|demo] [--seeds 1,2,3] [--ablations all] [--out DIR [--resume]] [--json] [options]';
  if (a.help) { console.log(usage('experiment', synopsis, spec)); return 0; }
  const name = a._[0];
  if (name !== 'fp8') throw new UsageError(name === undefined ? `name an experiment (usage: frugal experiment ${synopsis})` : `unknown experiment '${name}' (known: fp8)`);
  if (a._.length > 1) throw new UsageError(`unexpected argument '${a._[1]}'`);
  const cfgName = String(a.config);
  if (!['tiny', 'small', 'demo'].includes(cfgName)) throw new UsageError(`--config must be tiny, small or demo, got '${cfgName}'`);
  for (const k of ['steps', 'batch', 'seq', 'eval-every', 'val-batches'] as const) {
    if (!(Number.isInteger(a[k]) && a[k] >= 1)) throw new UsageError(`--${k} must be a positive integer, got ${a[k]}`);
  }
  if (!(a.lr > 0)) throw new UsageError(`--lr must be > 0, got ${a.lr}`);
  if (a.threads !== undefined && !(Number.isInteger(a.threads) && a.threads >= 1 && a.threads <= 64)) throw new UsageError(`--threads must be an integer 1..64, got ${a.threads}`);
  let recipes: Variant[], ablations: Variant[];
  try {
    recipes = String(a.recipes).split(',').filter((x) => x.trim()).map((x) => parseVariant(x.trim()));
    const abl = String(a.ablations).trim();
    ablations = abl === 'all' ? (Object.keys(ABLATIONS) as Variant[]) : abl ? abl.split(',').map((x) => parseVariant(x.trim())) : [];
  } catch (e) { throw new UsageError(`--recipes/--ablations: ${(e as Error).message}`); }
  const seeds = a.seeds !== undefined ? parseSeeds(String(a.seeds), 'seeds') : [a.seed as number];
  const ablationSeeds = a['ablation-seeds'] !== undefined ? parseSeeds(String(a['ablation-seeds']), 'ablation-seeds') : [seeds[0]!];
  if ((a.resume || a['report-only']) && !a.out) throw new UsageError('--resume and --report-only need --out DIR');
  const backend = String(a.backend);
  if (!['auto', 'native', 'wasm', 'ts'].includes(backend)) throw new UsageError(`--backend must be auto, native, wasm or ts, got '${backend}'`);
  const log = (s: string): void => { if (!a.json) console.log(s); else console.error(s); };
  const key: RunKey = { config: cfgName, steps: a.steps, batch: a.batch, seq: a.seq, lr: a.lr, dataSeed: a['data-seed'], data: String(a.data), valBatches: a['val-batches'] };
  const out = a.out ? String(a.out) : null;
  await useBackend(backend as BackendChoice, a.threads !== undefined ? { threads: a.threads } : {});
  try {
    const plan: [Variant, number][] = [];
    for (const sd0 of seeds) for (const r of recipes) plan.push([r, sd0]);
    for (const sd0 of ablationSeeds) for (const r of ablations) if (!plan.some(([v, x]) => v === r && x === sd0)) plan.push([r, sd0]);
    const done = out && (a.resume || a['report-only']) ? await loadRuns(out, key) : [];
    if (out && !a.resume && !a['report-only']) {
      // Never overwrite finished runs silently: a run file with these names must be resumed or moved.
      for (const [v, sd0] of plan) {
        try { await readFile(runFile(out, v, sd0)); throw new UsageError(`${runFile(out, v, sd0)} exists: add --resume to reuse finished runs, or use another --out`); } catch (e) { if (e instanceof UsageError) throw e; }
      }
    }
    log(`experiment fp8: config ${cfgName}, ${a.steps} steps x ${a.batch}x${a.seq} tokens, lr ${a.lr}, seeds ${seeds.join(',')}${ablations.length ? `, ablations ${ablations.join(',')} (seeds ${ablationSeeds.join(',')})` : ''}; backend ${describeBackend()}`);
    log(describeBackend().startsWith('native')
      ? 'note: no FP8 tensor cores on a CPU: FP8 GEMMs decode E4M3 exactly to BF16 and use AVX-512 BF16 dot products (FP32 accumulate).'
      : 'note: on this backend every FP8/BF16 GEMM is emulated (codes decoded to f32).');
    const runs: RunResult[] = [...done];
    if (!a['report-only']) {
      const todo = plan.filter(([v, sd0]) => !runs.some((r) => r.recipe === v && r.seed === sd0));
      if (done.length) log(`resume: ${plan.length - todo.length} of ${plan.length} runs already finished in ${path.join(out!, 'fp8-runs')}`);
      const data = todo.length ? await prepareData(String(a.data), presets[cfgName]!.vocabSize, a['data-seed'], log) : null;
      for (const [v, sd0] of todo) {
        log(`${describeRecipe(v)} [seed ${sd0}]`);
        const r = trainRun(v, { cfgName, steps: a.steps, batch: a.batch, seq: a.seq, lr: a.lr, seed: sd0, dataSeed: a['data-seed'], evalEvery: a['eval-every'], valBatches: a['val-batches'] }, data!, log);
        runs.push(r);
        if (out) await saveRun(out, key, r);
      }
    }
    const all = out ? await loadRuns(out, key).then((xs) => (xs.length >= runs.length ? xs : runs)) : runs;
    return await report(all, { a, cfgName, key, out, log, data: String(a.data) });
  } finally {
    await disposeBackends();
  }
}

async function report(runs: RunResult[], o: { a: ReturnType<typeof parseArgs>; cfgName: string; key: RunKey; out: string | null; log: (s: string) => void; data: string }): Promise<number> {
  const { a, cfgName, key, out } = o;
  if (!runs.length) throw new UsageError(`no finished runs${out ? ` in ${path.join(out, 'fp8-runs')} with these settings (config, steps, batch, seq, lr, data, data seed, val batches)` : ''}`);
  const mainOrder: Variant[] = ['fp32', 'bf16', 'fp8'];
  const order: Variant[] = [...mainOrder, ...(Object.keys(ABLATIONS) as Variant[])];
  const rows = variantRows(runs, order);
  const row = (v: Variant) => rows.find((r) => r.recipe === v);
  const first = (v: Variant) => runs.filter((r) => r.recipe === v).sort((x, y) => x.seed - y.seed)[0];
  const fp32Vals = runs.filter((r) => r.recipe === 'fp32').map((r) => r.valLoss);
  const fp32Mean = fp32Vals.reduce((s, x) => s + x, 0) / Math.max(1, fp32Vals.length);
  const gaps = pairedGaps(runs, 'fp8', 'fp32');
  const gapsBf16 = pairedGaps(runs, 'fp8', 'bf16');
  const seeds = [...new Set(runs.filter((r) => mainOrder.includes(r.recipe)).map((r) => r.seed))].sort((x, y) => x - y);
  const mean = (xs: number[]): number | null => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null);
  const f8 = first('fp8'), f32 = first('fp32');
  const summary = {
    experiment: 'fp8', config: cfgName, steps: key.steps, batch: key.batch, seq: key.seq, lr: key.lr, seed: seeds[0] ?? null,
    data: o.data, backend: describeBackend(), machine: `${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, Node ${process.versions.node}`,
    emulated: true,
    relativeGap: mean(gaps.map((g) => g.gap)),
    relativeGapVsBf16: mean(gapsBf16.map((g) => g.gap)),
    memoryRatio: f8 && f32 ? f8.memoryBytes / f32.memoryBytes : null,
    seeds, dataSeed: key.dataSeed, valBatches: key.valBatches,
    relativeGapMean: mean(gaps.map((g) => g.gap)),
    relativeGapSd: gaps.length ? sd(gaps.map((g) => g.gap)) : null,
    relativeGapBySeed: gaps,
    fp32SeedSd: fp32Vals.length > 1 ? sd(fp32Vals) / fp32Mean : null,
    msPerStep: Object.fromEntries(rows.map((r) => [r.recipe, r.msPerStep])),
    cpuMsPerStep: Object.fromEntries(rows.map((r) => [r.recipe, r.cpuMsPerStep])),
    quantizeShare: Object.fromEntries(rows.map((r) => [r.recipe, r.quantizeShare])),
    recipes: rows.filter((r) => mainOrder.includes(r.recipe)),
    ablations: rows.filter((r) => !mainOrder.includes(r.recipe)),
    runs: runs.map(({ curve: _c, valCurve: _v, ...rest }) => rest),
    // The first seed's full run per recipe (with curves), under the recipe's name as before.
    ...Object.fromEntries(mainOrder.map((v) => [v, first(v)]).filter(([, r]) => r)),
  };
  if (out) {
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'fp8.json'), JSON.stringify(summary, null, 1) + '\n');
    const shown = mainOrder.filter((v) => row(v));
    await writeFile(path.join(out, 'fp8.svg'), lossSvg(runs, shown, `DeepSeek-style ${cfgName} model: ${shown.join(' vs ')} (${key.steps} steps, seeds ${seeds.join(',')}; emulated on CPU)`));
    await writeFile(path.join(out, 'fp8-gap.svg'), gapSvg(runs, order, `Validation loss vs fp32 of the same seed (${cfgName}, ${key.steps} steps)`));
    o.log(`wrote ${path.join(out, 'fp8.json')}, fp8.svg and fp8-gap.svg (${runs.length} runs)`);
  }
  if (a.json) { console.log(JSON.stringify(summary)); return 0; }
  const table = [['recipe', 'seeds', 'train loss', 'val loss', 'vs fp32 (mean)', 'sd', 'vs fp8', 'act+opt', 'ms/step', 'cpu ms/step', 'quantise', 'fp8 GEMM']];
  for (const r of rows) {
    table.push([r.recipe, r.seeds.join(','), r.trainLoss.toFixed(4), r.valLoss.toFixed(4), pc(r.relativeGapMean), pc(r.seeds.length > 1 ? r.relativeGapSd : null), pc(r.relativeGapVsFp8Mean),
      fmtB(r.memoryBytes), r.msPerStep.toFixed(0), r.cpuMsPerStep.toFixed(0), pc(r.quantizeShare, 1), pc(r.fp8GemmShare, 1)]);
  }
  const w = table[0]!.map((_, i) => Math.max(...table.map((t) => t[i]!.length)));
  console.log('');
  for (const t of table) console.log(t.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '));
  if (summary.relativeGapMean !== null) {
    const bound = Math.max(0.0025, 2 * (summary.fp32SeedSd ?? 0));
    console.log(`\nfp8 vs fp32 validation gap over seeds ${gaps.map((g) => g.seed).join(',')}: mean ${pc(summary.relativeGapMean)}, sd ${pc(summary.relativeGapSd)}; ` +
      `fp32 seed-to-seed sd ${pc(summary.fp32SeedSd)}; bound max(0.25%, 2 sd) = ${pc(bound)}: ${Math.abs(summary.relativeGapMean) <= bound ? 'within' : 'OUTSIDE'}`);
  }
  if (summary.memoryRatio !== null) console.log(`fp8 / fp32 memory (saved projection activations + optimizer state): ${(summary.memoryRatio * 100).toFixed(1)}%`);
  console.log('act+opt = peak bytes of projection inputs held for backward + optimizer state; attention, norms, router and head activations are f32 in every recipe and not counted.');
  return 0;
}
