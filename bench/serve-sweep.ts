/**
 * Continuous-batching sweep for `bench/serve-load.ts --sweep 1,4,16,64`: at each concurrency c,
 * interleaved in every repetition,
 * - server: c streaming clients over HTTP, each sending `requests` completions one after another
 *   (distinct token-id prompts of `promptTokens`, max_tokens `tokens`, greedy): aggregate completion
 *   tokens/s and p50/p99 time to first token over all requests, twice: a burst (all clients start
 *   together and, every request being as long, stay in lockstep: the prompts of all c arrive at
 *   once, every time) and staggered (client i starts i/c of a lone request's time later, so
 *   requests arrive spread out, as users' do);
 * - engine: the scheduler alone (no HTTP) on c sequences started together, prompt `promptTokens`,
 *   `tokens` greedy tokens each, no stop token: tokens/s and TTFT;
 * - llama.cpp (when available): the same c sequences on the same weights (f32 GGUF), its c parallel
 *   sequences decoded together in one batch per step as its server's slots are
 *   (bench/peer/llama-harness.c `parallel`): tokens/s and TTFT; its greedy tokens compared with the
 *   engine's.
 * Medians (with min–max) over the repetitions; ratios are of medians measured in the same run.
 */
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { Scheduler } from '../src/infer/scheduler.js';
import { KvBlockPool } from '../src/infer/kv-blocks.js';
import type { Model } from '../src/infer/generate.js';
import { exportGguf } from '../src/model/gguf-node.js';
import { buildLlamaHarness, llamaCppUnavailable, LlamaCppPeer } from './llamacpp.js';
import { lcgTokens, stats, writeRaw, type Stats } from './common.js';

export interface SweepOptions {
  model: Model; modelDir: string; url: string; vocab: number; levels: number[];
  tokens: number; promptTokens: number; requests: number; reps: number; threads: number;
  peer: boolean; tmpDir: string; log: (s: string) => void;
  /** llama.cpp thread counts to run (each a persistent pool; the table shows the faster per level). */
  peerThreads: number[];
}

interface Run { tokS: number; ttft: number[]; latency?: number[]; tokens?: number; cpuMs?: number; serverCpuMs?: number }
const now = (): number => performance.now();
const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!; };

/** Prompt j of a run: distinct token ids (no prefix-cache hits between requests). */
const promptOf = (seed: number, n: number, vocab: number): number[] => Array.from(lcgTokens(seed, n, vocab)); // as serve-clients.ts

/** c sequences through the scheduler, started together; greedy, exactly `tokens` each. */
function engineRun(model: Model, c: number, o: SweepOptions, seed: number): Run & { out: number[][] } {
  const pool = new KvBlockPool({ cfg: model.cfg, totalBytes: 1 << 30 });
  const s = new Scheduler(model, { maxBatch: c, pool });
  const t0 = now();
  const seqs = Array.from({ length: c }, (_, i) => s.submit(promptOf(seed + i, o.promptTokens, o.vocab), { greedy: true, maxTokens: o.tokens, vocabLimit: o.vocab }));
  const ttft = new Array<number>(c).fill(NaN);
  while (s.busy) {
    s.step();
    for (let i = 0; i < c; i++) if (Number.isNaN(ttft[i]!) && seqs[i]!.tokens > 0) ttft[i] = now() - t0;
  }
  const secs = (now() - t0) / 1000;
  const out = seqs.map((q) => q.gen!.tokens.slice());
  return { tokS: out.reduce((n, t) => n + t.length, 0) / secs, ttft, out };
}

/** The same c sequences in llama.cpp (one batch for the prompts, then one batch per step). */
async function llamaRun(peer: LlamaCppPeer, c: number, o: SweepOptions, seed: number): Promise<Run & { out: number[][] }> {
  const flat = new Int32Array(c * o.promptTokens);
  for (let i = 0; i < c; i++) flat.set(promptOf(seed + i, o.promptTokens, o.vocab), i * o.promptTokens);
  const inF = path.join(o.tmpDir, `par-${c}.i32`), outF = path.join(o.tmpDir, `par-${c}-out.i32`);
  writeRaw(inF, flat);
  const [pre, dec] = (await peer.request(`parallel ${c} ${o.promptTokens} ${o.tokens} ${inF} ${outF}`)).map(Number) as [number, number];
  const got = new Int32Array(new Uint8Array(readFileSync(outF)).buffer);
  const out = Array.from({ length: c }, (_, i) => Array.from(got.subarray(i * o.tokens, (i + 1) * o.tokens)));
  return { tokS: (c * o.tokens) / (pre + dec), ttft: new Array<number>(c).fill(pre * 1000), out };
}

/** c streaming HTTP clients, each sending o.requests completions in turn, in a process of their own (bench/serve-clients.ts). */
async function serverRun(c: number, o: SweepOptions, seed: number, staggerMs = 0): Promise<Run & { errors: string[] }> {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'serve-clients.ts');
  const args = ['--import', 'tsx', script, o.url, String(c), String(o.requests), String(o.promptTokens), String(o.tokens), String(o.vocab), String(seed), String(Math.round(staggerMs))];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const cpu0 = process.cpuUsage(); // this process: the server, its engine and pool threads (and the idle wait for the child's start)
  let out = '', err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-2000); });
  const code = await new Promise<number>((r) => child.on('close', (k) => r(k ?? 1)));
  if (code !== 0) throw new Error(`serve-clients exited with ${code}: ${err.trim()}`);
  const cpu = process.cpuUsage(cpu0);
  return { ...(JSON.parse(out.trim().split('\n').pop()!) as Run & { errors: string[] }), serverCpuMs: (cpu.user + cpu.system) / 1000 };
}

const fmt = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));
const range = (s: Stats): string => `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;

/** Runs the sweep; returns markdown lines. */
export async function concurrencySweep(o: SweepOptions): Promise<string[]> {
  const why = o.peer ? llamaCppUnavailable() : 'not requested (--peer none)';
  const peers: LlamaCppPeer[] = [];
  if (!why) {
    const { exe, bins } = buildLlamaHarness(o.log);
    const file = path.join(o.tmpDir, 'model-f32.gguf');
    await exportGguf(o.modelDir, file, 'f32');
    for (const t of o.peerThreads) peers.push(new LlamaCppPeer(exe, bins, file, t));
    const info = await peers[0]!.request('info');
    o.log(`llama.cpp peer: node-llama-cpp's prebuilt llama.cpp (${info[1]} backend), ${o.peerThreads.join(' and ')}-thread persistent threadpools, f32 GGUF of the same weights, KV cache f32, flash attention off`);
  } else o.log(`llama.cpp peer: ${why}`);
  interface Level { srv: Run[]; stag: Run[]; eng: Run[]; lla: Map<number, Run[]>; same: number; total: number; errors: string[] }
  const res = new Map<number, Level>();
  try {
    for (const c of o.levels) { // warm-up of every path at every level (JIT, caches, contexts); not timed
      await serverRun(c, { ...o, requests: 1, tokens: Math.min(32, o.tokens) }, 900);
      engineRun(o.model, c, o, 900);
      for (const p of peers) await llamaRun(p, c, o, 900);
    }
    for (let rep = 0; rep < o.reps; rep++) {
      let loneMs = 0;
      for (const c of o.levels) {
        const r: Level = res.get(c) ?? { srv: [], stag: [], eng: [], lla: new Map(), same: 0, total: 0, errors: [] };
        res.set(c, r);
        const seed = 10_000 * (rep + 1) + 100 * c;
        const e = engineRun(o.model, c, o, seed);
        r.eng.push(e);
        for (const p of peers) {
          const l = await llamaRun(p, c, o, seed);
          r.lla.set(p.threads, [...(r.lla.get(p.threads) ?? []), l]);
          r.total += c;
          r.same += e.out.filter((t, i) => t.length === l.out[i]!.length && t.every((x, j) => x === l.out[i]![j])).length;
        }
        const s = await serverRun(c, o, seed);
        r.srv.push(s);
        r.errors.push(...s.errors);
        if (c === 1 || loneMs === 0) loneMs = stats(s.latency!).median;
        const g = c > 1 ? await serverRun(c, o, seed + 7, loneMs) : s;
        r.stag.push(g);
        r.errors.push(...(c > 1 ? g.errors : []));
        o.log(`  rep ${rep + 1} c=${c}: server ${fmt(s.tokS)} tok/s (TTFT p99 burst ${fmt(pct(s.ttft, 99))} ms, staggered ${fmt(pct(g.ttft, 99))} ms), engine ${fmt(e.tokS)}${peers.map((p) => `, llama.cpp ${p.threads}t ${fmt(r.lla.get(p.threads)!.at(-1)!.tokS)}`).join('')}`);
      }
    }
  } finally { for (const p of peers) await p.close(); }
  const base = res.get(o.levels[0]!)!;
  const baseTok = stats(base.srv.map((x) => x.tokS)).median;
  const baseTtft = stats(base.srv.map((x) => pct(x.ttft, 50))).median;
  const out: string[] = [];
  out.push(`| streams | server tokens/s (burst) | vs ${o.levels[0]} stream | server TTFT p50 / p99 ms, burst | server TTFT p50 / p99 ms, staggered | engine tokens/s | llama.cpp tokens/s | engine / llama.cpp | TTFT p99 ms engine / llama.cpp (burst) | greedy tokens = llama.cpp's |`);
  out.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const c of o.levels) {
    const r = res.get(c)!;
    const s = stats(r.srv.map((x) => x.tokS)), e = stats(r.eng.map((x) => x.tokS));
    const p50 = stats(r.srv.map((x) => pct(x.ttft, 50))).median, p99 = stats(r.srv.map((x) => pct(x.ttft, 99))).median;
    const g50 = stats(r.stag.map((x) => pct(x.ttft, 50))).median, g99 = stats(r.stag.map((x) => pct(x.ttft, 99))).median;
    // llama.cpp at its faster thread count for this level (its spinning pool can lose to one thread on a busy machine).
    let best: { t: number; runs: Run[] } | null = null;
    for (const [t, runs] of r.lla) if (!best || stats(runs.map((x) => x.tokS)).median > stats(best.runs.map((x) => x.tokS)).median) best = { t, runs };
    const l = best ? stats(best.runs.map((x) => x.tokS)) : null;
    const e99 = stats(r.eng.map((x) => pct(x.ttft, 99))).median, l99 = best ? stats(best.runs.map((x) => pct(x.ttft, 99))).median : NaN;
    out.push(`| ${c} | ${range(s)} | ${(s.median / baseTok).toFixed(2)}x | ${fmt(p50)} / ${fmt(p99)} (${(p99 / baseTtft).toFixed(1)}x lone) | ${fmt(g50)} / ${fmt(g99)} (${(g99 / baseTtft).toFixed(1)}x lone) | ${range(e)} | ${l && best ? `${range(l)} at ${best.t} thread${best.t > 1 ? 's' : ''}` : 'n/a'} | ${l ? (e.median / l.median).toFixed(2) + 'x' : 'n/a'} | ${fmt(e99)} / ${l ? fmt(l99) : 'n/a'} | ${r.total ? `${r.same}/${r.total}` : 'n/a'} |`);
    if (r.errors.length) out.push(`\nc=${c}: ${r.errors.length} errors, first: ${r.errors[0]}\n`);
  }
  // CPU per 1,000 completion tokens of the burst runs: the server process (HTTP, scheduler, engine
  // and its pool threads, spinning included) and the client process (fetch + SSE parsing).
  const cpuLine = o.levels.map((c) => {
    const runs = res.get(c)!.srv.filter((x) => x.tokens && x.cpuMs !== undefined && x.serverCpuMs !== undefined);
    if (runs.length === 0) return `${c}: n/a`;
    const per = (f: (x: Run) => number): string => fmt(stats(runs.map((x) => (1000 * f(x)) / x.tokens!)).median);
    return `${c} stream${c > 1 ? 's' : ''}: server ${per((x) => x.serverCpuMs!)} ms, clients ${per((x) => x.cpuMs!)} ms`;
  });
  out.push('', `CPU time per 1,000 completion tokens (burst runs, median): ${cpuLine.join('; ')}.`);
  return out;
}
