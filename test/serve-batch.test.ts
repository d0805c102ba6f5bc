// Continuous batching through the HTTP server (golden tiny DeepSeek-V3, BPE tokenizer trained
// here): 16 concurrent requests decoded together give exactly the engine's lone answers (the
// oracle, test/serve-oracle.ts) and the answers the same requests get one at a time; a cancelled
// stream frees its batch slot and KV blocks at once (before the engine steps again); a request
// that finds the KV pool full is answered 503 kv_cache_full (or waits for blocks and then runs)
// while the server stays healthy; /metrics is Prometheus text. Timing never decides an outcome:
// the engine is held with the `beforeStep` hook.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { loadModel } from '../src/model/load-node.js';
import { startServer, type RunningServer, type ServerOptions, type StepInfo } from '../src/serve/server.js';
import { expected, assertAnswer, chatPrompt, CHAT_STOPS, type Expected } from './serve-oracle.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(REF);
let tmp = '';
let base: Omit<ServerOptions, 'modelName'>;
const corpus = ['The quick brown fox jumps over the lazy dog. Congress shall make no law. In the beginning there were tokens.\n'.repeat(30)];

before(async () => {
  if (skip) return;
  tmp = mkdtempSync(path.join(tmpdir(), 'frugal-serve-batch-'));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(REF, f), path.join(tmp, f));
  writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(trainBpe(corpus, { vocabSize: 400 })));
  base = { model: await loadModel(tmp), tokenizer: await loadTokenizer(tmp), port: 0, log: (m) => { if (process.env.FRUGAL_DEBUG) console.error(m); } };
});
after(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

async function withServer<T>(extra: Partial<ServerOptions>, fn: (s: RunningServer) => Promise<T>): Promise<T> {
  const s = await startServer({ ...base, modelName: 'tiny', ...extra });
  try { return await fn(s); } finally { await s.close(); }
}
const post = (url: string, body: unknown, signal?: AbortSignal): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });
const health = async (s: RunningServer): Promise<any> => (await fetch(`${s.url}/health`)).json(); // eslint-disable-line @typescript-eslint/no-explicit-any
/** Parses Prometheus text into name{labels} → value (and checks every sample has HELP and TYPE). */
async function metrics(s: RunningServer): Promise<Map<string, number>> {
  const res = await fetch(`${s.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>(), help = new Set<string>(), type = new Set<string>();
  for (const line of (await res.text()).split('\n')) {
    if (!line) continue;
    const m = /^# (HELP|TYPE) (\w+) (.+)$/.exec(line);
    if (m) { (m[1] === 'HELP' ? help : type).add(m[2]!); continue; }
    const v = /^(\w+)(\{[a-z_]+="[^"]+"\})? (-?[\d.e+-]+)$/.exec(line);
    assert.ok(v, `a Prometheus sample line: ${line}`);
    const family = v[1]!.replace(/_(bucket|sum|count)$/, '');
    assert.ok((help.has(v[1]!) && type.has(v[1]!)) || (help.has(family) && type.has(family)), `${v[1]} has HELP and TYPE lines`);
    out.set(v[1]! + (v[2] ?? ''), Number(v[3]));
  }
  return out;
}

/** Sends a request (streamed or not) and returns its text, finish reason and usage. */
async function ask(url: string, kind: 'chat' | 'completion', body: Record<string, unknown>): Promise<{ status: number; text: string; finish: string | null; usage: any }> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await post(`${url}/v1/${kind === 'chat' ? 'chat/completions' : 'completions'}`, body);
  if (res.status !== 200) return { status: res.status, text: await res.text(), finish: null, usage: null };
  if (!body.stream) {
    const j = await res.json();
    return { status: 200, text: kind === 'chat' ? j.choices[0].message.content : j.choices[0].text, finish: j.choices[0].finish_reason, usage: j.usage };
  }
  const events = (await res.text()).split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  assert.equal(events[events.length - 1], '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const usage = chunks[chunks.length - 1].usage ?? null;
  const withChoice = chunks.filter((c) => c.choices.length > 0);
  const text = withChoice.map((c) => (kind === 'chat' ? c.choices[0].delta.content ?? '' : c.choices[0].text)).join('');
  return { status: 200, text, finish: withChoice[withChoice.length - 1].choices[0].finish_reason, usage };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A `beforeStep` hook that holds the engine deterministically: no step runs until `n` requests
 * are queued (so a request cannot finish before the others arrive), then the step that admits
 * them runs, and once all `n` run (each past its first token) every step waits for release().
 * A cancelled request is never held. Bounded by 30 s so a broken server fails instead of hanging.
 */
function holder(n: number): { hook: (job: StepInfo) => Promise<void>; server: (s: RunningServer) => void; release: () => void } {
  let srv: RunningServer | null = null, armed = false, released = false;
  const hook = async (job: StepInfo): Promise<void> => {
    for (const t0 = Date.now(); !released && !job.cancelled && job.tokens >= 1 && Date.now() - t0 < 30_000; await sleep(2)) {
      const st = srv?.scheduler.stats();
      if (!st) continue;
      if (st.running >= n) armed = true;
      if (!armed && st.running + st.waiting >= n) return; // all arrived: this step admits them
    }
  };
  return { hook, server: (s) => { srv = s; }, release: () => { released = true; } };
}

interface Req { kind: 'chat' | 'completion'; body: Record<string, unknown>; want: Expected }

/** 16 varied requests: completions and chat, streamed or not, greedy or seeded sampling, stop strings. */
function requests16(): Req[] {
  const { model, tokenizer } = base;
  const texts = ['The quick brown fox', 'Congress shall', 'In the beginning', 'lazy dog jumps', 'there were tokens', 'The law', 'brown', 'fox and dog and law'];
  return Array.from({ length: 16 }, (_, i) => {
    const sampling = i % 3 === 0 ? { temperature: 0.9, top_p: 0.95, seed: 7 + i } : { temperature: 0 };
    const engine = i % 3 === 0 ? { temperature: 0.9, topP: 0.95, seed: 7 + i } : { greedy: true };
    const maxTokens = 6 + ((i * 5) % 19);
    const stream = i % 2 === 1 ? { stream: true, stream_options: { include_usage: true } } : {};
    if (i < 8) {
      const prompt = texts[i]!;
      return { kind: 'completion', body: { prompt, max_tokens: maxTokens, ...sampling, ...stream }, want: expected(model, tokenizer, tokenizer.encode(prompt), maxTokens, engine) };
    }
    const messages = [{ role: 'user', content: `${texts[i - 8]} ${i}` }];
    const ids = tokenizer.encode(chatPrompt(messages), { addSpecialTokens: false });
    return { kind: 'chat', body: { messages, max_tokens: maxTokens, ...sampling, ...stream }, want: expected(model, tokenizer, ids, maxTokens, engine, CHAT_STOPS) };
  });
}

test('16 concurrent requests decoded together give the oracle\'s answers and their one-at-a-time answers', { skip, timeout: 120_000 }, async () => {
  const reqs = requests16();
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  await withServer({ maxBatch: 16, beforeStep: () => gate }, async (s) => {
    try {
      const pending = reqs.map((q) => ask(s.url, q.kind, q.body));
      // Hold the engine until all 16 are in, so they are admitted and decoded together.
      for (let t0 = Date.now(); (await health(s)).queued < 16 && Date.now() - t0 < 30_000;) await new Promise((r) => setTimeout(r, 5));
      assert.equal((await health(s)).queued, 16, 'all 16 requests queued before the engine steps');
      release();
      const got = await Promise.all(pending);
      got.forEach((g, i) => { assert.equal(g.status, 200, g.text); assertAnswer(`concurrent request ${i}`, g, reqs[i]!.want); });
      const m = await metrics(s);
      assert.equal(m.get('frugal_batch_size_peak'), 16, 'the 16 requests were decoded in one step');
      assert.equal(m.get('frugal_requests_total{outcome="completed"}'), 16);
      assert.equal(m.get('frugal_time_to_first_token_seconds_count'), 16, 'a TTFT observation per request');
      assert.equal(m.get('frugal_time_to_first_token_seconds_bucket{le="+Inf"}'), 16);
      assert.equal(m.get('frugal_generation_tokens_total'), reqs.reduce((n, q) => n + q.want.completionTokens, 0));
      assert.ok((m.get('frugal_decode_passes_total') ?? 0) < (m.get('frugal_decode_rows_total') ?? 0), 'passes carried several rows');
      // The same requests one at a time (prefix cache warm now): the same answers.
      for (let i = 0; i < reqs.length; i++) assertAnswer(`request ${i} alone`, await ask(s.url, reqs[i]!.kind, reqs[i]!.body), reqs[i]!.want);
    } finally { release(); }
  });
});

test('a cancelled stream frees its batch slot and KV blocks before the engine steps again', { skip, timeout: 60_000 }, async () => {
  const h = holder(2);
  await withServer({ beforeStep: h.hook }, async (s) => {
    h.server(s);
    try {
      const acA = new AbortController();
      const a = await post(`${s.url}/v1/completions`, { prompt: 'The fox', max_tokens: 100, stream: true, temperature: 0 }, acA.signal);
      const b = post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 20, stream: true, temperature: 0, stream_options: { include_usage: true } });
      // Both run and are held after their first token.
      for (let t0 = Date.now(); (await health(s)).engine.running < 2 && Date.now() - t0 < 30_000;) await sleep(5);
      const m0 = await metrics(s);
      assert.equal(m0.get('frugal_requests_running'), 2);
      const reservedBoth = m0.get('frugal_kv_blocks{state="reserved"}')!;
      const allocatedBoth = m0.get('frugal_kv_blocks{state="allocated"}')!;
      acA.abort();
      let m = await metrics(s);
      for (let t0 = Date.now(); m.get('frugal_requests_running') !== 1 && Date.now() - t0 < 30_000; m = await metrics(s)) await sleep(5);
      assert.equal(m.get('frugal_requests_running'), 1, 'the cancelled stream left the batch');
      assert.equal(m.get('frugal_engine_steps_total'), m0.get('frugal_engine_steps_total'), 'no engine step ran in between: freed at once');
      assert.ok(m.get('frugal_kv_blocks{state="reserved"}')! < reservedBoth, 'its reservation was returned');
      assert.ok(m.get('frugal_kv_blocks{state="allocated"}')! < allocatedBoth, 'its blocks were returned');
      assert.equal(m.get('frugal_requests_total{outcome="cancelled"}'), 1);
      await a.body?.cancel().catch(() => undefined);
      h.release();
      const rb = await (await b).text();
      const text = rb.split('\n\n').filter((x) => x.startsWith('data: {')).map((x) => JSON.parse(x.slice(6))).filter((c) => c.choices.length).map((c) => c.choices[0].text).join('');
      assert.equal(text, expected(base.model, base.tokenizer, base.tokenizer.encode('The dog'), 20, { greedy: true }).text);
      const end = await metrics(s);
      assert.equal(end.get('frugal_kv_blocks{state="reserved"}'), 0);
      assert.equal(end.get('frugal_kv_blocks{state="allocated"}'), 0);
    } finally { h.release(); }
  });
});

test('a full KV pool answers 503 kv_cache_full (or the request waits for blocks) and the server stays healthy', { skip, timeout: 60_000 }, async () => {
  const { model, tokenizer } = base;
  const cfg = model.cfg;
  const rowBytes = 4 * cfg.numHiddenLayers * (cfg.kvLoraRank + cfg.qkRopeHeadDim);
  const ids = tokenizer.encode('The fox');
  const blocks = Math.ceil((ids.length + 40 + 2) / 16); // prompt + max_tokens 40 + 2, in blocks of 16
  const body = { prompt: 'The fox', max_tokens: 40, stream: true, temperature: 0 };
  const want = expected(model, tokenizer, ids, 40, { greedy: true });
  for (const waitMs of [0, 60_000]) {
    const h = holder(2);
    await withServer({ kvBytes: 2 * blocks * 16 * rowBytes, kvBlockTokens: 16, kvWaitMs: waitMs, beforeStep: h.hook }, async (s) => {
      h.server(s);
      try {
        assert.equal(s.kvPool.totalBlocks, 2 * blocks);
        const a = ask(s.url, 'completion', body), b = ask(s.url, 'completion', body);
        for (let t0 = Date.now(); (await health(s)).engine.running < 2 && Date.now() - t0 < 30_000;) await new Promise((r) => setTimeout(r, 5));
        const tooBig = await post(`${s.url}/v1/completions`, { prompt: 'The fox', max_tokens: 2 * blocks * 16 });
        assert.equal(tooBig.status, 400, 'larger than the whole pool: 400');
        assert.match((await tooBig.json()).error.message, /KV blocks; the pool has .*lower max_tokens/);
        const c = ask(s.url, 'completion', body);
        if (waitMs === 0) {
          const r = await post(`${s.url}/v1/completions`, body);
          assert.equal(r.status, 503);
          assert.equal(r.headers.get('retry-after'), '1');
          const j = await r.json();
          assert.equal(j.error.code, 'kv_cache_full');
          assert.equal((await c).status, 503);
          assert.equal((await fetch(`${s.url}/health`)).status, 200, 'the server stays healthy');
          assert.equal((await metrics(s)).get('frugal_requests_rejected_total{reason="kv_cache_full"}'), 2);
        } else {
          for (let t0 = Date.now(); (await health(s)).engine.waiting < 1 && Date.now() - t0 < 30_000;) await new Promise((r) => setTimeout(r, 5));
          assert.equal((await health(s)).engine.waiting, 1, 'the third request waits for blocks');
        }
        h.release();
        assertAnswer('first', await a, want);
        assertAnswer('second', await b, want);
        if (waitMs > 0) assertAnswer('waited for blocks', await c, want);
        const after = await ask(s.url, 'completion', body);
        assertAnswer('after the pressure', after, want);
        const hh = await health(s);
        assert.equal(hh.kv_cache.reserved_blocks, 0);
        assert.equal(hh.kv_cache.allocated_blocks, 0);
      } finally { h.release(); }
    });
  }
});

test('/metrics: Prometheus text of batch size, queue, tokens/s and cache use; behind the API key', { skip }, async () => {
  await withServer({ apiKey: 'sekret-0123456789abcdef' }, async (s) => {
    assert.equal((await fetch(`${s.url}/metrics`)).status, 401);
    assert.equal((await fetch(`${s.url}/health`)).status, 200);
    const r = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer sekret-0123456789abcdef' }, body: JSON.stringify({ prompt: 'The fox', max_tokens: 5, temperature: 0 }) });
    assert.equal(r.status, 200);
    const res = await fetch(`${s.url}/metrics`, { headers: { Authorization: 'Bearer sekret-0123456789abcdef' } });
    const text = await res.text();
    for (const name of ['frugal_requests_running', 'frugal_requests_waiting', 'frugal_batch_size', 'frugal_tokens_per_second', 'frugal_generation_tokens_total', 'frugal_kv_cache_usage_ratio', 'frugal_kv_blocks{state="free"}', 'frugal_prefix_cache_bytes']) {
      assert.match(text, new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} `, 'm'), `${name} reported`);
    }
    assert.match(text, /^frugal_generation_tokens_total 5$/m);
    assert.match(text, /^# TYPE frugal_generation_tokens_total counter$/m);
    assert.ok(Number(/^frugal_tokens_per_second (\S+)$/m.exec(text)![1]) > 0, 'tokens/s over the last window');
  });
});
