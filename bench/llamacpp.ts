/**
 * llama.cpp as the inference peer of `frugal bench decode|prefill --peer llama.cpp`: the same
 * weights exported to GGUF (f32, bf16 or q8_0, matching Frugal's decode weights), the prebuilt
 * llama.cpp libraries of node-llama-cpp (devDependency) driven from a small C harness
 * (bench/peer/llama-harness.c) the way llama-bench drives them — one persistent ggml threadpool
 * of the same thread count, KV cache f32, flash attention off. The harness is compiled here at
 * first use against the headers of the exact llama.cpp source node-llama-cpp ships
 * (llama/gitRelease.bundle) and cached under node_modules/.cache. Frugal and llama.cpp
 * repetitions alternate; rows carry medians with ranges and the ratio Frugal / llama.cpp.
 * (Through node-llama-cpp's own API llama.cpp starts threads per decode call and, at 2 threads on
 * a 2-vCPU machine, runs 13x slower than this: ANCHORS.md.)
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import type { Backend } from '../src/backend/registry.js';
import { exportGguf } from '../src/model/gguf-node.js';
import { MODEL_BENCH_CONFIGS, benchModel, lcgBatch, lcgTokens, repoRoot, stats, tempModelDir, writeRaw, writeResults, type BenchModel, type BenchRow } from './common.js';
import type { SuiteOptions } from './harness.js';

/** Where node-llama-cpp's pieces are, or why they are not usable. */
function nodeLlamaCpp(): { bundle: string; bins: string } | { why: string } {
  const nm = path.join(repoRoot(), 'node_modules');
  const pkg = path.join(nm, 'node-llama-cpp'), bins = path.join(nm, '@node-llama-cpp', 'linux-x64', 'bins', 'linux-x64');
  if (!existsSync(path.join(pkg, 'package.json'))) return { why: 'node-llama-cpp is not installed (npm install; it is a devDependency)' };
  if (!existsSync(bins)) return { why: 'no prebuilt llama.cpp for this platform (@node-llama-cpp/linux-x64 is linux x64 only)' };
  const bundle = path.join(pkg, 'llama', 'gitRelease.bundle');
  if (!existsSync(bundle)) return { why: `${bundle} is missing` };
  if (!existsSync(path.join(bins, 'libllama.v0.5.0.so'))) return { why: `no libllama.v0.5.0.so in ${bins} (a different node-llama-cpp version?)` };
  return { bundle, bins };
}

const HEADERS = ['include/llama.h', 'ggml/include/ggml.h', 'ggml/include/ggml-cpu.h', 'ggml/include/ggml-backend.h', 'ggml/include/ggml-opt.h', 'ggml/include/gguf.h', 'ggml/include/ggml-alloc.h'];

/** Compiles the harness once (headers from the bundle); returns its path and the library folder. */
export function buildLlamaHarness(log: (s: string) => void = () => {}): { exe: string; bins: string } {
  const n = nodeLlamaCpp();
  if ('why' in n) throw new Error(`llama.cpp peer unavailable: ${n.why}`);
  const src = path.join(repoRoot(), 'bench', 'peer', 'llama-harness.c');
  const key = createHash('sha256').update(readFileSync(src)).update(n.bins).digest('hex').slice(0, 12);
  const dir = path.join(repoRoot(), 'node_modules', '.cache', 'frugal-llama-harness');
  const exe = path.join(dir, `llama-harness-${key}`);
  if (existsSync(exe)) return { exe, bins: n.bins };
  mkdirSync(path.join(dir, 'include'), { recursive: true });
  const git = path.join(dir, 'git');
  rmSync(git, { recursive: true, force: true });
  const run = (cmd: string, args: string[], what: string): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (r.status !== 0) throw new Error(`llama.cpp peer: ${what} failed: ${(r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ')}`);
    return r.stdout;
  };
  log(`  building the llama.cpp harness (headers from ${path.relative(repoRoot(), n.bundle)})`);
  run('git', ['init', '-q', git], 'git init');
  run('git', ['-C', git, 'fetch', '-q', n.bundle, 'HEAD'], 'git fetch of the bundle');
  for (const h of HEADERS) writeFileSync(path.join(dir, 'include', path.basename(h)), run('git', ['-C', git, 'show', `FETCH_HEAD:${h}`], `reading ${h}`));
  rmSync(git, { recursive: true, force: true });
  run('cc', ['-O2', '-std=c11', '-o', exe, src, '-I', path.join(dir, 'include'), '-L', n.bins, '-l:libllama.v0.5.0.so', '-l:libggml.v0.5.0.so', '-l:libggml-base.so', `-Wl,-rpath,${n.bins}`], 'compiling bench/peer/llama-harness.c');
  return { exe, bins: n.bins };
}

/** Why the llama.cpp peer cannot run here (null when it can). */
export function llamaCppUnavailable(): string | null {
  const n = nodeLlamaCpp();
  if ('why' in n) return n.why;
  for (const [cmd, args] of [['cc', ['--version']], ['git', ['--version']]] as const) {
    if (spawnSync(cmd, [...args]).status !== 0) return `${cmd} is needed to build the harness`;
  }
  return null;
}

/** A running harness serving one GGUF file at a fixed thread count. */
export class LlamaCppPeer {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending: Array<(line: string) => void> = [];
  private stderr = '';
  private exited: string | null = null;
  constructor(exe: string, bins: string, file: string, readonly threads: number) {
    this.proc = spawn(exe, [file, String(threads), bins], { stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout }).on('line', (l) => this.pending.shift()?.(l));
    this.proc.stderr.on('data', (d: Buffer) => { this.stderr = (this.stderr + d.toString()).slice(-4000); });
    this.proc.on('exit', (code) => {
      this.exited = `llama.cpp harness exited with code ${code}: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`;
      for (const f of this.pending.splice(0)) f(`error ${this.exited}`);
    });
  }
  /** One command; resolves with the words after "ok". */
  request(cmd: string): Promise<string[]> {
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => {
      this.pending.push((line) => (line.startsWith('ok') ? resolve(line.split(' ').slice(1)) : reject(new Error(`llama.cpp harness: ${line}`))));
      this.proc.stdin.write(cmd + '\n');
    });
  }
  async seconds(cmd: string): Promise<number> { return Number((await this.request(cmd))[0]); }
  async close(): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.proc.stdin.end('quit\n');
    await Promise.race([done, new Promise<void>((r) => setTimeout(() => { this.proc.kill(); r(); }, 5000))]);
  }
}

interface LCase { name: string; work: number; frugal: () => number; peer: string }

function llamaCases(suite: 'decode' | 'prefill', o: SuiteOptions, model: BenchModel, dir: string): LCase[] {
  const shape = MODEL_BENCH_CONFIGS[o.config]!;
  const V = model.vocabSize;
  if (suite === 'prefill') {
    const { batch: B, seq: T } = shape;
    const { inputs } = lcgBatch(2, B, T, V);
    const f = path.join(dir, 'prefill.i32');
    writeRaw(f, inputs);
    const x = new Tensor(inputs, [B, T], 'i32');
    return [{ name: `forward ${B}×${T}`, work: B * T, peer: `prefill ${B} ${T} ${f}`, frugal: () => noGrad(() => { const t0 = performance.now(); model.forward(x); return (performance.now() - t0) / 1000; }) }];
  }
  const dec = (d: { prompt: number; steps: number }, label: string): LCase => {
    const toks = lcgTokens(3, d.prompt + d.steps, V);
    const f = path.join(dir, `decode-${d.prompt}-${d.steps}.i32`);
    writeRaw(f, toks);
    return {
      name: label, work: d.steps, peer: `decode ${d.prompt} ${d.steps} ${f}`,
      frugal: () => noGrad(() => {
        const cache = model.makeCache(d.prompt + d.steps);
        model.forward(new Tensor(toks.slice(0, d.prompt), [1, d.prompt], 'i32'), cache, 0);
        const t0 = performance.now();
        for (let i = d.prompt; i < d.prompt + d.steps; i++) model.forward(new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), cache, i);
        return (performance.now() - t0) / 1000;
      }),
    };
  };
  return [
    dec(shape.decodeShort, `batch 1, ${shape.decodeShort.prompt}→${shape.decodeShort.prompt + shape.decodeShort.steps}`),
    dec(shape.decodeLong, `batch 1, at ${shape.decodeLong.prompt}→${shape.decodeLong.prompt + shape.decodeLong.steps} context`),
  ];
}

/** llama.cpp's logits vs Frugal's on the same 16 tokens (max |Δ|). */
async function checkLogits(peer: LlamaCppPeer, model: BenchModel, dir: string): Promise<number> {
  const T = 16, V = model.vocabSize;
  const toks = lcgTokens(7, T, V);
  const tf = path.join(dir, 'check.i32'), lf = path.join(dir, 'check-llama.f32');
  writeRaw(tf, toks);
  await peer.request(`logits ${T} ${tf} ${lf}`);
  const theirs = new Float32Array(new Uint8Array(readFileSync(lf)).buffer);
  const ours = noGrad(() => model.forward(new Tensor(toks, [1, T], 'i32')).f32);
  let d = 0;
  for (let i = 0; i < T * V; i++) d = Math.max(d, Math.abs(theirs[i]! - ours[i]!));
  return d;
}

/** Runs decode or prefill against llama.cpp; rows use the `pytorch` fields for the peer (labelled llama.cpp). */
export async function runLlamaCppSuite(suite: 'decode' | 'prefill', o: SuiteOptions, log: (s: string) => void): Promise<BenchRow[]> {
  const shape = MODEL_BENCH_CONFIGS[o.config]!;
  const weights = o.weights ?? 'f32';
  const { exe, bins } = buildLlamaHarness(log);
  const rows: BenchRow[] = [];
  const tmp = tempModelDir();
  try {
    const model = benchModel(shape, 1);
    await model.save(tmp.dir);
    const file = path.join(tmp.dir, `model-${weights}.gguf`);
    await exportGguf(tmp.dir, file, weights);
    for (const threads of o.threads) {
      const be = (await useBackend(o.backend, { threads })) as Backend & { setThreads?: (n: number) => number };
      if (be.threads !== threads && be.setThreads) be.setThreads(threads);
      const backend = describeBackend();
      // After the backend is up: the decode linears bind to its kernels.
      if (weights === 'bf16') log(`  Frugal decode steps: ${model.useBf16Decode()}`);
      if (weights === 'q8_0') log(`  Frugal decode steps: ${model.useQ8Decode()}`);
      log(`[${suite} ${o.config} threads=${threads} weights=${weights}] Frugal: ${backend}; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
      const peer = new LlamaCppPeer(exe, bins, file, threads);
      try {
        const info = await peer.request('info');
        log(`  peer: llama.cpp 0.5.0 (node-llama-cpp 3.22.1 prebuilt, ${info[1]} backend), ${threads}-thread persistent threadpool, ${weights} GGUF, KV cache f32, flash attention off`);
        const d = await checkLogits(peer, model, tmp.dir);
        log(`  logits check (1×16, same weights; Frugal prefill is f32): max |Frugal − llama.cpp| = ${d.toExponential(2)}`);
        if (weights === 'f32' && !(d < 1e-4)) throw new Error(`llama.cpp's logits differ from Frugal's by ${d} (> 1e-4); refusing to time different computations`);
        for (const c of llamaCases(suite, o, model, tmp.dir)) {
          c.frugal();
          await peer.seconds(c.peer);
          const f: number[] = [], p: number[] = [];
          for (let r = 0; r < o.reps; r++) {
            f.push(c.work / c.frugal());
            p.push(c.work / (await peer.seconds(c.peer)));
          }
          const fs = stats(f), ps = stats(p);
          rows.push({
            suite, config: o.config, case: `${c.name} (${weights})`, threads, unit: 'tokens/s', frugal: fs.median, pytorch: ps.median, ratio: fs.median / ps.median,
            frugalRange: [fs.min, fs.max], pytorchRange: [ps.min, ps.max], reps: o.reps, backend,
          });
          log(`  ${c.name}: Frugal ${fs.median.toFixed(1)} tokens/s, llama.cpp ${ps.median.toFixed(1)} (×${(fs.median / ps.median).toFixed(2)})`);
        }
      } finally { await peer.close(); }
    }
  } finally {
    tmp.remove();
    await disposeBackends();
  }
  return rows;
}

/** Markdown table with a llama.cpp column. */
export function formatLlamaRows(rows: BenchRow[]): string {
  const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const lines = ['| suite | config | case | threads | Frugal tokens/s median (min–max) | llama.cpp tokens/s median (min–max) | Frugal / llama.cpp |', '|---|---|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.suite} | ${r.config} | ${r.case} | ${r.threads} | ${f(r.frugal)} (${f(r.frugalRange[0])}–${f(r.frugalRange[1])}) | ${f(r.pytorch!)} (${f(r.pytorchRange![0])}–${f(r.pytorchRange![1])}) | ${r.ratio!.toFixed(2)}× |`);
  return lines.join('\n');
}

/** Writes rows into docs/results/bench.md under a llama.cpp section per suite and config. */
export function writeLlamaResults(suite: string, config: string, weights: string, cmd: string, rows: BenchRow[]): string {
  const threads = [...new Set(rows.map((r) => r.threads))].join('-');
  return writeResults(`${suite}-llamacpp-${config}-${weights}-t${threads}`, `#### ${suite} vs llama.cpp — ${config}, ${weights}\n\n\`${cmd}\` — ${new Date().toISOString().slice(0, 10)}, ${rows[0]?.backend ?? ''}\n\n${formatLlamaRows(rows)}`);
}
