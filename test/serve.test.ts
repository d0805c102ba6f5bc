// The OpenAI-compatible server over real HTTP on 127.0.0.1 (ephemeral ports), serving the golden
// tiny DeepSeek-V3 with a small BPE tokenizer trained here: health, models, completions, chat with
// SSE streaming and usage, prefix-cache hits on a repeated prompt, disk-cache reuse across a
// restart, tokenize/detokenize, API keys, and every bad-input case (the server keeps serving).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { loadModel } from '../src/model/load-node.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/serve/server.js';
import { DiskCache } from '../src/infer/disk-cache-node.js';
import { latentRowWidth } from '../src/infer/prefix-cache.js';

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

test('completions: text, usage fields, and cache hits on a repeated prompt', { skip }, async () => {
  const body = { model: 'tiny', prompt: 'The quick brown fox jumps over the lazy dog and the', max_tokens: 6, temperature: 0 };
  const r1 = await post(`${srv.url}/v1/completions`, body);
  assert.equal(r1.status, 200);
  const j1 = await r1.json();
  assert.equal(j1.object, 'text_completion');
  assert.equal(typeof j1.choices[0].text, 'string');
  assert.ok(['stop', 'length'].includes(j1.choices[0].finish_reason));
  const u1 = j1.usage;
  assert.ok(u1.prompt_tokens > 5);
  assert.ok(u1.completion_tokens >= 1 && u1.completion_tokens <= 6);
  assert.equal(u1.total_tokens, u1.prompt_tokens + u1.completion_tokens);
  assert.equal(u1.prompt_cache_hit_tokens + u1.prompt_cache_miss_tokens, u1.prompt_tokens);
  assert.equal(u1.prompt_cache_hit_tokens, 0);
  const j2 = await (await post(`${srv.url}/v1/completions`, body)).json();
  assert.equal(j2.usage.prompt_cache_hit_tokens, u1.prompt_tokens - 1, 'all but the last prompt token reused');
  assert.equal(j2.usage.prompt_tokens_details.cached_tokens, j2.usage.prompt_cache_hit_tokens);
  assert.equal(j2.usage.prompt_cache_miss_tokens, 1);
  assert.equal(j2.choices[0].text, j1.choices[0].text, 'cached prefix gives the same greedy text');
  // Token-id prompts work too.
  const ids = await (await post(`${srv.url}/tokenize`, { prompt: 'lazy dog' })).json();
  assert.equal(ids.count, ids.tokens.length);
  assert.equal((await (await post(`${srv.url}/detokenize`, { tokens: ids.tokens })).json()).prompt, 'lazy dog');
  const r3 = await post(`${srv.url}/v1/completions`, { prompt: ids.tokens, max_tokens: 2, temperature: 0 });
  assert.equal(r3.status, 200);
});

test('chat: streaming SSE with include_usage equals the non-streamed answer', { skip }, async () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me about the fox.' }];
  const plain = await (await post(`${srv.url}/v1/chat/completions`, { model: 'tiny', messages, max_tokens: 12, temperature: 0 })).json();
  assert.equal(plain.object, 'chat.completion');
  assert.equal(plain.choices[0].message.role, 'assistant');
  const res = await post(`${srv.url}/v1/chat/completions`, { model: 'tiny', messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events = await sse(res);
  assert.equal(events[events.length - 1], '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.id === chunks[0].id));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const usageChunk = chunks[chunks.length - 1];
  assert.deepEqual(usageChunk.choices, []);
  assert.equal(usageChunk.usage.completion_tokens, plain.usage.completion_tokens);
  assert.ok(usageChunk.usage.prompt_cache_hit_tokens > 0, 'second identical chat hits the prefix cache');
  const finish = chunks[chunks.length - 2];
  assert.equal(finish.choices[0].finish_reason, plain.choices[0].finish_reason);
  const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  assert.equal(content, plain.choices[0].message.content);
});

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
  const ac = new AbortController();
  const res = await fetch(`${srv.url}/v1/completions`, { method: 'POST', signal: ac.signal, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The fox', max_tokens: 200, stream: true, temperature: 1, seed: 1 }) });
  const reader = res.body!.getReader();
  await reader.read();
  const before = (await (await fetch(`${srv.url}/health`)).json()).requests.cancelled;
  ac.abort();
  const r = await post(`${srv.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 });
  assert.equal(r.status, 200);
  const h = await (await fetch(`${srv.url}/health`)).json();
  assert.equal(h.requests.cancelled, before + 1, 'the abandoned generation was cancelled, not run to the end');
});

test('a full queue answers 429 and frees up afterwards', { skip }, async () => {
  const s = await startServer({ ...base, modelName: 'tiny', maxQueue: 1 });
  try {
    const first = await fetch(`${s.url}/v1/completions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt: 'The fox', max_tokens: 30, stream: true, temperature: 0 }) });
    const busy = await post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 });
    assert.equal(busy.status, 429);
    assert.equal((await busy.json()).error.code, 'queue_full');
    assert.equal((await sse(first)).pop(), '[DONE]');
    assert.equal((await post(`${s.url}/v1/completions`, { prompt: 'The dog', max_tokens: 2 })).status, 200);
  } finally { await s.close(); }
});

test('API key: 401 without the bearer token, 200 with it', { skip }, async () => {
  const s = await startServer({ ...base, modelName: 'tiny', apiKey: 'sekret-0123456789abcdef' });
  try {
    assert.equal((await fetch(`${s.url}/v1/models`)).status, 401);
    assert.equal((await fetch(`${s.url}/v1/models`, { headers: { Authorization: 'Bearer wrong!' } })).status, 401);
    assert.equal((await fetch(`${s.url}/v1/models`, { headers: { Authorization: 'Bearer sekret-0123456789abcdef' } })).status, 200);
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
    assert.equal(b.choices[0].text, a.choices[0].text);
  } finally { await s2.close(); }
});
