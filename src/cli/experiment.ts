/**
 * `frugal experiment fp8`: the same tiny DeepSeek-style model (MLA + MoE + MTP), same seed, same
 * data (the bundled corpus, BPE trained on its training split with the config's vocabulary),
 * trained with the fp32, bf16 and fp8 precision recipes (src/fp8/recipe.ts) for N steps each.
 * Reports per recipe: final train loss (mean of the last 10 steps' main CE), validation loss,
 * relative gap vs fp32 and bf16, peak bytes of projection activations saved for backward (per
 * token and per step, counted by the recipe linears), optimizer state bytes and ms/step. Prints a
 * table, or one JSON object with `--json`; `--out DIR` also writes fp8.json and fp8.svg (loss curves).
 * All low-precision arithmetic is emulated on the CPU.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from './main.js';
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../autograd/tape.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../backend/setup.js';
import { presets } from '../model/config.js';
import { initParams, lossFn, trainableParams } from '../model/deepseek.js';
import { loadCorpus } from '../train/data-node.js';
import { BatchSampler, packDocuments, splitDocuments } from '../train/data.js';
import { trainBpe } from '../io/bpe.js';
import { Tokenizer } from '../io/tokenizer.js';
import { AdamW } from '../train/optim.js';
import { RECIPES, describeRecipe, makeProjLinear, parseRecipe, recipeSettings, type Recipe } from '../fp8/recipe.js';
import { resetSavedActivationStats, savedActivationStats } from '../fp8/linear.js';

const spec: OptionSpec = {
  steps: { type: 'number', help: 'optimizer steps per recipe', default: 80 },
  config: { type: 'string', help: 'model preset: tiny or demo', default: 'tiny' },
  recipes: { type: 'string', help: 'comma-separated recipes to train', default: 'fp32,bf16,fp8' },
  batch: { type: 'number', help: 'sequences per step', default: 8 },
  seq: { type: 'number', help: 'tokens per sequence', default: 64 },
  lr: { type: 'number', help: 'peak learning rate (warmup, then cosine to 10%)', default: 3e-3 },
  seed: { type: 'number', help: 'seed of init, split and batches', default: 1234 },
  data: { type: 'string', help: "corpus: 'sotu' (bundled), a .txt/.jsonl file or a folder", default: 'sotu' },
  'eval-every': { type: 'number', help: 'validation every N steps (for the curve)', default: 25 },
  backend: { type: 'string', help: 'auto (native > wasm > ts), native, wasm or ts', default: 'auto' },
  out: { type: 'string', help: 'folder to write fp8.json and fp8.svg into' },
  json: { type: 'boolean', help: 'print one JSON object instead of the table' },
};

/** Result of one recipe's run. */
export interface RecipeResult {
  recipe: Recipe;
  description: string;
  trainLoss: number;
  valLoss: number;
  /** Peak bytes of projection inputs saved for backward during one step. */
  savedActivationBytes: number;
  savedActivationBytesPerToken: number;
  optimizerBytes: number;
  /** savedActivationBytes + optimizerBytes. */
  memoryBytes: number;
  msPerStep: number;
  stepsPerSec: number;
  curve: { step: number; train: number }[];
  valCurve: { step: number; val: number }[];
}

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

function trainRecipe(recipe: Recipe, a: { cfgName: string; steps: number; batch: number; seq: number; lr: number; seed: number; evalEvery: number }, data: Data, log: (s: string) => void): RecipeResult {
  const cfg = structuredClone(presets[a.cfgName]!);
  const params = initParams(cfg, { seed: a.seed });
  const trainable = trainableParams(params, cfg);
  const settings = recipeSettings(recipe);
  const opt = new AdamW(trainable, { momentDtype: settings.momentDtype });
  const projLinear = makeProjLinear(recipe);
  const opts = { projLinear, recompute: settings.recompute, mtpWeight: 0.3 };
  const sampler = new BatchSampler(data.train, a.batch, a.seq, a.seed);
  const valSampler = new BatchSampler(data.val, a.batch, a.seq, a.seed + 1);
  const valBatches = Array.from({ length: 4 }, () => valSampler.next());
  const toT = (b: { inputs: Int32Array; targets: Int32Array }): [Tensor, Tensor] => [new Tensor(b.inputs, [a.batch, a.seq], 'i32'), new Tensor(b.targets, [a.batch * a.seq], 'i32')];
  const evalVal = (): number => noGrad(() => {
    let s = 0;
    for (const b of valBatches) { const [i, t] = toT(b); s += lossFn(params, cfg, i, t, { projLinear, recompute: false }).mainLoss; }
    return s / valBatches.length;
  });
  const curve: { step: number; train: number }[] = [];
  const valCurve: { step: number; val: number }[] = [];
  let peak = 0, timeMs = 0;
  for (let step = 0; step < a.steps; step++) {
    const [inputs, targets] = toT(sampler.next());
    const t0 = performance.now();
    resetSavedActivationStats();
    const r = lossFn(params, cfg, inputs, targets, opts);
    backward(r.loss);
    peak = Math.max(peak, savedActivationStats().peak);
    clipGradNorm(trainable, 1);
    opt.step(lrAt(step, a.steps, a.lr));
    zeroGrad(trainable);
    timeMs += performance.now() - t0;
    curve.push({ step: step + 1, train: r.mainLoss });
    if (!Number.isFinite(r.mainLoss)) throw new Error(`experiment: ${recipe} loss became ${r.mainLoss} at step ${step + 1} (lower --lr)`);
    if ((step + 1) % a.evalEvery === 0 || step + 1 === a.steps) {
      const v = evalVal();
      valCurve.push({ step: step + 1, val: v });
      log(`  ${recipe} step ${step + 1}/${a.steps} train ${r.mainLoss.toFixed(4)} val ${v.toFixed(4)} (${(timeMs / (step + 1)).toFixed(0)} ms/step)`);
    }
  }
  const last = curve.slice(-10);
  const optimizerBytes = opt.stateBytes();
  return {
    recipe, description: describeRecipe(recipe),
    trainLoss: last.reduce((s, c) => s + c.train, 0) / last.length,
    valLoss: valCurve[valCurve.length - 1]!.val,
    savedActivationBytes: peak, savedActivationBytesPerToken: peak / (a.batch * a.seq),
    optimizerBytes, memoryBytes: peak + optimizerBytes,
    msPerStep: timeMs / a.steps, stepsPerSec: (1000 * a.steps) / timeMs, curve, valCurve,
  };
}

function svgPlot(results: RecipeResult[], title: string): string {
  const W = 720, H = 420, L = 60, R = 20, T = 40, B = 50;
  const colors: Record<Recipe, string> = { fp32: '#1f77b4', bf16: '#2ca02c', fp8: '#d62728' };
  const ema = (xs: number[]): number[] => { let m = xs[0] ?? 0; return xs.map((x) => (m = 0.9 * m + 0.1 * x)); };
  const all = results.flatMap((r) => [...ema(r.curve.map((c) => c.train)), ...r.valCurve.map((v) => v.val)]);
  const steps = Math.max(...results.map((r) => r.curve.length));
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (s: number): number => L + ((W - L - R) * s) / steps;
  const y = (v: number): number => T + ((H - T - B) * (hi - v)) / (hi - lo || 1);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`, `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle">step</text>`, `<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">loss (nats)</text>`];
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    out.push(`<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`, `<text x="${x((steps * i) / 4)}" y="${H - B + 16}" text-anchor="middle">${Math.round((steps * i) / 4)}</text>`);
  }
  results.forEach((r, i) => {
    const c = colors[r.recipe];
    const tr = ema(r.curve.map((p) => p.train));
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${tr.map((v, j) => `${x(j + 1).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<polyline fill="none" stroke="${c}" stroke-dasharray="5,3" points="${r.valCurve.map((v) => `${x(v.step).toFixed(1)},${y(v.val).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<text x="${W - R - 150}" y="${T + 16 * i}" fill="${c}">${r.recipe}: train (EMA) — val - -</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

const fmtB = (n: number): string => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n.toFixed(0)} B`);
const pct = (a: number, b: number | undefined): string => (b === undefined ? '—' : `${(((a - b) / b) * 100).toFixed(3)}%`);

/** Entry point of `frugal experiment`. */
export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  const synopsis = 'fp8 [--steps N] [--config tiny|demo] [--json] [options]';
  if (a.help) { console.log(usage('experiment', synopsis, spec)); return 0; }
  const name = a._[0];
  if (name !== 'fp8') throw new UsageError(name === undefined ? `name an experiment (usage: frugal experiment ${synopsis})` : `unknown experiment '${name}' (known: fp8)`);
  if (a._.length > 1) throw new UsageError(`unexpected argument '${a._[1]}'`);
  const cfgName = String(a.config);
  if (cfgName !== 'tiny' && cfgName !== 'demo') throw new UsageError(`--config must be tiny or demo, got '${cfgName}'`);
  for (const k of ['steps', 'batch', 'seq', 'eval-every'] as const) {
    if (!(Number.isInteger(a[k]) && a[k] >= 1)) throw new UsageError(`--${k} must be a positive integer, got ${a[k]}`);
  }
  if (!(a.lr > 0)) throw new UsageError(`--lr must be > 0, got ${a.lr}`);
  let recipes: Recipe[];
  try { recipes = String(a.recipes).split(',').map((s) => parseRecipe(s.trim())); } catch (e) { throw new UsageError(`--recipes: ${(e as Error).message}`); }
  const backend = String(a.backend);
  if (!['auto', 'native', 'wasm', 'ts'].includes(backend)) throw new UsageError(`--backend must be auto, native, wasm or ts, got '${backend}'`);
  const log = (s: string): void => { if (!a.json) console.log(s); else console.error(s); };
  await useBackend(backend as BackendChoice);
  try {
    log(`experiment fp8: config ${cfgName}, ${a.steps} steps x ${a.batch}x${a.seq} tokens, lr ${a.lr}, seed ${a.seed}; backend ${describeBackend()}`);
    log(describeBackend().startsWith('native')
      ? 'note: no FP8 tensor cores on a CPU: FP8 GEMMs decode E4M3 exactly to BF16 and use AVX-512 BF16 dot products (FP32 accumulate); the saving measured is memory and bandwidth.'
      : 'note: on this backend every FP8/BF16 GEMM is emulated (codes decoded to f32); the saving measured is memory, not speed.');
    const data = await prepareData(String(a.data), presets[cfgName]!.vocabSize, a.seed, log);
    const results: RecipeResult[] = [];
    for (const r of recipes) {
      log(describeRecipe(r));
      results.push(trainRecipe(r, { cfgName, steps: a.steps, batch: a.batch, seq: a.seq, lr: a.lr, seed: a.seed, evalEvery: a['eval-every'] }, data, log));
    }
    const by = Object.fromEntries(results.map((r) => [r.recipe, r])) as Partial<Record<Recipe, RecipeResult>>;
    const summary = {
      experiment: 'fp8', config: cfgName, steps: a.steps, batch: a.batch, seq: a.seq, lr: a.lr, seed: a.seed,
      data: data.tokenizer, backend: describeBackend(), machine: `${cpus()[0]?.model ?? 'cpu'} x${cpus().length}, Node ${process.versions.node}`,
      emulated: true,
      relativeGap: by.fp8 && by.fp32 ? (by.fp8.valLoss - by.fp32.valLoss) / by.fp32.valLoss : null,
      relativeGapVsBf16: by.fp8 && by.bf16 ? (by.fp8.valLoss - by.bf16.valLoss) / by.bf16.valLoss : null,
      memoryRatio: by.fp8 && by.fp32 ? by.fp8.memoryBytes / by.fp32.memoryBytes : null,
      ...Object.fromEntries(results.map((r) => [r.recipe, r])),
    };
    if (a.out) {
      await mkdir(String(a.out), { recursive: true });
      await writeFile(path.join(String(a.out), 'fp8.json'), JSON.stringify(summary, null, 1) + '\n');
      await writeFile(path.join(String(a.out), 'fp8.svg'), svgPlot(results, `DeepSeek-style ${cfgName} model: ${recipes.join(' vs ')} (${a.steps} steps, emulated on CPU)`));
      log(`wrote ${path.join(String(a.out), 'fp8.json')} and fp8.svg`);
    }
    if (a.json) { console.log(JSON.stringify(summary)); return 0; }
    const rows = [['recipe', 'train loss', 'val loss', 'val vs fp32', 'val vs bf16', 'saved act/token', 'saved act/step', 'optimizer state', 'act+opt', 'ms/step']];
    for (const r of results) {
      rows.push([r.recipe, r.trainLoss.toFixed(4), r.valLoss.toFixed(4), pct(r.valLoss, by.fp32?.valLoss), pct(r.valLoss, by.bf16?.valLoss),
        fmtB(r.savedActivationBytesPerToken), fmtB(r.savedActivationBytes), fmtB(r.optimizerBytes), fmtB(r.memoryBytes), r.msPerStep.toFixed(0)]);
    }
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
    console.log('');
    for (const row of rows) console.log(row.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  '));
    if (summary.memoryRatio !== null) console.log(`\nfp8 / fp32 memory (saved projection activations + optimizer state): ${(summary.memoryRatio * 100).toFixed(1)}%`);
    console.log('saved act = peak bytes of projection inputs held for backward (the FP8-eligible GEMMs); attention, norms, router and head activations are f32 in every recipe and not counted.');
    return 0;
  } finally {
    await disposeBackends();
  }
}
