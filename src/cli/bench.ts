/**
 * `frugal bench <suite> [options]`: benchmark suites, each in bench/<suite>.ts exporting
 * `run(argv): Promise<number>` (its own options, `--json`, `--help`). Suites load lazily;
 * `all` runs every suite in table order and passes each only the options it accepts (its
 * `options()` spec): `npm run bench -- --quick --write` gives gemm `--quick` and the model suites
 * both; an option no suite accepts is a usage error. Add a suite by adding a row to SUITES.
 */
import type { OptionSpec } from './args.js';
import { UsageError } from './main.js';

interface Suite {
  summary: string;
  load: () => Promise<{ run: (argv: string[]) => Promise<number> }>;
  /** The options the suite accepts (without --help). */
  options: () => Promise<OptionSpec>;
  /** Left out of `all` (needs hardware most machines lack). */
  standalone?: boolean;
}

const gemmOptions = async (): Promise<OptionSpec> => (await import('../../bench/gemm.js')).OPTIONS;
const modelOptions = async (): Promise<OptionSpec> => (await import('../../bench/harness.js')).SUITE_SPEC;

/** Suite name -> module. */
export const SUITES: Record<string, Suite> = {
  gemm: { summary: 'GEMM GFLOP/s per backend (ts, wasm, native f32/bf16/fp8, OpenBLAS) and thread count, and per-call overhead', load: () => import('../../bench/gemm.js'), options: gemmOptions },
  train: { summary: 'training tokens/s (fwd+bwd+AdamW, with/without MTP) vs PyTorch', load: () => import('../../bench/train.js'), options: modelOptions },
  prefill: { summary: 'prefill tokens/s (8x256 forward) vs PyTorch', load: () => import('../../bench/prefill.js'), options: modelOptions },
  decode: { summary: 'batch-1 decode tokens/s with the KV cache (16->256, ~1K context) vs PyTorch; --speculative: plain vs MTP speculative', load: () => import('../../bench/decode.js'), options: async () => (await import('../../bench/decode.js')).OPTIONS },
  memory: { summary: 'peak RSS of training and decode (child processes) vs PyTorch', load: () => import('../../bench/memory.js'), options: modelOptions },
  gpu: { summary: 'webgpu backend on this machine\'s GPU (Dawn): GEMM GFLOP/s and % of peak, train and decode tokens/s (not in all)', load: () => import('../../bench/gpu.js'), options: async () => (await import('../../bench/gpu.js')).OPTIONS, standalone: true },
};
/** The suites `all` runs, in order. */
const ALL_SUITES = Object.fromEntries(Object.entries(SUITES).filter(([, s]) => !s.standalone));

function help(): string {
  const lines = ['usage: frugal bench <suite> [options]   (frugal bench <suite> --help for its options)', '', 'suites:'];
  for (const [name, s] of Object.entries(SUITES)) lines.push(`  ${name.padEnd(10)} ${s.summary}`);
  lines.push(`  ${'all'.padEnd(10)} every suite above but gpu, in order`);
  return lines.join('\n');
}

/**
 * The part of `argv` a suite with options `spec` accepts. `known` holds every suite's options (to
 * tell whether an option it drops takes a value); `dropped` receives what was left out.
 */
export function argsFor(argv: string[], spec: OptionSpec, known: OptionSpec, dropped: string[] = []): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new UsageError(`bench all: unexpected argument '${a}' (options only; run one suite for more)`);
    const eq = a.indexOf('=');
    const name = a.slice(2, eq >= 0 ? eq : undefined);
    const s = known[name];
    if (!s) throw new UsageError(`bench all: no suite accepts --${name} (known: ${Object.keys(known).map((k) => '--' + k).join(', ')})`);
    const takesValue = s.type !== 'boolean' && eq < 0;
    if (takesValue && argv[i + 1] === undefined) throw new UsageError(`--${name} needs a value`);
    const parts = takesValue ? [a, argv[++i]!] : [a];
    if (spec[name]) out.push(...parts);
    else dropped.push(parts.join(' '));
  }
  return out;
}

/** Runs one suite (or all) with the remaining arguments. */
export async function run(argv: string[]): Promise<number> {
  const [suite, ...rest] = argv;
  if (!suite || suite === '--help' || suite === '-h') { console.log(help()); return 0; }
  if (suite === 'all') {
    if (rest.includes('--help') || rest.includes('-h')) { console.log(help()); return 0; }
    const specs = await Promise.all(Object.values(ALL_SUITES).map((s) => s.options()));
    const known: OptionSpec = Object.assign({}, ...specs) as OptionSpec;
    const argvs = Object.entries(ALL_SUITES).map(([name], i) => {
      const dropped: string[] = [];
      const a = argsFor(rest, specs[i]!, known, dropped);
      if (dropped.length) console.error(`bench all: ${name} does not take ${dropped.join(', ')}; running it without`);
      return a;
    });
    let rc = 0;
    for (const [i, s] of Object.values(ALL_SUITES).entries()) rc = Math.max(rc, await (await s.load()).run(argvs[i]!));
    return rc;
  }
  const s = SUITES[suite];
  if (!s) throw new UsageError(`unknown suite '${suite}' (known: ${Object.keys(SUITES).join(', ')}, all)`);
  return (await s.load()).run(rest);
}
