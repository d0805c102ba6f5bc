/**
 * Serving benchmark: `npx tsx bench/serve-load.ts [--clients 50] [--max-tokens 16] [--model DIR]
 * [--prefix-tokens 1024] [--reps 3] [--decode-tokens 32] [--time-limit-s 600] [--write FILE]
 * [--backend native] [--threads 2] [--max-batch N] [--sweep 1,4,16,64 [--only sweep]]`.
 *
 * Starts the OpenAI-compatible server in-process on 127.0.0.1 (ephemeral port, loopback only) and
 * measures, in this order:
 * 1. time to first token for a `--prefix-tokens` shared prefix, cold (never seen) vs warm (prefix in
 *    the prefix cache, a different last token), over HTTP (`/v1/completions`, token-id prompt,
 *    max_tokens 1, so the request time is the time to the first token);
 * 2. a bounded load run: `--clients` concurrent streaming chat clients sharing one long system
 *    prompt (~`--prefix-tokens` tokens) with distinct questions; errors (must be 0), p50/p99 time to
 *    first content and total latency, completion tokens/s overall, the prefix-cache hit share;
 * 3. decode tokens/s at batch 1 (prompt 128) with the latent KV cache vs recomputing the whole
 *    sequence each token (engine level, greedy);
 * 4. KV memory per cached token, MLA latent vs MHA K+V, from the config (and as measured in the
 *    server's prefix cache);
 * 5. with `--sweep`, continuous batching at each concurrency (bench/serve-sweep.ts): server
 *    tokens/s and TTFT over HTTP, the engine alone, and llama.cpp with as many parallel sequences
 *    on the same weights (`--peer llama.cpp`, the default), interleaved per repetition.
 * Default model: the golden tiny DeepSeek-V3 (/work/shared/reference/tiny-dsv3) copied to a temp
 * folder with max_position_embeddings raised to 2048 (plain RoPE works at any length; the weights are
 * random) plus a small BPE tokenizer trained here. Everything is bounded in count; a watchdog ends
 * the process with exit code 2 after `--time-limit-s`. Prints a markdown report (also to --write).
 */
import { mkdtempSync, copyFileSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir, loadavg, cpus } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import type { Tokenizer } from '../src/io/tokenizer.js';
import { loadModel } from '../src/model/load-node.js';
import { checkModelDir, openModel } from '../src/serve/model-node.js';
import { startServer } from '../src/serve/server.js';
import { Generation, type Model } from '../src/infer/generate.js';
import { argmax } from '../src/infer/sampling.js';
import { latentRowWidth } from '../src/infer/prefix-cache.js';
import { forward } from '../src/model/deepseek.js';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { kvCacheBytesPerToken } from '../src/cost/index.js';
import { presets, type DeepSeekConfig } from '../src/model/config.js';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { lcgTokens } from './common.js';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../src/backend/setup-node.js';
import { concurrencySweep } from './serve-sweep.js';

const spec: OptionSpec = {
  clients: { type: 'number', help: 'concurrent streaming chat clients in the load run', default: 50 },
  'max-tokens': { type: 'number', help: 'max_tokens per load-run request', default: 16 },
  model: { type: 'string', help: 'model folder with tokenizer.json (default: the tiny reference, context 2048)' },
  'prefix-tokens': { type: 'number', help: 'shared prefix length (capped by the context)', default: 1024 },
  reps: { type: 'number', help: 'cold/warm repetitions (median reported)', default: 3 },
  'decode-tokens': { type: 'number', help: 'tokens decoded with the latent cache (recompute decodes a quarter, at least 4)', default: 32 },
  'time-limit-s': { type: 'number', help: 'watchdog: exit 2 after this many seconds', default: 600 },
  write: { type: 'string', help: 'also write the markdown report to this file' },
  backend: { type: 'string', help: 'compute backend: auto, native, wasm or ts', default: 'native' },
  threads: { type: 'number', help: 'backend threads (and llama.cpp threads)', default: 2 },
  'max-batch': { type: 'number', help: 'server --max-batch (default: the largest --sweep level, else 16)' },
  sweep: { type: 'string', help: 'concurrency levels of the batching sweep, e.g. 1,4,16,64 (default: no sweep)' },
  'sweep-tokens': { type: 'number', help: 'tokens per sweep request (greedy)', default: 120 },
  'sweep-prompt': { type: 'number', help: 'prompt tokens per sweep request', default: 32 },
  'sweep-requests': { type: 'number', help: 'requests each sweep client sends in turn', default: 4 },
  peer: { type: 'string', help: 'sweep peer: llama.cpp or none', default: 'llama.cpp' },
  'peer-threads': { type: 'string', help: 'llama.cpp thread counts (the faster is shown per level; default: --threads)' },
  only: { type: 'string', help: "'sweep': run only the sweep" },
};

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const CORPUS = 'The quick brown fox jumps over the lazy dog. Congress shall make no law. In the beginning there were tokens.\n';
const now = (): number => performance.now();
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2; };
/** Nearest-rank percentile (p in [0, 100]). */
const pct = (xs: number[], p: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!; };
const ms = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1));

/** The default model: the tiny reference with context 2048 and a BPE tokenizer trained on CORPUS. */
function tinyModelDir(): string {
  if (!existsSync(REF)) throw new Error(`${REF} not found: pass --model DIR (a model folder with tokenizer.json)`);
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-serve-load-'));
  copyFileSync(path.join(REF, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const cfg = JSON.parse(readFileSync(path.join(REF, 'config.json'), 'utf8')) as Record<string, unknown>;
  cfg.max_position_embeddings = 2048;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(trainBpe([CORPUS.repeat(30)], { vocabSize: 400 })));
  return dir;
}

/** A system prompt of at least `target` tokens (by this tokenizer, fewest such sentences), built from numbered varied sentences. */
function longSystemPrompt(tok: Tokenizer, target: number): string {
  const words = ['fox', 'dog', 'law', 'tokens', 'quick', 'lazy', 'brown', 'beginning', 'Congress', 'jumps', 'over', 'there'];
  const sentence = (i: number): string => `Rule ${i}: the ${words[i % words.length]} and the ${words[(i * 7 + 3) % words.length]} ${i % 3 ? 'shall' : 'were'} ${words[(i * 5 + 1) % words.length]}.`;
  const count = (n: number): number => tok.encode(Array.from({ length: n }, (_, i) => sentence(i)).join(' '), { addSpecialTokens: false }).length;
  let hi = 16;
  while (count(hi) < target && hi < 1 << 16) hi *= 2;
  let lo = hi >> 1;
  while (lo + 1 < hi) { const m = (lo + hi) >> 1; if (count(m) >= target) hi = m; else lo = m; }
  return Array.from({ length: hi }, (_, i) => sentence(i)).join(' ');
}

interface ClientResult { ok: boolean; error: string | null; ttftMs: number; totalMs: number; completion: number; prompt: number; hit: number }

/** One streaming chat request; times the first content delta (or the finish chunk) and [DONE]. */
async function streamChat(url: string, body: unknown, signal: AbortSignal): Promise<ClientResult> {
  const t0 = now();
  const r: ClientResult = { ok: false, error: null, ttftMs: NaN, totalMs: NaN, completion: 0, prompt: 0, hit: 0 };
  try {
    const res = await fetch(`${url}/v1/chat/completions`, { method: 'POST', signal, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 200) { r.error = `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`; return r; }
    const dec = new TextDecoder();
    let buf = '', done = false;
    for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(part, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!ev.startsWith('data: ')) continue;
        const data = ev.slice(6);
        if (data === '[DONE]') { done = true; continue; }
        const c = JSON.parse(data) as { choices: { delta?: { content?: string }; finish_reason?: string | null }[]; usage?: { prompt_tokens: number; completion_tokens: number; prompt_cache_hit_tokens: number } };
        if (c.usage) { r.completion = c.usage.completion_tokens; r.prompt = c.usage.prompt_tokens; r.hit = c.usage.prompt_cache_hit_tokens; }
        const ch = c.choices[0];
        if (Number.isNaN(r.ttftMs) && ch && ((ch.delta?.content ?? '') !== '' || ch.finish_reason)) r.ttftMs = now() - t0;
      }
    }
    r.totalMs = now() - t0;
    if (!done) r.error = 'stream ended without [DONE]';
    else if (r.prompt === 0) r.error = 'no usage chunk';
    else r.ok = true;
  } catch (e) { r.error = (e as Error).message; }
  return r;
}

/** Decode tokens/s at batch 1 after a `promptLen` prompt: latent-cache decoding vs full recompute. */
function decodeBench(model: Model, vocab: number, promptLen: number, nCached: number): { cached: number; recompute: number; nRecompute: number; same: boolean } {
  const { cfg, params } = model;
  const prompt = Array.from(lcgTokens(7, promptLen, vocab));
  const g = new Generation(model, prompt, { greedy: true, maxTokens: nCached + 1, vocabLimit: vocab });
  g.step(); // prefill + first token
  const t0 = now();
  while (!g.done) g.step();
  const cached = (g.tokens.length - 1) / ((now() - t0) / 1000);
  const nRecompute = Math.max(4, Math.floor(nCached / 4));
  const seq = prompt.slice();
  seq.push(g.tokens[0]!);
  const got: number[] = [];
  const t1 = now();
  noGrad(() => {
    for (let i = 0; i < nRecompute; i++) {
      const T = seq.length;
      const logits = forward(params, cfg, Tensor.ints(seq, [1, T])).logits.f32;
      const next = argmax(logits.subarray((T - 1) * cfg.vocabSize, (T - 1) * cfg.vocabSize + vocab));
      got.push(next); seq.push(next);
    }
  });
  const recompute = nRecompute / ((now() - t1) / 1000);
  return { cached, recompute, nRecompute, same: got.every((t, i) => t === g.tokens[i + 1]) };
}

function kvRows(cfg: DeepSeekConfig, name: string): string {
  const kv = kvCacheBytesPerToken(cfg, 2);
  return `| ${name} | ${kv.valuesPerLayer} | ${kv.actual.toLocaleString('en-US')} | ${kv.mha.toLocaleString('en-US')} | ${(kv.mha / kv.actual).toFixed(1)}x |`;
}

export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('serve-load (npx tsx bench/serve-load.ts)', '[--clients 50] [--max-tokens 16] [--model DIR]', spec)); return 0; }
  const clients = a.clients as number, maxTokens = a['max-tokens'] as number, reps = a.reps as number;
  for (const [k, v, lo, hi] of [['clients', clients, 1, 1000], ['max-tokens', maxTokens, 1, 4096], ['reps', reps, 1, 20], ['decode-tokens', a['decode-tokens'], 1, 4096], ['prefix-tokens', a['prefix-tokens'], 1, 1e6]] as const) {
    if (!Number.isInteger(v) || v < lo || v > hi) { console.error(`--${k} must be an integer in [${lo}, ${hi}], got ${v}`); return 1; }
  }
  const watchdog = setTimeout(() => { console.error(`serve-load: time limit of ${a['time-limit-s']} s reached; stopping`); process.exit(2); }, (a['time-limit-s'] as number) * 1000);
  watchdog.unref();

  const levels = a.sweep === undefined ? [] : String(a.sweep).split(',').map(Number);
  if (levels.some((c) => !Number.isInteger(c) || c < 1 || c > 256)) { console.error(`--sweep must list integers in [1, 256], got ${a.sweep}`); return 1; }
  if (a.only !== undefined && (a.only !== 'sweep' || !levels.length)) { console.error("--only takes 'sweep' (with --sweep LEVELS)"); return 1; }
  if (!['llama.cpp', 'none'].includes(a.peer as string)) { console.error(`--peer must be llama.cpp or none, got ${a.peer}`); return 1; }
  await useBackend(a.backend as BackendChoice, { threads: a.threads as number });
  const maxBatch = (a['max-batch'] as number | undefined) ?? (levels.length ? Math.max(...levels) : 16);
  const own = a.model === undefined;
  const dir = own ? tinyModelDir() : checkModelDir(a.model);
  let close: (() => Promise<void>) | null = null;
  try {
    const { model, tokenizer } = own ? { model: await loadModel(dir), tokenizer: await loadTokenizer(dir) } : await openModel(dir);
    if (!tokenizer) { console.error(`${dir}: no tokenizer.json (the chat load run needs one)`); return 1; }
    const cfg = model.cfg, ctx = cfg.maxPositionEmbeddings, vocab = tokenizer.vocabSize;
    const P = Math.min(a['prefix-tokens'] as number, ctx - maxTokens - 64);
    if (P < 16) { console.error(`model context ${ctx} is too short for this benchmark`); return 1; }
    const srv = await startServer({ model, tokenizer, modelName: 'bench', port: 0, host: '127.0.0.1', maxQueue: Math.max(64, clients + 8, 2 * maxBatch), maxBatch, log: () => {} });
    close = srv.close;
    const out: string[] = [];
    const say = (s: string): void => { out.push(s); console.log(s); };
    const started = new Date();
    say(`## Serving benchmark (${started.toISOString().slice(0, 10)})\n`);
    say(`- command: \`npx tsx bench/serve-load.ts ${argv.join(' ')}\`\n- machine: ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average ${loadavg().map((x) => x.toFixed(2)).join(', ')} at start, Node ${process.version}\n- backend: ${describeBackend()}; server --max-batch ${maxBatch} (${Number.isFinite(srv.scheduler.rowsPerPass()) ? `${srv.scheduler.rowsPerPass()} rows per decode pass` : 'all rows in one decode pass'})`);
    say(`- model: ${own ? 'tiny reference (random weights), max_position_embeddings raised to 2048, BPE tokenizer of 400 ids' : dir}; ${cfg.numHiddenLayers} layers, hidden ${cfg.hiddenSize}, context ${ctx}\n`);

    if (levels.length) {
      say(`### Continuous batching: ${levels.join(', ')} concurrent streams (prompt ${a['sweep-prompt']} tokens, ${a['sweep-tokens']} greedy tokens, ${a['sweep-requests']} requests per server stream, median of ${reps} interleaved repetitions)\n`);
      const tmp = mkdtempSync(path.join(tmpdir(), 'frugal-sweep-'));
      try {
        const lines = await concurrencySweep({
          model, modelDir: dir, url: srv.url, vocab, levels, tokens: a['sweep-tokens'] as number, promptTokens: a['sweep-prompt'] as number,
          requests: a['sweep-requests'] as number, reps, threads: a.threads as number, peer: a.peer === 'llama.cpp', tmpDir: tmp, log: (m) => console.error(m),
          peerThreads: a['peer-threads'] === undefined ? [a.threads as number] : String(a['peer-threads']).split(',').map(Number),
        });
        for (const l of lines) say(l);
      } finally { rmSync(tmp, { recursive: true, force: true }); }
      say(`\nload average after the sweep: ${loadavg().map((x) => x.toFixed(2)).join(', ')}\n`);
      if (a.only === 'sweep') { if (a.write) writeFileSync(a.write as string, out.join('\n') + '\n'); return 0; }
    }

    // 1. Cold vs warm time to first token for a P-token shared prefix.
    const post = async (body: unknown): Promise<{ ms: number; hit: number }> => {
      const t0 = now();
      const res = await fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
      const j = await res.json() as { usage?: { prompt_cache_hit_tokens: number }; error?: { message: string } };
      if (res.status !== 200 || !j.usage) throw new Error(`cold/warm request failed: HTTP ${res.status} ${j.error?.message ?? ''}`);
      return { ms: now() - t0, hit: j.usage.prompt_cache_hit_tokens };
    };
    await post({ prompt: Array.from(lcgTokens(999, 64, vocab)), max_tokens: 2, temperature: 0 }); // warm-up (JIT), not timed
    const cold: number[] = [], warm: number[] = [];
    let warmHit = 0;
    for (let r = 0; r < reps; r++) {
      const prefix = Array.from(lcgTokens(1000 + r, P, vocab));
      const c = await post({ prompt: [...prefix, 1 % vocab], max_tokens: 1, temperature: 0 });
      if (c.hit !== 0) throw new Error(`cold request hit ${c.hit} cached tokens; expected 0`);
      const w = await post({ prompt: [...prefix, 2 % vocab], max_tokens: 1, temperature: 0 });
      cold.push(c.ms); warm.push(w.ms); warmHit = w.hit;
    }
    const speedup = median(cold) / median(warm);
    say(`### Time to first token, ${P + 1}-token prompt sharing a ${P}-token prefix (HTTP, median of ${reps})\n`);
    say('| prefix | TTFT | cache hit tokens |\n|---|---|---|');
    say(`| cold (never seen) | ${ms(median(cold))} ms | 0 |`);
    say(`| warm (prefix cached, different last token) | ${ms(median(warm))} ms | ${warmHit} |`);
    say(`\nwarm is **${speedup.toFixed(0)}x** faster (goal >= 10x): ${speedup >= 10 ? 'met' : 'NOT met'}\n`);

    // 2. The load run.
    const system = longSystemPrompt(tokenizer, P);
    const signal = AbortSignal.timeout(((a['time-limit-s'] as number) - 5) * 1000);
    const t0 = now();
    const results = await Promise.all(Array.from({ length: clients }, (_, i) => streamChat(srv.url, {
      model: 'bench', max_tokens: maxTokens, temperature: 0.8, seed: i, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'system', content: system }, { role: 'user', content: `Question ${i}: what does rule ${i * 3} say about the fox?` }],
    }, signal)));
    const wall = (now() - t0) / 1000;
    const ok = results.filter((x) => x.ok), errors = results.filter((x) => !x.ok);
    const ttft = ok.map((x) => x.ttftMs), total = ok.map((x) => x.totalMs);
    const sum = (f: (x: ClientResult) => number): number => ok.reduce((s, x) => s + f(x), 0);
    const tokens = sum((x) => x.completion), promptTok = sum((x) => x.prompt), hitTok = sum((x) => x.hit);
    say(`### Load: ${clients} concurrent streaming chat clients, shared ~${P}-token system prompt, max_tokens ${maxTokens}\n`);
    say('| metric | value |\n|---|---|');
    say(`| requests ok / errors | ${ok.length} / ${errors.length} |`);
    say(`| time to first token min / p50 / p99 | ${ms(Math.min(...ttft))} / ${ms(pct(ttft, 50))} / ${ms(pct(ttft, 99))} ms |`);
    say(`| total latency p50 / p99 | ${ms(pct(total, 50))} / ${ms(pct(total, 99))} ms |`);
    say(`| wall time | ${wall.toFixed(2)} s |`);
    say(`| completion tokens, tokens/s overall | ${tokens}, ${(tokens / wall).toFixed(1)} |`);
    say(`| prompt tokens per request (mean) | ${(promptTok / Math.max(1, ok.length)).toFixed(0)} |`);
    say(`| cache hit share (hit / prompt tokens) | ${(100 * hitTok / Math.max(1, promptTok)).toFixed(1)}% (${hitTok} / ${promptTok}) |`);
    if (errors.length) say(`\nfirst error: ${errors[0]!.error}`);
    say(`\nUp to ${maxBatch} requests are decoded together (continuous batching); the rest wait for a slot.\n`);
    const alone = await streamChat(srv.url, { model: 'bench', max_tokens: maxTokens, temperature: 0.8, seed: 1, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'system', content: system }, { role: 'user', content: 'One more question, alone: what about the dog?' }] }, signal);
    if (alone.ok) say(`One request alone afterwards (same system prompt, ${alone.hit}/${alone.prompt} prompt tokens cached): TTFT ${ms(alone.ttftMs)} ms, total ${ms(alone.totalMs)} ms for ${alone.completion} tokens.\n`);
    const health = await (await fetch(`${srv.url}/health`)).json() as { prefix_cache: { bytes: number; tokens: number } | null };

    // 3. Decode tokens/s at batch 1.
    const promptLen = Math.min(128, ctx - (a['decode-tokens'] as number) - 2);
    const d = decodeBench(model, vocab, promptLen, a['decode-tokens'] as number);
    say(`### Decode, batch 1, prompt ${promptLen} (engine, greedy)\n`);
    say('| decoding | tokens/s |\n|---|---|');
    say(`| latent KV cache (MLA absorb), ${a['decode-tokens']} tokens | ${d.cached.toFixed(1)} |`);
    say(`| recomputing the whole sequence per token, ${d.nRecompute} tokens | ${d.recompute.toFixed(1)} |`);
    say(`\nlatent cache is ${(d.cached / d.recompute).toFixed(0)}x faster; recomputed tokens ${d.same ? 'equal' : 'DIFFER from'} the cached decode's (greedy)\n`);

    // 4. Memory per cached token.
    say('### KV memory per cached token (BF16 values; from the config)\n');
    say('| model | values/token/layer | MLA latent bytes/token | MHA K+V bytes/token | MHA / MLA |\n|---|---|---|---|---|');
    say(kvRows(cfg, own ? 'served (tiny reference)' : 'served model'));
    for (const n of ['deepseek-v2-lite', 'deepseek-v3']) if (presets[n]) say(kvRows(presets[n]!, n));
    const pc = health.prefix_cache;
    if (pc && pc.tokens > 0) say(`\nMeasured in the server's prefix cache after the runs (f32 rows): ${pc.bytes.toLocaleString('en-US')} bytes for ${pc.tokens.toLocaleString('en-US')} tokens = ${(pc.bytes / pc.tokens).toFixed(0)} bytes/token (expected 4 x ${latentRowWidth(cfg)} = ${4 * latentRowWidth(cfg)}).`);
    say(`\nload average at end: ${loadavg().map((x) => x.toFixed(2)).join(', ')}; total ${((now() - t0) / 1000).toFixed(1)} s after the cold/warm runs`);
    if (a.write) writeFileSync(a.write as string, out.join('\n') + '\n');
    return errors.length === 0 ? 0 : 1;
  } finally {
    if (close) await close();
    if (own) rmSync(dir, { recursive: true, force: true });
    clearTimeout(watchdog);
    await disposeBackends();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('serve-load.ts')) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    console.error(`serve-load: ${(e as Error)?.message ?? String(e)}`);
    process.exit(1);
  });
}
