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
  MODEL_BENCH_CONFIGS, PEER_INSTALL, Peer, availablePeers, benchModel, describePeer, formatRows, lcgBatch, lcgTokens, makeAdamW, stats,
  tempModelDir, writeRaw, writeResults, type BenchModel, type BenchRow, type BenchShape, type PeerSpec, type Stats,
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
  'no-compile': { type: 'boolean', help: 'skip the torch.compile peer (its first steps compile for minutes)' },
  'no-legacy': { type: 'boolean', help: 'skip the PyTorch 1.13 column' },
  weights: { type: 'string', help: 'decode only: Frugal decode-step weights f32 (default), bf16 or q8_0 (PyTorch stays f32: labelled; llama.cpp runs the same precision)' },
  peer: { type: 'string', help: 'decode/prefill: pytorch (default) or llama.cpp (same weights as GGUF, persistent threadpool; bench/llamacpp.ts)' },
  write: { type: 'boolean', help: 'also write the table into docs/results/bench.md' },
};

export interface SuiteOptions {
  config: string; threads: number[]; reps: number; backend: BackendChoice; json: boolean; peer: boolean; write: boolean; quick: boolean;
  /** Run the torch.compile peer and the PyTorch 1.13 column (default true each). */
  compile?: boolean; legacy?: boolean;
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
  return { config, threads, reps, backend, json: o.json === true, peer: o['no-peer'] !== true, write: o.write === true, quick, weights, peerName,
    compile: o['no-compile'] !== true, legacy: o['no-legacy'] !== true };
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
      backward(model.loss(x, y, mtp), undefined, { freeActivations: true });
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
    const pre = (last: boolean): Case => ({
      name: last ? `prefill ${B}×${T} (last position's logits)` : `forward ${B}×${T} (all logits)`, unit: 'tokens/s', work: B * T, peer: { op: 'prefill', B, T, last },
      frugal: () => noGrad(() => { const t0 = performance.now(); model.forward(x, undefined, undefined, last); return (performance.now() - t0) / 1000; }),
    });
    return [pre(true), pre(false)];
  }
  const kv = (n: number): string => { const b = n * model.cacheBytesPerToken(); return b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MB` : `${(b / 1024).toFixed(0)} KB`; };
  const dec = (d: { prompt: number; steps: number }, label: string): Case => ({
    name: `${label} (KV cache ${kv(d.prompt + d.steps)})`, unit: 'tokens/s', work: d.steps, peer: { op: 'decode', prompt: d.prompt, steps: d.steps },
    frugal: () => noGrad(() => {
      const toks = lcgTokens(3, d.prompt + d.steps, V);
      const cache = model.makeCache(d.prompt + d.steps);
      // The prompt in chunks of 512, as the peer does (and as generate() prefills).
      for (let c0 = 0; c0 < d.prompt; c0 += 512) {
        const c1 = Math.min(d.prompt, c0 + 512);
        model.forward(new Tensor(toks.slice(c0, c1), [1, c1 - c0], 'i32'), cache, c0, true);
      }
      const t0 = performance.now();
      for (let i = d.prompt; i < d.prompt + d.steps; i++) model.forward(new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), cache, i);
      return (performance.now() - t0) / 1000;
    }),
  });
  const at = (d: { prompt: number; steps: number }): string => `batch 1, at ${d.prompt}→${d.prompt + d.steps} context`;
  return [
    dec(shape.decodeShort, `batch 1, ${shape.decodeShort.prompt}→${shape.decodeShort.prompt + shape.decodeShort.steps}`),
    dec(shape.decodeLong, at(shape.decodeLong)),
    ...(shape.decodeXL ? [dec(shape.decodeXL, at(shape.decodeXL))] : []),
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

/** A started peer with its description. */
interface LivePeer { spec: PeerSpec; peer: Peer; label: string }

const PEER_NAMES: Record<PeerSpec['id'], string> = { torch: 'eager', 'torch-blas1': 'eager, 1-thread BLAS', 'torch-compile': 'torch.compile', 'torch-legacy': '' };

/** Starts every peer for this thread count, proves each computes Frugal's logits, and drops a
 *  torch.compile peer that fails (the eager ones must pass). */
async function startPeers(specs: PeerSpec[], dir: string, threads: number, model: BenchModel, decode: boolean, log: (s: string) => void): Promise<LivePeer[]> {
  const live: LivePeer[] = [];
  for (const spec of specs) {
    const peer = new Peer(dir, threads, spec);
    try {
      const info = await peer.request({ op: 'info' });
      if (spec.blas1) info.openblas = `${String(info.openblas)} (OPENBLAS_NUM_THREADS=1)`;
      const label = `PyTorch ${String(info.torch).replace(/\+.*$/, '')}${PEER_NAMES[spec.id] ? ' ' + PEER_NAMES[spec.id] : ''}`;
      log(`  peer ${spec.id}: ${describePeer(info)}`);
      const c = await checkPeerModel(peer, model, dir, 2, 16, decode && !spec.compile);
      log(`  ${label} logits check (2×16, same weights): max |Frugal − PyTorch| = ${c.maxAbsDiff.toExponential(2)}` +
        `${c.maxAbsDiffDecode !== undefined ? `, cached decode path ${c.maxAbsDiffDecode.toExponential(2)}` : ''} (max |logit| ${c.maxAbsLogit.toFixed(3)})`);
      const worst = Math.max(c.maxAbsDiff, c.maxAbsDiffDecode ?? 0);
      if (!(worst < CHECK_TOLERANCE)) throw new Error(`the peer's logits differ from Frugal's by ${worst} (> ${CHECK_TOLERANCE}); refusing to time different computations`);
      live.push({ spec, peer, label });
    } catch (e) {
      await peer.close();
      if (spec.id === 'torch' || spec.id === 'torch-legacy') { for (const l of live) await l.peer.close(); throw e; }
      log(`  ${spec.id} peer dropped: ${(e as Error).message}`);
    }
  }
  return live;
}

/** Runs a suite; returns rows (and logs progress/context with `log`). */
export async function runModelSuite(suite: ModelSuite, o: SuiteOptions, log: (s: string) => void): Promise<BenchRow[]> {
  const shape = MODEL_BENCH_CONFIGS[o.config]!;
  const found = o.peer ? availablePeers() : { specs: [], notes: ['PyTorch peers skipped: disabled by --no-peer'] };
  const specs = found.specs.filter((s) => (s.id !== 'torch-compile' || o.compile !== false) && (s.id !== 'torch-legacy' || o.legacy !== false || !found.specs.some((x) => x.id === 'torch')));
  const forThreads = (t: number): PeerSpec[] => specs.filter((s) => !s.blas1 || t > 1);
  for (const n of found.notes) log(n);
  if (o.peer && !specs.length) log(`Install a peer with: ${PEER_INSTALL}`);
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
      if (specs.length) await model.save(tmp.dir);
      const peers = specs.length ? await startPeers(forThreads(threads), tmp.dir, threads, model, suite === 'decode', log) : [];
      try {
        if (o.weights === 'bf16') log(`  Frugal decode steps: ${model.useBf16Decode()} — PyTorch stays f32, so these rows compare different precisions`);
        if (o.weights === 'q8_0') log(`  Frugal decode steps: ${model.useQ8Decode()} — PyTorch stays f32, so these rows compare different precisions`);
        const { opt, source } = await makeAdamW(model.trainable());
        if (suite === 'train') log(`  optimizer: ${source} (peer: torch.optim.AdamW)`);
        resetKernelCounts();
        for (const c of cases(suite, shape, model, opt)) {
          c.frugal();
          // Warm-ups: one per side; torch.compile twice (its second call recompiles for dynamic shapes).
          const active: LivePeer[] = [];
          for (const p of peers) {
            try {
              for (let w = 0; w < (p.spec.compile ? 2 : 1); w++) await p.peer.time(c.peer);
              active.push(p);
            } catch (e) {
              if (!p.spec.compile) throw e;
              log(`  ${p.label}: ${c.name} failed (${(e as Error).message.slice(0, 200)}); its column is left out of this row`);
            }
          }
          const f: number[] = [];
          const ps = new Map<PeerSpec['id'], number[]>(active.map((p) => [p.spec.id, []]));
          for (let r = 0; r < o.reps; r++) {
            f.push(c.work / c.frugal());
            for (const p of active) ps.get(p.spec.id)!.push(c.work / (await p.peer.time(c.peer)));
          }
          rows.push(makeRow(suite, o, c, threads, backend, stats(f), active, ps));
          const r = rows[rows.length - 1]!;
          log(`  ${c.name}: Frugal ${r.frugal.toFixed(1)} ${c.unit}${active.map((p) => `, ${p.label} ${stats(ps.get(p.spec.id)!).median.toFixed(1)}`).join('')}` +
            `${r.ratio !== null ? ` (×${r.ratio.toFixed(2)} vs ${r.pytorchPeer})` : ''}`);
        }
        const kc = Object.entries(kernelCounts()).map(([k, n]) => `${k}×${n}`).join(' ');
        log(`  kernels that ran (calls): ${kc || 'none counted'}`);
      } finally {
        for (const p of peers) await p.peer.close();
      }
    }
  } finally {
    tmp.remove();
    await disposeBackends();
  }
  return rows;
}

/** One row: the `pytorch` column is the faster of the current PyTorch's eager and compiled peers
 *  (or PyTorch 1.13 when it alone ran); 1.13 is the second column. */
function makeRow(suite: ModelSuite, o: SuiteOptions, c: Case, threads: number, backend: string, fs: Stats, active: LivePeer[], ps: Map<PeerSpec['id'], number[]>): BenchRow {
  const st = new Map(active.map((p) => [p.spec.id, { ...stats(ps.get(p.spec.id)!), label: p.label }]));
  const current = [st.get('torch'), st.get('torch-blas1'), st.get('torch-compile')].filter((x) => x !== undefined);
  const best = current.length ? current.reduce((a, b) => (b!.median > a!.median ? b : a))! : st.get('torch-legacy') ?? null;
  const legacy = current.length ? st.get('torch-legacy') ?? null : null;
  return {
    suite, config: o.config, case: o.weights !== 'f32' && o.weights ? `${c.name} (Frugal ${o.weights} weights)` : c.name, threads, unit: c.unit,
    frugal: fs.median, pytorch: best ? best.median : null, ratio: best ? fs.median / best.median : null,
    frugalRange: [fs.min, fs.max], pytorchRange: best ? [best.min, best.max] : null, reps: o.reps, backend,
    ...(best ? { pytorchPeer: best.label } : {}),
    peers: Object.fromEntries([...st].map(([id, v]) => [id, { median: v.median, min: v.min, max: v.max }])),
    ...(current.length ? { legacy: legacy ? legacy.median : null, legacyRange: legacy ? [legacy.min, legacy.max] as [number, number] : null, legacyRatio: legacy ? fs.median / legacy.median : null } : {}),
  };
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
