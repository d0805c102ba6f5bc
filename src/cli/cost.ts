/**
 * `frugal cost`: the training-cost meter on the command line. Resolves a preset name (DeepSeek
 * presets of model/config.ts, `llama-3.1-405b`) or a path to an HF config.json (or its folder),
 * runs `estimateCost`, and prints a table, or with `--json` exactly one JSON object.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from './main.js';
import { presets, parseHFConfig } from '../model/config.js';
import { type ArchConfig, type CostEstimate, type Recipe, densePresets, estimateCost, gpus, parseDenseConfig, recipes } from '../cost/index.js';

export const summary = 'training cost meter: params, FLOPs, memory, GPU-hours and dollars';

const spec: OptionSpec = {
  config: { type: 'string', help: `preset (${[...Object.keys(presets), ...Object.keys(densePresets)].join(', ')}) or path to an HF config.json`, default: 'deepseek-v3' },
  tokens: { type: 'number', help: 'training tokens', default: 14.8e12 },
  seq: { type: 'number', help: 'training sequence length', default: 4096 },
  gpu: { type: 'string', help: `accelerator (${Object.keys(gpus).join(', ')})`, default: 'h800' },
  gpus: { type: 'number', help: 'GPUs in the cluster (for wall-clock days)', default: 2048 },
  price: { type: 'number', help: '$ per GPU-hour', default: 2 },
  mfu: { type: 'number', help: 'model FLOPs utilisation vs the dense BF16 peak', default: 0.39 },
  recipe: { type: 'string', help: 'memory recipe: fp32, bf16 or fp8', default: 'fp8' },
  mtp: { type: 'boolean', help: 'charge the MTP module FLOPs in GPU-hours (off: published-MFU convention)' },
  json: { type: 'boolean', help: 'print one JSON object instead of the table' },
};

/** Preset name or config path → architecture. */
export function loadArch(ref: string): ArchConfig {
  const p = presets[ref];
  if (p) return structuredClone(p);
  const d = densePresets[ref];
  if (d) return { ...d };
  let file = ref;
  try {
    if (statSync(ref).isDirectory()) file = join(ref, 'config.json');
  } catch {
    throw new UsageError(`--config: "${ref}" is neither a preset (${[...Object.keys(presets), ...Object.keys(densePresets)].join(', ')}) nor an existing file`);
  }
  let json: unknown;
  try { json = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new UsageError(`--config: cannot read ${file} as JSON (${(e as Error).message})`); }
  const o = json as Record<string, unknown>;
  if (o && typeof o === 'object' && o.model_type === 'llama') return parseDenseConfig(o);
  return parseHFConfig(json);
}

const B = (n: number): string => `${(n / 1e9).toFixed(2)}B`;
const G = (n: number): string => `${(n / 1e9).toFixed(1)} GFLOP`;
const GiB = (n: number): string => `${(n / 2 ** 30).toFixed(1)} GiB`;
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** The human-readable report. */
export function formatTable(name: string, e: CostEstimate): string {
  const o = e.options;
  const f = e.flops;
  const pct = (x: number): string => `${((100 * x) / f.forward).toFixed(1)}%`;
  const rows: [string, string][] = [
    ['model', name],
    ['parameters (main model)', `${B(e.params.total)} total, ${B(e.params.active)} activated per token`],
    ['  embedding / head', `${B(e.params.embedding)} / ${B(e.params.head)}`],
    ['  MTP module', `${B(e.params.mtp.unique)} unique, ${B(e.params.mtp.stored)} as stored (with embed/head copies), ${B(e.params.mtp.active)} activated`],
    ['  checkpoint total', B(e.params.totalWithMtp)],
    [`FLOPs per token, forward (seq ${o.seq})`, G(f.forward)],
    ['  attention projections', `${G(f.attnProj)} (${pct(f.attnProj)})`],
    ['  attention core (causal)', `${G(f.attnCore)} (${pct(f.attnCore)})`],
    ['  dense FFN', `${G(f.denseFfn)} (${pct(f.denseFfn)})`],
    ['  shared experts', `${G(f.sharedExperts)} (${pct(f.sharedExperts)})`],
    ['  routed experts (k active)', `${G(f.routedExperts)} (${pct(f.routedExperts)})`],
    ['  router', `${G(f.gate)} (${pct(f.gate)})`],
    ['  output head', `${G(f.head)} (${pct(f.head)})`],
    ['  MTP module', `${G(f.mtp)} (${pct(f.mtp)})`],
    ['training FLOPs per token (3 × fwd)', `${G(f.trainingMain)} main model, ${G(f.training)} with MTP; ${o.countMtp ? 'with MTP' : 'main model'} charged`],
    ['6·N·D rule of thumb', `${G(e.sixN.flopsPerToken)} (${(100 * e.sixN.lowBy).toFixed(1)}% low: no attention core)`],
    ['hardware', `${e.gpu.name}: ${e.gpu.bf16Tflops} TFLOP/s BF16, ${e.gpu.fp8Tflops ?? '—'} FP8 (dense)`],
    ['achieved per GPU', `${(e.flopsPerSecondPerGpu / 1e12).toFixed(1)} TFLOP/s (MFU ${o.mfu} of BF16 peak)`],
    [`compute for ${o.tokens.toExponential(3)} tokens`, `${e.totalFlops.toExponential(3)} FLOP`],
    ['GPU-hours', int(e.gpuHours)],
    [`cost at $${o.price}/GPU-hour`, `$${int(e.usd)}`],
    [`wall clock on ${o.gpus} GPUs`, `${e.days.toFixed(1)} days`],
    [`training state (${o.recipe})`, `${GiB(e.memory.state.total)} = weights ${GiB(e.memory.state.weights)} + master ${GiB(e.memory.state.master)} + grads ${GiB(e.memory.state.grads)} + AdamW ${GiB(e.memory.state.optimizer)} (${e.memory.state.bytesPerParam.toFixed(2)} B/param)`],
    ['cached activations per token', `${int(e.memory.activationsPerToken.noRecompute)} B, ${int(e.memory.activationsPerToken.recompute)} B with recompute (estimate)`],
    ['KV cache per token (BF16)', `${int(e.kvCache.actual)} B (${e.kvCache.valuesPerLayer} values/layer); full MHA ${int(e.kvCache.mha)} B, GQA-8 ${int(e.kvCache.gqa8)} B`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

/** JSON shape printed by `--json`. */
export function toJson(name: string, e: CostEstimate): Record<string, unknown> {
  return {
    config: name, options: e.options, gpu: e.gpu,
    params: { total: e.params.total, active: e.params.active, embedding: e.params.embedding, head: e.params.head, mtp: e.params.mtp.unique, mtpDetail: e.params.mtp, totalWithMtp: e.params.totalWithMtp },
    flopsPerToken: e.flopsPerToken, flopsPerTokenMain: e.flops.trainingMain, flopsPerTokenWithMtp: e.flops.training, flops: e.flops,
    sixN: e.sixN, totalFlops: e.totalFlops, flopsPerSecondPerGpu: e.flopsPerSecondPerGpu,
    gpuHours: e.gpuHours, usd: e.usd, days: e.days,
    memory: e.memory, kvCacheBytesPerToken: e.kvCache.actual, kvCache: e.kvCache,
  };
}

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('cost', '[--config NAME|PATH] [options]', spec)); return 0; }
  if (a._.length) throw new UsageError(`unexpected argument '${a._[0]}' (use --config NAME|PATH)`);
  const recipe = String(a.recipe);
  if (!(recipes as readonly string[]).includes(recipe)) throw new UsageError(`--recipe must be one of ${recipes.join(', ')}, got '${recipe}'`);
  if (!Object.hasOwn(gpus, String(a.gpu).toLowerCase())) throw new UsageError(`--gpu must be one of ${Object.keys(gpus).join(', ')}, got '${String(a.gpu)}'`);
  const name = String(a.config);
  const arch = loadArch(name);
  let e: CostEstimate;
  try {
    e = estimateCost(arch, {
      tokens: Number(a.tokens), seq: Number(a.seq), gpu: String(a.gpu), gpus: Number(a.gpus), price: Number(a.price),
      mfu: Number(a.mfu), recipe: recipe as Recipe, countMtp: a.mtp === true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  console.log(a.json ? JSON.stringify(toJson(name, e)) : formatTable(name, e));
  return 0;
}
