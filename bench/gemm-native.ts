/**
 * Rows of `frugal bench gemm` for the native backend: f32 MatMul (`native`), BF16 GEMM
 * (`native-bf16`, C = A·Bᵀ) and FP8 GEMM (`native-fp8`, 1x128 / 128x128 scales), plus the OpenBLAS
 * peer (`openblas`, numpy's sgemm in a python3 subprocess with OPENBLAS_CORETYPE and
 * OPENBLAS_L2_SIZE unset and OPENBLAS_NUM_THREADS = threads) when python3 + numpy exist.
 * Native and peer are measured in alternating rounds; each row keeps its best round. Every native
 * row is checked first: maxAbsErr is against float64 dot products of 256 sampled entries.
 * Node only. `nativeGemmRows` returns [] (with `skipped` set) when the addon is not built.
 */
import { spawnSync } from 'node:child_process';
import { loadNativeBackend, nativeUnavailableReason, type NativeBackend } from '../src/backend/native-node.js';
import { quantizeTiles, quantizeBlocks } from '../src/fp8/quant.js';
import { encodeBf16, decodeBf16, fp8Table } from '../src/fp8/codec.js';

/** Options of nativeGemmRows. */
export interface NativeGemmOptions {
  shapes: Array<[number, number, number]>;
  threads: number[];
  /** Also measure BF16/FP8 GEMM (default true). */
  lowp?: boolean;
  /** Also measure OpenBLAS through numpy (default true; skipped when python3/numpy are missing). */
  peer?: boolean;
  /** Alternating rounds (native, peer) per shape (default 3). */
  rounds?: number;
  /** Seconds per timed sample (default 0.05). */
  minRepS?: number;
}

const PEER = `
import json, sys, time
import numpy as np
shapes, min_s, rounds = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = []
for m, n, k in shapes:
    a = np.random.rand(m, k).astype(np.float32) - 0.5; b = np.random.rand(k, n).astype(np.float32) - 0.5
    a @ b; a @ b
    t = time.perf_counter(); a @ b; once = max(1e-6, time.perf_counter() - t)
    inner = max(1, int(min_s / once)); best = 1e9
    for _ in range(5 * rounds):
        t = time.perf_counter()
        for _ in range(inner): a @ b
        best = min(best, (time.perf_counter() - t) / inner)
    out.append([m, n, k, best])
print(json.dumps(out))
`;

/** OpenBLAS sgemm seconds per call for each shape, or null (with the reason) when unavailable. */
export function openblasSeconds(shapes: Array<[number, number, number]>, threads: number, minRepS = 0.05, rounds = 1):
  { secs: number[] } | { error: string } {
  const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE' };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', ['-c', PEER, JSON.stringify(shapes), String(minRepS), String(rounds)], { env, encoding: 'utf8' });
  if (r.error || r.status !== 0) return { error: `python3 + numpy (OpenBLAS) unavailable: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}` };
  return { secs: (JSON.parse(r.stdout) as Array<[number, number, number, number]>).map((x) => x[3]) };
}

let seed = 1;
function rand(n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = (seed / 2 ** 32 - 0.5) * scale; }
  return x;
}

/** Best seconds per call over `samples` samples of >= minRepS each. */
function best(fn: () => void, samples: number, minRepS: number): number {
  fn(); fn();
  let t0 = performance.now(); fn();
  const inner = Math.max(1, Math.ceil(minRepS / Math.max(1e-6, (performance.now() - t0) / 1000)));
  let b = Infinity;
  for (let r = 0; r < samples; r++) {
    t0 = performance.now();
    for (let i = 0; i < inner; i++) fn();
    b = Math.min(b, (performance.now() - t0) / 1000 / inner);
  }
  return b;
}

/** Max |C - ref| over 256 sampled entries, ref(i, j) computed in float64 by `dot`. */
function sampledErr(c: Float32Array, m: number, n: number, dot: (i: number, j: number) => number): number {
  let e = 0;
  for (let s = 0; s < 256; s++) {
    const i = (s * 7919) % m, j = (s * 104729 + s) % n;
    e = Math.max(e, Math.abs(c[i * n + j]! - dot(i, j)));
  }
  return e;
}

interface Case { label: string; call: () => void; c: Float32Array; dot: (i: number, j: number) => number }

function cases(m: number, n: number, k: number, lowp: boolean, be: NativeBackend): Case[] {
  const a = rand(m * k), b = rand(k * n);
  const c = new Float32Array(m * n);
  const out: Case[] = [{
    label: 'native', c,
    call: () => be.kernels.MatMul!({ a, b, c, batch: 1, m, n, k, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false }),
    dot: (i, j) => { let s = 0; for (let p = 0; p < k; p++) s += a[i * k + p]! * b[p * n + j]!; return s; },
  }];
  if (!lowp) return out;
  const ah = encodeBf16(a), bt = new Float32Array(n * k);
  for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) bt[j * k + p] = b[p * n + j]!;
  const bh = encodeBf16(bt), af = decodeBf16(ah), bf = decodeBf16(bh);
  const c2 = new Float32Array(m * n), c3 = new Float32Array(m * n);
  out.push({ label: 'native-bf16', c: c2, call: () => be.bf16Gemm(ah, bh, m, n, k, c2),
    dot: (i, j) => { let s = 0; for (let p = 0; p < k; p++) s += af[i * k + p]! * bf[j * k + p]!; return s; } });
  const qa = quantizeTiles(a, m, k), qb = quantizeBlocks(bt, n, k);
  const t = fp8Table('e4m3'), KB = Math.ceil(k / 128);
  out.push({ label: 'native-fp8', c: c3, call: () => be.fp8Gemm(qa, qb, m, n, k, c3),
    dot: (i, j) => {
      let s = 0;
      for (let kb = 0; kb < KB; kb++) {
        let part = 0;
        for (let p = kb * 128; p < Math.min(k, kb * 128 + 128); p++) part += t[qa.codes[i * k + p]!]! * t[qb.codes[j * k + p]!]!;
        s += qa.scales[i * KB + kb]! * qb.scales[((j / 128) | 0) * KB + kb]! * part;
      }
      return s;
    } });
  return out;
}

/** Extra field: why native or peer rows are missing. */
/** One measured GEMM row (also the row type of bench/gemm.ts, which imports it from here). */
export interface GemmResult {
  backend: string; m: number; n: number; k: number; threads: number;
  gflops: number; maxAbsErr: number; usPerCall: number;
}

export type NativeGemmRows = GemmResult[] & { skipped?: string[] };

/** Measures the native backend (and the OpenBLAS peer) on each shape and thread count. */
export function nativeGemmRows(opts: NativeGemmOptions, log: (s: string) => void = () => {}): NativeGemmRows {
  const rows: NativeGemmRows = [];
  const be = loadNativeBackend();
  if (!be) { rows.skipped = [`native: ${nativeUnavailableReason()}`]; return rows; }
  const rounds = opts.rounds ?? 3, minRepS = opts.minRepS ?? 0.05;
  const before = be.threads;
  try {
    for (const threads of opts.threads) {
      be.setThreads(threads);
      const peerBest = opts.shapes.map(() => Infinity);
      for (const [si, [m, n, k]] of opts.shapes.entries()) {
        const cs = cases(m, n, k, opts.lowp ?? true, be);
        const bestS = cs.map(() => Infinity);
        for (let r = 0; r < rounds; r++) {
          cs.forEach((cse, ci) => { bestS[ci] = Math.min(bestS[ci]!, best(cse.call, 3, minRepS)); });
          if (opts.peer ?? true) {
            const p = openblasSeconds([[m, n, k]], threads, minRepS);
            if ('error' in p) { opts.peer = false; (rows.skipped ??= []).push(`openblas: ${p.error}`); }
            else peerBest[si] = Math.min(peerBest[si]!, p.secs[0]!);
          }
        }
        cs.forEach((cse, ci) => {
          cse.call();
          const s = bestS[ci]!;
          rows.push({ backend: cse.label, m, n, k, threads, gflops: (2 * m * n * k) / s / 1e9, maxAbsErr: sampledErr(cse.c, m, n, cse.dot), usPerCall: s * 1e6 });
        });
        if (Number.isFinite(peerBest[si]!)) {
          const s = peerBest[si]!;
          rows.push({ backend: 'openblas', m, n, k, threads, gflops: (2 * m * n * k) / s / 1e9, maxAbsErr: 0, usPerCall: s * 1e6 });
        }
        log(`  native ${m}x${n}x${k} threads=${threads} done`);
      }
    }
  } finally {
    be.setThreads(before);
  }
  return rows;
}

/** Stand-alone run: `npx tsx -e "import('./bench/gemm-native.ts').then(m => m.main())"`; prints a markdown table. */
export async function main(shapes: Array<[number, number, number]> = [[1024, 1024, 1024], [1, 4096, 1024], [2048, 1024, 256], [256, 256, 256]],
  threads = [1, 2]): Promise<void> {
  const rows = nativeGemmRows({ shapes, threads }, (s) => console.error(s));
  for (const s of rows.skipped ?? []) console.error(`skipped ${s}`);
  console.log(`native: ${loadNativeBackend()?.describe?.() ?? 'unavailable'}`);
  console.log('| backend | threads | M | N | K | GFLOP/s | µs/call | maxAbsErr (sampled) |\n|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.backend} | ${r.threads} | ${r.m} | ${r.n} | ${r.k} | ${r.gflops.toFixed(1)} | ${r.usPerCall.toFixed(0)} | ${r.maxAbsErr.toExponential(1)} |`);
}
