// The server with the official `openai` npm client (v5) as a real client over HTTP on 127.0.0.1:
// chat (non-streaming and streaming with include_usage), completions, models.list, usage fields with
// DeepSeek's prompt_cache_hit/miss_tokens and OpenAI's cached_tokens on a repeated prefix, a 404 for
// an unknown model and a 401 for a wrong API key, both surfacing as the client's typed errors.
// The model is the golden tiny DeepSeek-V3 with a small BPE tokenizer trained here (as in serve.test.ts).
// Texts and token counts are compared with the engine's own generate + decode (serve-oracle.ts);
// the tests that count cache hits run on a server of their own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, copyFileSync, writeFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import '../src/backend/index.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { loadModel } from '../src/model/load-node.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/serve/server.js';
import { expected, assertAnswer, chatPrompt, CHAT_STOPS } from './serve-oracle.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(REF);
let tmp = '';
let base: Omit<ServerOptions, 'modelName'>;
let srv: RunningServer;
let client: OpenAI;

const corpus = ['The quick brown fox jumps over the lazy dog. Congress shall make no law. In the beginning there were tokens.\n'.repeat(30)];
/** A client that never retries (so an error status reaches the test at once). */
const makeClient = (url: string, apiKey = 'k'): OpenAI => new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, timeout: 10_000 });

before(async () => {
  if (skip) return;
  tmp = mkdtempSync(path.join(tmpdir(), 'frugal-serve-openai-'));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(REF, f), path.join(tmp, f));
  writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(trainBpe(corpus, { vocabSize: 400 })));
  base = { model: await loadModel(tmp), tokenizer: await loadTokenizer(tmp), port: 0, log: (m) => { if (process.env.FRUGAL_DEBUG) console.error(m); } };
  srv = await startServer({ ...base, modelName: 'tiny' });
  client = makeClient(srv.url);
});
after(async () => {
  if (srv) await srv.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A server and client of a test's own (fresh caches), closed after fn. */
async function own<T>(fn: (c: OpenAI) => Promise<T>): Promise<T> {
  const s = await startServer({ ...base, modelName: 'tiny' });
  try { return await fn(makeClient(s.url)); } finally { await s.close(); }
}
const greedyChat = (messages: Array<{ role: string; content: string }>, max: number) =>
  expected(base.model, base.tokenizer, base.tokenizer.encode(chatPrompt(messages), { addSpecialTokens: false }), max, { greedy: true }, CHAT_STOPS);

/** DeepSeek's and OpenAI's cache fields, which the SDK types do not name. */
interface CacheUsage { prompt_tokens: number; completion_tokens: number; total_tokens: number; prompt_cache_hit_tokens: number; prompt_cache_miss_tokens: number; prompt_tokens_details?: { cached_tokens?: number } }
const checkUsage = (u: CacheUsage | undefined | null, maxCompletion: number): CacheUsage => {
  assert.ok(u, 'usage is present');
  assert.ok(u.prompt_tokens > 0);
  assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= maxCompletion, `completion_tokens ${u.completion_tokens}`);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens, u.prompt_tokens, 'hit + miss = prompt_tokens');
  assert.equal(u.prompt_tokens_details?.cached_tokens, u.prompt_cache_hit_tokens);
  return u;
};

test('models.list names the served model', { skip }, async () => {
  const ids: string[] = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['tiny']);
});

test('chat: non-streaming, then streaming with include_usage, the engine\'s greedy answer and a cache hit', { skip }, () => own(async (client) => {
  const messages = [
    { role: 'system' as const, content: 'You answer briefly about foxes and dogs.' },
    { role: 'user' as const, content: 'What does the quick brown fox do?' },
  ];
  const plain = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0 });
  assert.equal(plain.object, 'chat.completion');
  assert.equal(plain.model, 'tiny');
  assert.equal(plain.choices.length, 1);
  const choice = plain.choices[0]!;
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  assert.ok(choice.finish_reason === 'stop' || choice.finish_reason === 'length');
  const u1 = checkUsage(plain.usage as CacheUsage | undefined, 10);
  const want = greedyChat(messages, 10);
  assertAnswer('chat', { text: choice.message.content ?? '', finish: choice.finish_reason, usage: u1 }, want);
  assert.equal(u1.prompt_cache_hit_tokens, 0, 'a fresh server has nothing cached');

  const stream = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let content = '', role: string | undefined, finish: string | null = null, chunks = 0;
  let final: CacheUsage | null = null;
  const ids = new Set<string>();
  for await (const c of stream) {
    chunks++;
    ids.add(c.id);
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.usage) { assert.deepEqual(c.choices, [], 'the usage chunk has no choices'); final = c.usage as unknown as CacheUsage; continue; }
    const d = c.choices[0]!;
    role ??= d.delta.role ?? undefined;
    content += d.delta.content ?? '';
    if (d.finish_reason) finish = d.finish_reason;
  }
  assert.ok(chunks >= 3, `role, content and finish chunks (got ${chunks})`);
  assert.equal(ids.size, 1, 'every chunk shares one id');
  assert.equal(role, 'assistant');
  assert.equal(content, choice.message.content, 'streamed deltas join to the non-streamed content');
  assert.equal(finish, choice.finish_reason);
  const u2 = checkUsage(final, 10);
  assert.equal(u2.prompt_tokens, u1.prompt_tokens);
  assert.equal(u2.completion_tokens, u1.completion_tokens);
  assert.equal(u2.prompt_cache_hit_tokens, u2.prompt_tokens - 1, 'the repeated prompt is served from the cache but its last token');
  assert.equal(u2.prompt_cache_miss_tokens, 1);
  assertAnswer('chat streamed', { text: content, finish, usage: u2 }, want);
}));

test('chat: a shared system prompt is a cached prefix for a different question', { skip }, () => own(async (client) => {
  const system = { role: 'system' as const, content: 'Congress shall make no law. In the beginning there were tokens. The lazy dog sleeps.' };
  const a = await client.chat.completions.create({ model: 'tiny', messages: [system, { role: 'user', content: 'Who jumps?' }], max_tokens: 3, temperature: 0 });
  const b = await client.chat.completions.create({ model: 'tiny', messages: [system, { role: 'user', content: 'What sleeps today?' }], max_tokens: 3, temperature: 0 });
  const ua = checkUsage(a.usage as CacheUsage | undefined, 3), ub = checkUsage(b.usage as CacheUsage | undefined, 3);
  const sysTokens = base.tokenizer.encode(`<|system|>\n${system.content}\n<|user|>\n`, { addSpecialTokens: false }).length;
  assert.ok(ub.prompt_cache_hit_tokens >= sysTokens - 2, `hit ${ub.prompt_cache_hit_tokens} covers the ~${sysTokens}-token shared prefix`);
  assert.ok(ub.prompt_cache_hit_tokens < ub.prompt_tokens - 1, 'the new question is computed, not cached');
  assert.equal(ua.prompt_cache_hit_tokens, 0, 'the first request had nothing cached');
  assertAnswer('first question', { text: a.choices[0]!.message.content ?? '', finish: a.choices[0]!.finish_reason, usage: ua }, greedyChat([system, { role: 'user', content: 'Who jumps?' }], 3));
  assertAnswer('second question, from a cached prefix', { text: b.choices[0]!.message.content ?? '', finish: b.choices[0]!.finish_reason, usage: ub }, greedyChat([system, { role: 'user', content: 'What sleeps today?' }], 3));
}));

test('completions: the engine\'s text and usage, then streamed from the cache', { skip }, () => own(async (client) => {
  const prompt = 'The quick brown fox jumps over the lazy dog and the';
  const r = await client.completions.create({ model: 'tiny', prompt, max_tokens: 5, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0]!.text, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0]!.finish_reason));
  const want = expected(base.model, base.tokenizer, base.tokenizer.encode(prompt), 5, { greedy: true });
  assertAnswer('completion', { text: r.choices[0]!.text, finish: r.choices[0]!.finish_reason, usage: checkUsage(r.usage as CacheUsage | undefined, 5) }, want);
  const s = await client.completions.create({ model: 'tiny', prompt, max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let u: CacheUsage | null = null;
  for await (const c of s) { if (c.usage) u = c.usage as unknown as CacheUsage; text += c.choices[0]?.text ?? ''; }
  assertAnswer('completion streamed', { text, finish: r.choices[0]!.finish_reason, usage: checkUsage(u, 5) }, want);
  assert.equal(u!.prompt_cache_hit_tokens, want.promptTokens - 1, 'the repeated prompt is served from the cache but its last token');
}));

test('unknown model: the client throws NotFoundError (404) naming it', { skip }, async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, `an APIError, got ${String(e)}`);
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.status, 404);
      assert.match(e.message, /gpt-4o/);
      return true;
    },
  );
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: 'x', max_tokens: 1, n: 2 }), (e: unknown) => e instanceof OpenAI.BadRequestError && e.status === 400);
  // The server keeps serving.
  const ok = await client.completions.create({ model: 'tiny', prompt: 'The dog', max_tokens: 1 });
  assert.equal(ok.choices.length, 1);
});

test('API key: a wrong key is AuthenticationError (401), the right one works', { skip }, async () => {
  const s = await startServer({ ...base, modelName: 'tiny', apiKey: 'sekret' });
  try {
    await assert.rejects(makeClient(s.url, 'wrong').models.list(), (e: unknown) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, `an AuthenticationError, got ${String(e)}`);
      assert.equal(e.status, 401);
      return true;
    });
    const good = makeClient(s.url, 'sekret');
    const page = await good.models.list();
    assert.deepEqual(page.data.map((m) => m.id), ['tiny']);
    const r = await good.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'fox' }], max_tokens: 2 });
    assert.equal(r.choices[0]!.message.role, 'assistant');
  } finally { await s.close(); }
});
