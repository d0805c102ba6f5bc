/**
 * `frugal bench gemm`: GEMM throughput per backend and thread count, and the fixed cost of a tiny
 * MatMul, side by side in one run. Rows (`backend`):
 * - `ts` (reference, only up to 512^3 work), `wasm` (operands resident in the wasm memory, as the
 *   engine allocates them), `wasm-copy` (plain Float32Arrays copied in and out on every call):
 *   checked against `ts` (maxAbsErr), median of 5 reps after warm-up.
 * - `native` (f32 MatMul), `native-bf16`, `native-fp8` (C = A·Bᵀ, 1x128 / 128x128 scales) and
 *   `openblas` (numpy's sgemm in a python3 subprocess): from bench/gemm-native.ts, best of
 *   alternating rounds; native maxAbsErr is against float64 dot products of the operands each
 *   kernel actually multiplies (f32, or the decoded BF16/FP8 values), on 256 sampled entries.
 *   Skipped with a note (stderr) when the addon is not built or python3 + numpy are missing.
 *   OpenBLAS results are not checked (its rows carry maxAbsErr 0; the table says "not checked").
 *   `--quick` measures native f32 only, without the peer.
 * Exit code 1 when a row exceeds its tolerance: f32 rows `1e-5·max(16,K)`, BF16/FP8 rows
 * `2e-5·max(16,K)` (same FP32 accumulation, other summation order inside the BF16 dot products).
 */
import type { Backend, MatMulArgs } from '../src/backend/registry.js';
import { tsBackend, tsMatMul } from '../src/backend/ts.js';
import '../src/backend/platform-node.js';
import { createWasmBackend, type WasmBackend } from '../src/backend/wasm/index.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { UsageError } from '../src/errors.js';
import { nativeGemmRows, type GemmResult } from './gemm-native.js';

/** One measured row (`--json` prints an array of these). */
export type { GemmResult } from './gemm-native.js';

/** The options `frugal bench gemm` accepts (`bench all` passes each suite only its own). */
export const OPTIONS: OptionSpec = {
  threads: { type: 'number', help: 'thread count to measure (default: 1 and 2)' },
  json: { type: 'boolean', help: 'print one JSON array of results and nothing else' },
  quick: { type: 'boolean', help: 'small shapes only, fewer reps, native f32 only, no OpenBLAS (smoke tests)' },
  'no-peer': { type: 'boolean', help: 'skip the OpenBLAS (numpy) rows' },
};
const SPEC = OPTIONS;
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

/** Options of runGemm. */
export interface GemmOptions {
  threads: number[];
  quick: boolean;
  /** OpenBLAS rows (default: !quick). */
  peer?: boolean;
}

const TINY: Array<[number, number, number]> = [[8, 8, 8], [64, 64, 64]];
const ORDER = ['ts', 'wasm', 'wasm-copy', 'native', 'native-bf16', 'native-fp8', 'openblas'];

/** Runs the suite; returns the rows (shape by shape, then threads, then backend), plus why any
 *  native/OpenBLAS rows are missing in `skipped`. `log` receives progress lines (not used with --json). */
export async function runGemm(opts: GemmOptions, log: (s: string) => void): Promise<GemmResult[] & { skipped?: string[] }> {
  const shapes = opts.quick ? QUICK : FULL;
  const reps = 5, minRepS = opts.quick ? 0.005 : 0.05;
  const out: GemmResult[] & { skipped?: string[] } = [];
  const wasms = new Map<number, WasmBackend>();
  try {
    for (const t of opts.threads) wasms.set(t, await createWasmBackend({ threads: t }));
    for (const [m, n, k] of [...shapes, ...TINY]) {
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
  const peer = opts.peer ?? !opts.quick;
  const native = nativeGemmRows({ shapes: [...shapes, ...TINY], threads: opts.threads, peer, lowp: !opts.quick,
    ...(opts.quick ? { rounds: 1, minRepS } : {}) }, log);
  out.push(...native);
  if (native.skipped?.length) out.skipped = native.skipped;
  const shapeIdx = (r: GemmResult): number => [...shapes, ...TINY].findIndex(([m, n, k]) => r.m === m && r.n === n && r.k === k);
  out.sort((x, y) => shapeIdx(x) - shapeIdx(y) || x.threads - y.threads || ORDER.indexOf(x.backend) - ORDER.indexOf(y.backend));
  return out;
}

/** Side-by-side table: one line per shape and thread count, GFLOP/s per backend (µs/call for the tiny shapes). */
export function formatSideBySide(rows: GemmResult[]): string {
  const backends = ORDER.filter((b) => rows.some((r) => r.backend === b));
  const lines = [`| M×N×K | threads | ${backends.join(' | ')} |`, `|---|---|${backends.map(() => '---|').join('')}`];
  const keys = [...new Set(rows.map((r) => `${r.m}x${r.n}x${r.k}|${r.threads}`))];
  for (const key of keys) {
    const [shape, t] = key.split('|') as [string, string];
    const tiny = TINY.some(([m, n, k]) => `${m}x${n}x${k}` === shape);
    const cells = backends.map((b) => {
      const r = rows.find((x) => x.backend === b && `${x.m}x${x.n}x${x.k}|${x.threads}` === key);
      if (!r) return '—';
      return tiny ? `${r.usPerCall.toFixed(2)} µs` : r.gflops.toFixed(r.gflops < 10 ? 2 : 1);
    });
    lines.push(`| ${shape} | ${t} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Text tables: GFLOP/s side by side (µs/call for the tiny shapes), then every row with its maxAbsErr. */
export function formatGemm(rows: GemmResult[]): string {
  const lines = ['GFLOP/s (tiny shapes: µs/call):', '', formatSideBySide(rows), '', 'All rows:', '',
    '| backend | threads | M | N | K | GFLOP/s | µs/call | maxAbsErr |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.backend} | ${r.threads} | ${r.m} | ${r.n} | ${r.k} | ${r.gflops.toFixed(r.gflops < 10 ? 2 : 1)} | ` +
      `${r.usPerCall < 100 ? r.usPerCall.toFixed(2) : r.usPerCall.toFixed(0)} | ${r.backend === 'openblas' ? 'not checked' : r.maxAbsErr.toExponential(1)} |`);
  }
  return lines.join('\n');
}

/** Tolerance of a row: fp32 sums of k products of values in [-0.5, 0.5); BF16/FP8 rows are checked
 *  against their own decoded operands (FP32 accumulation in another order), so twice that. */
export function tolerance(r: Pick<GemmResult, 'backend' | 'k'>): number {
  return (r.backend === 'native-bf16' || r.backend === 'native-fp8' ? 2e-5 : 1e-5) * Math.max(16, r.k);
}

/** CLI entry of the suite: `frugal bench gemm [--threads N] [--json] [--quick] [--no-peer]`. */
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
  const quick = o.quick === true;
  const rows = await runGemm({ threads, quick, peer: !quick && o['no-peer'] !== true }, json ? () => {} : (s) => console.error(s));
  const bad = rows.filter((r) => !(r.maxAbsErr <= tolerance(r)));
  if (json) console.log(JSON.stringify([...rows]));
  else console.log(formatGemm(rows));
  for (const s of rows.skipped ?? []) console.error(`bench gemm: skipped ${s}`);
  for (const r of bad) {
    const vs = r.backend.startsWith('native') ? 'its float64 reference' : 'ts';
    console.error(`bench gemm: ${r.backend} ${r.m}x${r.n}x${r.k} threads=${r.threads} differs from ${vs} by ${r.maxAbsErr} (> ${tolerance(r)})`);
  }
  return bad.length ? 1 : 0;
}
