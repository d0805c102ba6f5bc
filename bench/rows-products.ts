/**
 * What a batched decode pass costs per row in the products: `npx tsx bench/rows-products.ts
 * [--model DIR] [--threads 1] [--backend native]`. Times x·Wᵀ for x of m = 1, 2, 4, 8, 16 rows
 * at the decode shapes of the model (default: the `demo` config `npx frugal train` trains), and a
 * whole RowDecoder pass of R rows from R sequences. Continuous batching gains only what these
 * products share between rows: with a perfect few-row kernel an m-row product costs about one
 * row's weight read. Prints the minimum over repetitions (the machine is shared; minima are the
 * least disturbed).
 */
import '../src/backend/index.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../src/backend/setup-node.js';
import { kernel } from '../src/backend/registry.js';
import { noGrad } from '../src/autograd/tape.js';
import { Tensor } from '../src/autograd/tensor.js';
import { presets, type DeepSeekConfig } from '../src/model/config.js';
import { forward, initParams, KVCache, type ModelParams } from '../src/model/deepseek.js';
import { RowDecoder } from '../src/model/decode.js';
import { loadModel } from '../src/model/load-node.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model folder (default: the demo config, random weights)' },
  threads: { type: 'number', help: 'backend threads', default: 1 },
  backend: { type: 'string', help: 'backend', default: 'native' },
  context: { type: 'number', help: 'cached positions of each sequence in the RowDecoder passes', default: 32 },
};

/** Least time (µs) of fn over reps rounds of n calls. */
function minTime(fn: () => void, n = 100, reps = 15): number {
  for (let i = 0; i < n; i++) fn();
  let best = Infinity;
  for (let r = 0; r < reps; r++) { const t0 = performance.now(); for (let i = 0; i < n; i++) fn(); best = Math.min(best, ((performance.now() - t0) / n) * 1000); }
  return best;
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('rows-products (npx tsx bench/rows-products.ts)', '[--model DIR] [--threads 1] [--context 32]', spec)); return 0; }
  await useBackend(a.backend as BackendChoice, { threads: a.threads as number });
  let cfg: DeepSeekConfig, params: ModelParams;
  if (a.model) ({ cfg, params } = await loadModel(a.model as string));
  else { cfg = presets.demo!; params = initParams(cfg, { seed: 1 }); }
  console.log(`backend: ${describeBackend()}\nmodel: ${a.model ?? 'demo config (random weights)'}; hidden ${cfg.hiddenSize}, vocab ${cfg.vocabSize}\n`);
  const H = cfg.hiddenSize, ms = [1, 2, 4, 8, 16];
  const shapes: Array<[string, number, number]> = [
    ['output head', cfg.vocabSize, H], ['dense MLP up', cfg.intermediateSize, H], ['expert up', cfg.moeIntermediateSize, H],
    ['expert down', H, cfg.moeIntermediateSize], ['kv_a_proj', cfg.kvLoraRank + cfg.qkRopeHeadDim, H],
  ];
  console.log(`| product (n × k) | ${ms.map((m) => `m=${m} µs`).join(' | ')} | m=8 / m=1 |`);
  console.log(`|---|${ms.map(() => '---|').join('')}---|`);
  const mm = kernel('MatMul');
  for (const [name, n, k] of shapes) {
    const t = ms.map((m) => {
      const args = { a: new Float32Array(m * k).fill(0.01), b: new Float32Array(n * k).fill(0.02), c: new Float32Array(m * n), batch: 1, m, n, k, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false };
      return minTime(() => mm(args));
    });
    console.log(`| ${name} (${n} × ${k}) | ${t.map((x) => x.toFixed(1)).join(' | ')} | ${(t[3]! / t[0]!).toFixed(1)}x |`);
  }
  // A whole decode pass of R rows, one per sequence (each with a --context-token cache).
  const ctx = Math.max(1, Math.min(cfg.maxPositionEmbeddings - 1, Math.floor(a.context as number)));
  noGrad(() => {
    const dec = new RowDecoder(params, cfg);
    const caches = Array.from({ length: 16 }, (_, i) => {
      const c = new KVCache(cfg, 1, ctx + 1, 'absorb');
      forward(params, cfg, Tensor.ints(Array.from({ length: ctx }, (_, j) => (j * 31 + i * 7) % cfg.vocabSize), [1, ctx]), { cache: c, startPos: 0 });
      return c;
    });
    const row = ms.map((R) => minTime(() => dec.main(Array.from({ length: R }, (_, i) => i + 1), caches.slice(0, R).map((c) => ({ cache: c, start: ctx, rows: 1 }))), 20));
    console.log(`\n| RowDecoder pass, context ${ctx} | ${ms.map((m) => `R=${m}`).join(' | ')} |\n|---|${ms.map(() => '---|').join('')}`);
    console.log(`| µs per pass | ${row.map((x) => x.toFixed(0)).join(' | ')} |`);
    console.log(`| rows/s | ${row.map((x, i) => Math.round((ms[i]! * 1e6) / x).toLocaleString('en-US')).join(' | ')} |`);
  });
  await disposeBackends();
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('rows-products.ts')) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => { console.error(`rows-products: ${(e as Error)?.message ?? String(e)}`); process.exit(1); });
}
