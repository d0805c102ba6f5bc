/**
 * `frugal bench gemm`: fp32 GEMM throughput per backend and thread count, and the fixed cost of a
 * tiny MatMul. Every backend's result is checked against the `ts` reference (maxAbsErr) before it
 * is timed; a time is the median of >= 5 reps after warm-up. Backends: `ts` (reference, only up to
 * 512^3 work), `wasm` (operands resident in the wasm memory, as the engine allocates them) and
 * `wasm-copy` (plain Float32Arrays, copied in and out on every call).
 */
import type { Backend, MatMulArgs } from '../src/backend/registry.js';
import { tsBackend, tsMatMul } from '../src/backend/ts.js';
import { createWasmBackend, type WasmBackend } from '../src/backend/wasm/index.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { UsageError } from '../src/cli/main.js';

/** One measured row (`--json` prints an array of these). */
export interface GemmResult {
  backend: string; m: number; n: number; k: number; threads: number;
  gflops: number; maxAbsErr: number; usPerCall: number;
}

const SPEC: OptionSpec = {
  threads: { type: 'number', help: 'thread count to measure (default: 1 and 2)' },
  json: { type: 'boolean', help: 'print one JSON array of results and nothing else' },
  quick: { type: 'boolean', help: 'small shapes only, fewer reps (for smoke tests)' },
};
const FULL: Array<[number, number, number]> = [[256, 256, 256], [512, 512, 512], [1024, 1024, 1024], [1, 4096, 1024], [2048, 1024, 256]];
const QUICK: Array<[number, number, number]> = [[256, 256, 256], [1, 4096, 1024]];
const TS_MAX_WORK = 512 ** 3;

/** Deterministic operands in [-0.5, 0.5). */
function fill(arr: Float32Array, seed: number): Float32Array {
  let s = seed >>> 0;
  for (let i = 0; i < arr.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; arr[i] = s / 2 ** 32 - 0.5; }
  return arr;
}

/** Median seconds per call of `fn`, each rep lasting at least `minRepS`. */
function timeCalls(fn: () => void, reps: number, minRepS: number): number {
  fn(); fn();
  let t0 = performance.now(); fn();
  const once = Math.max(1e-6, (performance.now() - t0) / 1000);
  const inner = Math.max(1, Math.ceil(minRepS / once));
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    times.push((performance.now() - t0) / 1000 / inner);
  }
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)]!;
}

function maxAbsDiff(x: Float32Array, y: Float32Array): number {
  let e = 0;
  for (let i = 0; i < x.length; i++) { const d = Math.abs(x[i]! - y[i]!); if (!(d <= e)) e = d; }
  return e;
}

interface Operands { a: Float32Array; b: Float32Array; c: Float32Array }

/** Measures one backend on one shape: check against `ref`, then time. */
function measure(label: string, be: Backend, ops: Operands, m: number, n: number, k: number, ref: Float32Array,
  reps: number, minRepS: number): GemmResult {
  const args: MatMulArgs = { ...ops, batch: 1, m, n, k, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false };
  const mm = be.kernels.MatMul!;
  mm(args);
  const maxAbsErr = maxAbsDiff(args.c, ref);
  const s = timeCalls(() => mm(args), reps, minRepS);
  return { backend: label, m, n, k, threads: be.threads, gflops: (2 * m * n * k) / s / 1e9, maxAbsErr, usPerCall: s * 1e6 };
}

/** Runs the suite; returns the rows. `log` receives progress lines (not used with --json). */
export async function runGemm(opts: { threads: number[]; quick: boolean }, log: (s: string) => void): Promise<GemmResult[]> {
  const shapes = opts.quick ? QUICK : FULL;
  const reps = 5, minRepS = opts.quick ? 0.005 : 0.05;
  const out: GemmResult[] = [];
  const wasms = new Map<number, WasmBackend>();
  try {
    for (const t of opts.threads) wasms.set(t, await createWasmBackend({ threads: t }));
    for (const [m, n, k] of [...shapes, [8, 8, 8] as [number, number, number], [64, 64, 64] as [number, number, number]]) {
      const a = fill(new Float32Array(m * k), 1), b = fill(new Float32Array(k * n), 2);
      const ref = new Float32Array(m * n);
      tsMatMul({ a, b, c: ref, batch: 1, m, n, k, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      if (m * n * k <= TS_MAX_WORK) out.push(measure('ts', tsBackend, { a, b, c: new Float32Array(m * n) }, m, n, k, ref, reps, minRepS));
      for (const [t, be] of wasms) {
        const ra = be.allocF32(a.length), rb = be.allocF32(b.length), rc = be.allocF32(m * n);
        ra.set(a); rb.set(b);
        out.push(measure('wasm', be, { a: ra, b: rb, c: rc }, m, n, k, ref, reps, minRepS));
        out.push(measure('wasm-copy', be, { a, b, c: new Float32Array(m * n) }, m, n, k, ref, reps, minRepS));
        be.freeF32(ra); be.freeF32(rb); be.freeF32(rc);
        log(`  ${m}x${n}x${k} threads=${t} done`);
      }
    }
  } finally {
    for (const be of wasms.values()) be.dispose?.();
  }
  return out;
}

/** Text table: GFLOP/s rows, then the per-call cost of the tiny shapes. */
export function formatGemm(rows: GemmResult[]): string {
  const lines = ['| backend | threads | M | N | K | GFLOP/s | µs/call | maxAbsErr |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.backend} | ${r.threads} | ${r.m} | ${r.n} | ${r.k} | ${r.gflops.toFixed(r.gflops < 10 ? 2 : 1)} | ` +
      `${r.usPerCall < 100 ? r.usPerCall.toFixed(2) : r.usPerCall.toFixed(0)} | ${r.maxAbsErr.toExponential(1)} |`);
  }
  return lines.join('\n');
}

/** Tolerance for fp32 sums of k products of values in [-0.5, 0.5). */
function tolerance(k: number): number { return 1e-5 * Math.max(16, k); }

/** CLI entry of the suite: `frugal bench gemm [--threads N] [--json] [--quick]`. */
export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv, SPEC);
  if (o.help) { console.log(usage('bench gemm', '[options]', SPEC)); return 0; }
  if (o._.length) throw new UsageError(`unexpected argument '${o._[0]}'`);
  let threads = [1, 2];
  if (o.threads !== undefined) {
    const t = o.threads as number;
    if (!(Number.isInteger(t) && t >= 1 && t <= 64)) throw new UsageError(`--threads must be an integer 1..64, got ${t}`);
    threads = [t];
  }
  const json = o.json === true;
  const rows = await runGemm({ threads, quick: o.quick === true }, json ? () => {} : (s) => console.error(s));
  const bad = rows.filter((r) => !(r.maxAbsErr <= tolerance(r.k)));
  if (json) console.log(JSON.stringify(rows));
  else console.log(formatGemm(rows));
  for (const r of bad) console.error(`bench gemm: ${r.backend} ${r.m}x${r.n}x${r.k} threads=${r.threads} differs from ts by ${r.maxAbsErr} (> ${tolerance(r.k)})`);
  return bad.length ? 1 : 0;
}
