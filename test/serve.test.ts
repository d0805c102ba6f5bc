// The OpenAI-compatible server over real HTTP on 127.0.0.1 (ephemeral ports), serving the golden
// tiny DeepSeek-V3 with a small BPE tokenizer trained here: health, models, completions, chat with
// SSE streaming and usage, prefix-cache hits on a repeated prompt, disk-cache reuse across a
// restart, tokenize/detokenize, API keys, and every bad-input case (the server keeps serving).
// Every answer's text and token counts are compared with the engine's own generate + decode
// (test/serve-oracle.ts). Tests that count cache hits get a server of their own, and the
// cancellation and queue tests hold the engine with the `beforeStep` hook instead of racing it.
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
import { DiskCache } from '../src/infer/disk-cache-node.js';
import { latentRowWidth } from '../src/infer/prefix-cache.js';
import { expected, assertAnswer, chatPrompt, CHAT_STOPS } from './serve-oracle.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(REF);
let tmp = '';
let base: Omit<ServerOptions, 'modelName'>;
let srv: RunningServer;

const corpus = ['The quick brown fox jumps over the lazy dog. Congress shall make no law. In the beginning there were tokens.\n'.repeat(30)];
const post = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

before(async () => {
  if (skip) return;
  tmp = mkdtempSync(path.join(tmpdir(), 'frugal-serve-'));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(REF, f), path.join(tmp, f));
  writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(trainBpe(corpus, { vocabSize: 400 })));
  base = { model: await loadModel(tmp), tokenizer: await loadTokenizer(tmp), port: 0, log: (m) => { if (process.env.FRUGAL_DEBUG) console.error(m); } };
  srv = await startServer({ ...base, modelName: 'tiny' });
});
after(async () => {
  if (srv) await srv.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A server of a test's own (fresh caches), closed after fn. */
async function withServer<T>(extra: Partial<ServerOptions>, fn: (s: RunningServer) => Promise<T>): Promise<T> {
  const s = await startServer({ ...base, modelName: 'tiny', ...extra });
  try { return await fn(s); } finally { await s.close(); }
}
const enc = (text: string): number[] => base.tokenizer.encode(text);
const encChat = (messages: Array<{ role: string; content: string }>): number[] => base.tokenizer.encode(chatPrompt(messages), { addSpecialTokens: false });

/** Parses an SSE body into its data payloads. */
async function sse(res: Response): Promise<string[]> {
  const text = await res.text();
  return text.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
}

test('health and models', { skip }, async () => {
  const h = await fetch(`${srv.url}/health`);
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, 'ok');
  const m = await (await fetch(`${srv.url}/v1/models`)).json();
  assert.equal(m.object, 'list');
  assert.deepEqual(m.data.map((x: { id: string }) => x.id), ['tiny']);
  assert.ok(srv.url.startsWith('http://127.0.0.1:'));
});

test('completions: the engine\'s greedy text and token counts, then the same from the prefix cache', { skip }, () => withServer({}, async (s) => {
  const prompt = 'The quick brown fox jumps over the lazy dog and the';
  const body = { model: 'tiny', prompt, max_tokens: 24, temperature: 0 };
  const want = expected(base.model, base.tokenizer, enc(prompt), 24, { greedy: true });
  assert.ok(want.text.length > 0, 'the oracle produced text to compare');
  const r1 = await post(`${s.url}/v1/completions`, body);
  assert.equal(r1.status, 200);
  const j1 = await r1.json();
  assert.equal(j1.object, 'text_completion');
  assertAnswer('uncached', { text: j1.choices[0].text, finish: j1.choices[0].finish_reason, usage: j1.usage }, want);
  const u1 = j1.usage;
  assert.equal(u1.prompt_cache_hit_tokens + u1.prompt_cache_miss_tokens, u1.prompt_tokens);
  assert.equal(u1.prompt_cache_hit_tokens, 0, 'a fresh server has nothing cached');
  const j2 = await (await post(`${s.url}/v1/completions`, body)).json();
  assertAnswer('cached', { text: j2.choices[0].text, finish: j2.choices[0].finish_reason, usage: j2.usage }, want);
  assert.equal(j2.usage.prompt_cache_hit_tokens, u1.prompt_tokens - 1, 'all but the last prompt token reused');
  assert.equal(j2.usage.prompt_tokens_details.cached_tokens, j2.usage.prompt_cache_hit_tokens);
  assert.equal(j2.usage.prompt_cache_miss_tokens, 1);
  // Streaming, from the cache: the deltas join to the same text.
  const events = await sse(await post(`${s.url}/v1/completions`, { ...body, stream: true, stream_options: { include_usage: true } }));
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const usage = chunks.pop().usage;
  assertAnswer('streamed', { text: chunks.map((c) => c.choices[0].text).join(''), finish: chunks[chunks.length - 1].choices[0].finish_reason, usage }, want);
}));

test('completions: token-id prompts, seeded sampling and stop strings give the engine\'s answer', { skip }, async () => {
  const ids = await (await post(`${srv.url}/tokenize`, { prompt: 'lazy dog' })).json();
  assert.equal(ids.count, ids.tokens.length);
  assert.deepEqual(ids.tokens, enc('lazy dog'));
  assert.equal((await (await post(`${srv.url}/detokenize`, { tokens: ids.tokens })).json()).prompt, 'lazy dog');
  const byIds = await (await post(`${srv.url}/v1/completions`, { prompt: ids.tokens, max_tokens: 8, temperature: 0 })).json();
  const wantIds = expected(base.model, base.tokenizer, ids.tokens, 8, { greedy: true });
  assertAnswer('token ids', { text: byIds.choices[0].text, finish: byIds.choices[0].finish_reason, usage: byIds.usage }, wantIds);
  // Seeded sampling: the same draws as the engine's with that seed, streamed or not.
  const prompt = 'Congress shall make no law';
  const wantS = expected(base.model, base.tokenizer, enc(prompt), 20, { temperature: 0.9, topP: 0.95, seed: 11 });
  const body = { prompt, max_tokens: 20, temperature: 0.9, top_p: 0.95, seed: 11 };
  const plain = await (await post(`${srv.url}/v1/completions`, body)).json();
  assertAnswer('seeded', { text: plain.choices[0].text, finish: plain.choices[0].finish_reason, usage: plain.usage }, wantS);
  const ev = (await sse(await post(`${srv.url}/v1/completions`, { ...body, stream: true }))).slice(0, -1).map((e) => JSON.parse(e));
  assertAnswer('seeded, streamed', { text: ev.map((c) => c.choices[0].text).join(''), finish: ev[ev.length - 1].choices[0].finish_reason }, wantS);
  // A stop string cut out of the greedy text ends the answer before it.
  const full = expected(base.model, base.tokenizer, enc(prompt), 24, { greedy: true });
  const stop = /[a-z]{2}/.exec(full.text.slice(3))?.[0] ?? '';
  assert.equal(stop.length, 2, `the greedy text has letters to cut a stop string from (${JSON.stringify(full.text)})`);
  const wantStop = expected(base.model, base.tokenizer, enc(prompt), 24, { greedy: true }, [stop]);
  assert.equal(wantStop.finish, 'stop');
  const cut = await (await post(`${srv.url}/v1/completions`, { prompt, max_tokens: 24, temperature: 0, stop })).json();
  assertAnswer('stop string', { text: cut.choices[0].text, finish: cut.choices[0].finish_reason, usage: cut.usage }, wantStop);
});

test('chat: the engine\'s greedy reply over the default template, streamed (with include_usage) and not', { skip }, () => withServer({}, async (s) => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the fox.' }];
  const want = expected(base.model, base.tokenizer, encChat(messages), 16, { greedy: true }, CHAT_STOPS);
  const plain = await (await post(`${s.url}/v1/chat/completions`, { model: 'tiny', messages, max_tokens: 16, temperature: 0 })).json();
  assert.equal(plain.object, 'chat.completion');
  assert.equal(plain.choices[0].message.role, 'assistant');
  assertAnswer('chat', { text: plain.choices[0].message.content, finish: plain.choices[0].finish_reason, usage: plain.usage }, want);
  assert.equal(plain.usage.prompt_cache_hit_tokens, 0);
  const res = await post(`${s.url}/v1/chat/completions`, { model: 'tiny', messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events = await sse(res);
  assert.equal(events[events.length - 1], '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const usageChunk = chunks[chunks.length - 1];
  assert.deepEqual(usageChunk.choices, []);
  assert.equal(usageChunk.usage.prompt_cache_hit_tokens, want.promptTokens - 1, 'second identical chat hits the prefix cache');
  const finish = chunks[chunks.length - 2];
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assertAnswer('chat streamed', { text: content, finish: finish.choices[0].finish_reason, usage: usageChunk.usage }, want);
}));

test('bad requests get 4xx OpenAI errors and the server keeps serving', { skip }, async () => {
  const expectError = async (res: Response, status: number, re: RegExp): Promise<void> => {
    assert.equal(res.status, status);
    const j = await res.json();
    assert.equal(typeof j.error.message, 'string');
    assert.equal(typeof j.error.type, 'string');
    assert.match(j.error.message, re);
  };
  await expectError(await post(`${srv.url}/v1/chat/completions`, '{"messages": ['), 400, /malformed JSON/);
  assert.equal((await fetch(`${srv.url}/health`)).status, 200);
  await expectError(await post(`${srv.url}/v1/completions`, { prompt: 'x', max_tokens: 'five' }), 400, /max_tokens/);
  await expectError(await post(`${srv.url}/v1/completions`, { prompt: 'x', bogus: 1 }), 400, /unknown field 'bogus'/);
  await expectError(await post(`${srv.url}/v1/chat/completions`, { messages: [{ role: 'wizard', content: 'x' }] }), 400, /role/);
  await expectError(await post(`${srv.url}/v1/completions`, { model: 'gpt-4', prompt: 'x' }), 404, /gpt-4/);
  await expectError(await post(`${srv.url}/v1/completions`, { prompt: 'x'.repeat(2 << 20) }), 413, /limit/);
  await expectError(await post(`${srv.url}/v1/completions`, { prompt: new Array(300).fill(5) }), 400, /context/);
  await expectError(await post(`${srv.url}/v1/completions`, { prompt: [1, 9999] }), 400, /vocabulary/);
  await expectError(await fetch(`${srv.url}/v2/nothing`), 404, /no route/);
  await expectError(await fetch(`${srv.url}/v1/completions`), 405, /not allowed/);
  const ok = await post(`${srv.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 });
  assert.equal(ok.status, 200);
});

test('a client that disconnects mid-stream frees the server', { skip }, async () => {
  // The engine is held after the first token until the server has seen the client go, so the
  // generation cannot finish (or hit EOS) before the abort: no race.
  const prompt = 'The fox';
  assert.ok(expected(base.model, base.tokenizer, enc(prompt), 3, { greedy: true }).completionTokens > 1, 'the prompt does not end at once');
  let holding = true; // only the first request is held
  const hold = async (job: StepInfo): Promise<void> => {
    const t0 = Date.now();
    while (holding && job.tokens >= 1 && !job.cancelled && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 2));
    if (job.cancelled) holding = false;
  };
  await withServer({ beforeStep: hold }, async (s) => {
    const ac = new AbortController();
    // Headers arrive once the generation exists; the engine then cannot pass its first token.
    await fetch(`${s.url}/v1/completions`, { method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt, max_tokens: 200, stream: true, temperature: 0 }) });
    ac.abort();
    const t0 = Date.now();
    let h = await (await fetch(`${s.url}/health`)).json();
    while (h.requests.cancelled === 0 && Date.now() - t0 < 20_000) { await new Promise((r) => setTimeout(r, 5)); h = await (await fetch(`${s.url}/health`)).json(); }
    assert.equal(h.requests.cancelled, 1, 'the abandoned generation was cancelled, not run to the end');
    assert.equal(h.requests.completed, 0);
    const r = await (await post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2, temperature: 0 })).json();
    assertAnswer('after the cancel', { text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage }, expected(base.model, base.tokenizer, enc('The dog'), 2, { greedy: true }));
  });
});

test('a full queue answers 429 and frees up afterwards', { skip }, async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  // The first request runs one token, then waits at the gate: the queue is provably full.
  await withServer({ maxQueue: 1, beforeStep: (job) => (job.tokens >= 1 ? gate : undefined) }, async (s) => {
    const first = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The fox', max_tokens: 30, stream: true, temperature: 0 }) });
    const reader = first.body!.getReader();
    // The first request holds its place (running, at the gate) until release().
    assert.equal((await (await fetch(`${s.url}/health`)).json()).queued, 1);
    const busy = await post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 });
    assert.equal(busy.status, 429);
    assert.equal((await busy.json()).error.code, 'queue_full');
    release();
    let rest = '';
    for (;;) { const { done, value } = await reader.read(); if (done) break; rest += Buffer.from(value).toString(); }
    assert.match(rest, /data: \[DONE\]\n\n$/);
    assert.equal((await post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 })).status, 200);
  });
});

test('API key: 401 without the bearer token, 200 with it', { skip }, async () => {
  const s = await startServer({ ...base, modelName: 'tiny', apiKey: 'sekret' });
  try {
    assert.equal((await fetch(`${s.url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${s.url}/v1/models`, { headers: { Authorization: 'Bearer wrong!' } })).status, 401);
    assert.equal((await fetch(`${s.url}/v1/models`, { headers: { Authorization: 'Bearer sekret' } })).status, 200);
  } finally { await s.close(); }
});

test('disk cache: a restarted server reuses 64-token units of a prompt', { skip }, async () => {
  const dir = path.join(tmp, 'kv');
  const W = latentRowWidth(base.model.cfg);
  const prompt = Array.from({ length: 80 }, (_, i) => (i * 13 + 7) % 400);
  const body = { prompt, max_tokens: 4, temperature: 0 };
  const s1 = await startServer({ ...base, modelName: 'tiny', diskCache: new DiskCache({ dir, modelId: 'tiny', rowWidth: W }) });
  const a = await (await post(`${s1.url}/v1/completions`, body)).json();
  await s1.close();
  assert.equal(a.usage.prompt_cache_hit_tokens, 0);
  const s2 = await startServer({ ...base, modelName: 'tiny', diskCache: new DiskCache({ dir, modelId: 'tiny', rowWidth: W }) });
  try {
    const b = await (await post(`${s2.url}/v1/completions`, body)).json();
    assert.equal(b.usage.prompt_cache_hit_tokens, 64);
    const want = expected(base.model, base.tokenizer, prompt, 4, { greedy: true });
    assertAnswer('before the restart', { text: a.choices[0].text, finish: a.choices[0].finish_reason, usage: a.usage }, want);
    assertAnswer('from the disk cache', { text: b.choices[0].text, finish: b.choices[0].finish_reason, usage: b.usage }, want);
  } finally { await s2.close(); }
});
