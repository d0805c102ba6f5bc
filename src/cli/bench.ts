/**
 * `frugal bench <suite> [options]`: benchmark suites, each in bench/<suite>.ts exporting
 * `run(argv): Promise<number>` (its own options, `--json`, `--help`). Suites load lazily;
 * `all` runs every suite in table order. Add a suite by adding a row to SUITES.
 */
import { UsageError } from './main.js';

interface Suite { summary: string; load: () => Promise<{ run: (argv: string[]) => Promise<number> }> }

/** Suite name -> module. */
export const SUITES: Record<string, Suite> = {
  gemm: { summary: 'fp32 GEMM GFLOP/s per backend and thread count, and per-call overhead', load: () => import('../../bench/gemm.js') },
  train: { summary: 'training tokens/s (fwd+bwd+AdamW, with/without MTP) vs PyTorch', load: () => import('../../bench/train.js') },
  prefill: { summary: 'prefill tokens/s (8x256 forward) vs PyTorch', load: () => import('../../bench/prefill.js') },
  decode: { summary: 'batch-1 decode tokens/s with the KV cache (16->256, ~1K context) vs PyTorch', load: () => import('../../bench/decode.js') },
  memory: { summary: 'peak RSS of training and decode (child processes) vs PyTorch', load: () => import('../../bench/memory.js') },
};

function help(): string {
  const lines = ['usage: frugal bench <suite> [options]   (frugal bench <suite> --help for its options)', '', 'suites:'];
  for (const [name, s] of Object.entries(SUITES)) lines.push(`  ${name.padEnd(10)} ${s.summary}`);
  lines.push(`  ${'all'.padEnd(10)} every suite above, in order`);
  return lines.join('\n');
}

/** Runs one suite (or all) with the remaining arguments. */
export async function run(argv: string[]): Promise<number> {
  const [suite, ...rest] = argv;
  if (!suite || suite === '--help' || suite === '-h') { console.log(help()); return 0; }
  if (suite === 'all') {
    let rc = 0;
    for (const s of Object.values(SUITES)) rc = Math.max(rc, await (await s.load()).run(rest));
    return rc;
  }
  const s = SUITES[suite];
  if (!s) throw new UsageError(`unknown suite '${suite}' (known: ${Object.keys(SUITES).join(', ')}, all)`);
  return (await s.load()).run(rest);
}
