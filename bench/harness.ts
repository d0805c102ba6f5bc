/**
 * The model benchmark harness behind `frugal bench train|prefill|decode`: for each thread count,
 * the same initial weights go to Frugal (in this process, best backend available) and to the
 * PyTorch peer (bench/peer/model.py, a child process with the same thread count); the peer first
 * proves it computes Frugal's logits (max abs diff printed; a mismatch aborts before any timing);
 * then each case runs one warm-up per side and `reps` timed repetitions, Frugal and the peer
 * interleaved rep by rep. Rows carry the median with min/max and ratio = Frugal/PyTorch speed.
 * Without torch the suites time Frugal alone and say how to install the peer. A config is a
 * DeepSeek-style or a dense Llama-style model, driven through common.ts's `BenchModel` adapter.
 */
import path from 'node:path';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../src/backend/setup-node.js';
import { kernelCounts, resetKernelCounts, type Backend } from '../src/backend/registry.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { UsageError } from '../src/errors.js';
import { forward, type ModelParams } from '../src/model/deepseek.js';
import type { DeepSeekConfig } from '../src/model/config.js';
import {
  MODEL_BENCH_CONFIGS, PEER_INSTALL, Peer, benchModel, describePeer, formatRows, lcgBatch, lcgTokens, makeAdamW, peerUnavailable, stats,
  tempModelDir, writeRaw, writeResults, type BenchModel, type BenchRow, type BenchShape,
} from './common.js';

export type ModelSuite = 'train' | 'prefill' | 'decode';

export const SUITE_SPEC: OptionSpec = {
  config: { type: 'string', help: `model config: ${Object.keys(MODEL_BENCH_CONFIGS).join(', ')} (default small)` },
  threads: { type: 'number', help: 'one thread count (default: 1 and 2; --quick: 2)' },
  reps: { type: 'number', help: 'timed repetitions per side, after one warm-up (default 5; --quick 3)' },
  backend: { type: 'string', help: 'Frugal backend: auto (native > wasm > ts), native, wasm, ts, webgpu (default auto)' },
  quick: { type: 'boolean', help: 'smoke run: 2 threads only, 3 reps' },
  json: { type: 'boolean', help: 'print one JSON array of rows {suite, config, threads, unit, frugal, pytorch, ratio, ...}' },
  'no-peer': { type: 'boolean', help: 'time Frugal only (skip PyTorch)' },
  weights: { type: 'string', help: 'decode only: Frugal decode-step weights f32 (default), bf16 or q8_0 (PyTorch stays f32: labelled; llama.cpp runs the same precision)' },
  peer: { type: 'string', help: 'decode/prefill: pytorch (default) or llama.cpp (same weights as GGUF, persistent threadpool; bench/llamacpp.ts)' },
  write: { type: 'boolean', help: 'also write the table into docs/results/bench.md' },
};

export interface SuiteOptions {
  config: string; threads: number[]; reps: number; backend: BackendChoice; json: boolean; peer: boolean; write: boolean; quick: boolean;
  weights?: 'f32' | 'bf16' | 'q8_0';
  /** Which peer: PyTorch (default) or llama.cpp. */
  peerName?: 'pytorch' | 'llama.cpp';
}

/** Parses a model suite's command line (shared by train/prefill/decode/memory). */
export function parseSuiteArgs(verb: string, argv: string[]): SuiteOptions | null {
  const o = parseArgs(argv, SUITE_SPEC);
  if (o.help) { console.log(usage(`bench ${verb}`, '[options]', SUITE_SPEC)); return null; }
  if (o._.length) throw new UsageError(`unexpected argument '${o._[0]}'`);
  const config = (o.config as string | undefined) ?? 'small';
  if (!MODEL_BENCH_CONFIGS[config]) throw new UsageError(`--config must be one of ${Object.keys(MODEL_BENCH_CONFIGS).join(', ')}, got '${config}'`);
  const quick = o.quick === true;
  let threads = quick ? [2] : [1, 2];
  if (o.threads !== undefined) {
    const t = o.threads as number;
    if (!(Number.isInteger(t) && t >= 1 && t <= 64)) throw new UsageError(`--threads must be an integer 1..64, got ${t}`);
    threads = [t];
  }
  const reps = (o.reps as number | undefined) ?? (quick ? 3 : 5);
  if (!(Number.isInteger(reps) && reps >= 1 && reps <= 100)) throw new UsageError(`--reps must be an integer 1..100, got ${reps}`);
  const backend = ((o.backend as string | undefined) ?? 'auto') as BackendChoice;
  if (!['auto', 'native', 'wasm', 'ts', 'webgpu'].includes(backend)) throw new UsageError(`--backend must be auto, native, wasm, ts or webgpu, got '${backend}'`);
  const weights = (o.weights as string | undefined) ?? 'f32';
  if (weights !== 'f32' && weights !== 'bf16' && weights !== 'q8_0') throw new UsageError(`--weights must be f32, bf16 or q8_0, got '${weights}'`);
  if (weights !== 'f32' && verb !== 'decode') throw new UsageError(`--weights ${weights} applies to the decode suite only`);
  const peerName = (o.peer as string | undefined) ?? 'pytorch';
  if (peerName !== 'pytorch' && peerName !== 'llama.cpp') throw new UsageError(`--peer must be pytorch or llama.cpp, got '${peerName}'`);
  if (peerName === 'llama.cpp' && verb !== 'decode' && verb !== 'prefill') throw new UsageError('--peer llama.cpp applies to the decode and prefill suites (llama.cpp does not train)');
  return { config, threads, reps, backend, json: o.json === true, peer: o['no-peer'] !== true, write: o.write === true, quick, weights, peerName };
}

/** One benchmark case: a Frugal repetition and the matching peer request, both timed in seconds. */
interface Case { name: string; unit: string; work: number; frugal: () => number; peer: Record<string, unknown> }

function cases(suite: ModelSuite, shape: BenchShape, model: BenchModel, opt: { step(lr: number): void }): Case[] {
  const { batch: B, seq: T } = shape;
  const V = model.vocabSize;
  if (suite === 'train') {
    const { inputs, targets } = lcgBatch(1, B, T, V);
    const x = new Tensor(inputs, [B, T], 'i32'), y = new Tensor(targets, [B * T], 'i32');
    const tp = model.trainable();
    const step = (mtp: number) => (): number => {
      const t0 = performance.now();
      backward(model.loss(x, y, mtp));
      opt.step(1e-4);
      zeroGrad(tp);
      return (performance.now() - t0) / 1000;
    };
    const out: Case[] = [{ name: `fwd+bwd+AdamW ${B}×${T}`, unit: 'tokens/s', work: B * T, frugal: step(0), peer: { op: 'train', B, T, mtp: 0 } }];
    if (model.hasMtp) out.push({ name: `+ MTP loss (λ 0.3) ${B}×${T}`, unit: 'tokens/s', work: B * T, frugal: step(0.3), peer: { op: 'train', B, T, mtp: 0.3 } });
    return out;
  }
  if (suite === 'prefill') {
    const { inputs } = lcgBatch(2, B, T, V);
    const x = new Tensor(inputs, [B, T], 'i32');
    return [{
      name: `forward ${B}×${T}`, unit: 'tokens/s', work: B * T, peer: { op: 'prefill', B, T },
      frugal: () => noGrad(() => { const t0 = performance.now(); model.forward(x); return (performance.now() - t0) / 1000; }),
    }];
  }
  const dec = (d: { prompt: number; steps: number }, label: string): Case => ({
    name: label, unit: 'tokens/s', work: d.steps, peer: { op: 'decode', prompt: d.prompt, steps: d.steps },
    frugal: () => noGrad(() => {
      const toks = lcgTokens(3, d.prompt + d.steps, V);
      const cache = model.makeCache(d.prompt + d.steps);
      model.forward(new Tensor(toks.slice(0, d.prompt), [1, d.prompt], 'i32'), cache, 0);
      const t0 = performance.now();
      for (let i = d.prompt; i < d.prompt + d.steps; i++) model.forward(new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), cache, i);
      return (performance.now() - t0) / 1000;
    }),
  });
  return [
    dec(shape.decodeShort, `batch 1, ${shape.decodeShort.prompt}→${shape.decodeShort.prompt + shape.decodeShort.steps}`),
    dec(shape.decodeLong, `batch 1, at ${shape.decodeLong.prompt}→${shape.decodeLong.prompt + shape.decodeLong.steps} context`),
  ];
}

type PeerCheck = { maxAbsDiff: number; maxAbsDiffDecode?: number; maxAbsLogit: number };

/** Frugal's logits on a fixed batch, handed to the peer; returns its max abs diff (and the decode path's). */
export async function checkPeerModel(peer: Peer, model: Pick<BenchModel, 'vocabSize' | 'forward'>, dir: string, B = 2, T = 16, decode = true): Promise<PeerCheck> {
  const toks = lcgTokens(7, B * T, model.vocabSize);
  const logits = noGrad(() => model.forward(new Tensor(toks, [B, T], 'i32')).f32);
  const tf = path.join(dir, 'check-tokens.i32'), lf = path.join(dir, 'check-logits.f32');
  writeRaw(tf, toks);
  writeRaw(lf, logits);
  return peer.request({ op: 'check', tokens: tf, logits: lf, B, T, decode });
}

/** `checkPeerModel` for loaded DeepSeek parameters (e.g. reference/tiny-dsv3). */
export async function checkPeer(peer: Peer, params: ModelParams, cfg: DeepSeekConfig, dir: string, B = 2, T = 16, decode = true): Promise<PeerCheck> {
  return checkPeerModel(peer, { vocabSize: cfg.vocabSize, forward: (t) => forward(params, cfg, t).logits }, dir, B, T, decode);
}

/** Max |Δlogit| accepted before timing (fp32 sums in different orders). */
export const CHECK_TOLERANCE = 1e-4;

/** Runs a suite; returns rows (and logs progress/context with `log`). */
export async function runModelSuite(suite: ModelSuite, o: SuiteOptions, log: (s: string) => void): Promise<BenchRow[]> {
  const shape = MODEL_BENCH_CONFIGS[o.config]!;
  const why = o.peer ? peerUnavailable() : 'disabled by --no-peer';
  if (why) log(`PyTorch peer skipped: ${why}.${o.peer ? ` Install it with: ${PEER_INSTALL}` : ''}`);
  const rows: BenchRow[] = [];
  const tmp = tempModelDir();
  try {
    for (const threads of o.threads) {
      const be = (await useBackend(o.backend, { threads })) as Backend & { setThreads?: (n: number) => number };
      // setup.ts reuses an already-loaded native backend as is: set its thread count for this round.
      if (be.threads !== threads && be.setThreads) be.setThreads(threads);
      const backend = describeBackend();
      log(`[${suite} ${o.config} threads=${threads}] Frugal: ${backend}`);
      const model = benchModel(shape, 1);
      let peer: Peer | null = null;
      if (!why) {
        await model.save(tmp.dir);
        peer = new Peer(tmp.dir, threads);
      }
      try {
        if (peer) {
          log(`  peer: ${describePeer(await peer.request({ op: 'info' }))}`);
          const c = await checkPeerModel(peer, model, tmp.dir, 2, 16, suite === 'decode');
          log(`  logits check (2×16, same weights): max |Frugal − PyTorch| = ${c.maxAbsDiff.toExponential(2)}` +
            `${c.maxAbsDiffDecode !== undefined ? `, cached decode path ${c.maxAbsDiffDecode.toExponential(2)}` : ''} (max |logit| ${c.maxAbsLogit.toFixed(3)})`);
          const worst = Math.max(c.maxAbsDiff, c.maxAbsDiffDecode ?? 0);
          if (!(worst < CHECK_TOLERANCE)) throw new Error(`the peer's logits differ from Frugal's by ${worst} (> ${CHECK_TOLERANCE}); refusing to time different computations`);
        }
        if (o.weights === 'bf16') log(`  Frugal decode steps: ${model.useBf16Decode()} — PyTorch stays f32, so these rows compare different precisions`);
        if (o.weights === 'q8_0') log(`  Frugal decode steps: ${model.useQ8Decode()} — PyTorch stays f32, so these rows compare different precisions`);
        const { opt, source } = await makeAdamW(model.trainable());
        if (suite === 'train') log(`  optimizer: ${source} (peer: torch.optim.AdamW)`);
        resetKernelCounts();
        for (const c of cases(suite, shape, model, opt)) {
          c.frugal();
          if (peer) await peer.time(c.peer);
          const f: number[] = [], p: number[] = [];
          for (let r = 0; r < o.reps; r++) {
            f.push(c.work / c.frugal());
            if (peer) p.push(c.work / (await peer.time(c.peer)));
          }
          const fs = stats(f), ps = p.length ? stats(p) : null;
          rows.push({
            suite, config: o.config, case: o.weights !== 'f32' && o.weights ? `${c.name} (Frugal ${o.weights} weights)` : c.name, threads, unit: c.unit, frugal: fs.median, pytorch: ps ? ps.median : null,
            ratio: ps ? fs.median / ps.median : null, frugalRange: [fs.min, fs.max], pytorchRange: ps ? [ps.min, ps.max] : null, reps: o.reps, backend,
          });
          log(`  ${c.name}: Frugal ${fs.median.toFixed(1)} ${c.unit}${ps ? `, PyTorch ${ps.median.toFixed(1)} (×${(fs.median / ps.median).toFixed(2)})` : ''}`);
        }
        const kc = Object.entries(kernelCounts()).map(([k, n]) => `${k}×${n}`).join(' ');
        log(`  kernels that ran (calls): ${kc || 'none counted'}`);
      } finally {
        await peer?.close();
      }
    }
  } finally {
    tmp.remove();
    await disposeBackends();
  }
  return rows;
}

/** CLI entry shared by the train/prefill/decode suite modules. */
export async function runSuiteCli(suite: ModelSuite, argv: string[]): Promise<number> {
  const o = parseSuiteArgs(suite, argv);
  if (!o) return 0;
  if (o.peerName === 'llama.cpp' && (suite === 'decode' || suite === 'prefill')) {
    const l = await import('./llamacpp.js');
    const why = l.llamaCppUnavailable();
    if (why) throw new UsageError(`--peer llama.cpp: ${why}`);
    const rows = await l.runLlamaCppSuite(suite, o, (s) => console.error(s));
    if (o.json) console.log(JSON.stringify(rows.map((r) => ({ ...r, peer: 'llama.cpp' }))));
    else console.log(l.formatLlamaRows(rows));
    if (o.write) console.error(`wrote ${l.writeLlamaResults(suite, o.config, o.weights ?? 'f32', `npx frugal bench ${suite} ${argv.filter((a) => a !== '--write').join(' ')}`.trim(), rows)}`);
    return 0;
  }
  const rows = await runModelSuite(suite, o, (s) => console.error(s));
  if (o.json) console.log(JSON.stringify(rows));
  else console.log(formatRows(rows));
  if (o.write) {
    const cmd = `npx frugal bench ${suite} ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
    console.error(`wrote ${writeResults(suite, `### ${suite}\n\n\`${cmd}\` — ${new Date().toISOString().slice(0, 10)}, ${rows[0]?.backend ?? ''}\n\n${formatRows(rows)}`)}`);
  }
  return 0;
}
