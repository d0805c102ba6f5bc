// `serve --speculative`: over real HTTP on 127.0.0.1 with the golden tiny DeepSeek-V3 (it has an
// MTP layer) and a small BPE tokenizer trained here. The server streams the same text with and
// without speculative decoding; a repeated prompt still hits the prefix cache (usage fields); the
// disk cache is reused across a restart; usage and /health report the MTP acceptance rate.
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
import { prefixRowWidth } from '../src/infer/prefix-cache.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(REF);
let tmp = '';
let base: Omit<ServerOptions, 'modelName'>;
const servers: RunningServer[] = [];

const corpus = ['The quick brown fox jumps over the lazy dog. Congress shall make no law. In the beginning there were tokens.\n'.repeat(30)];
const post = (url: string, body: unknown): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
const start = async (o: Partial<ServerOptions>): Promise<RunningServer> => {
  const s = await startServer({ ...base, modelName: 'tiny', ...o });
  servers.push(s);
  return s;
};

before(async () => {
  if (skip) return;
  tmp = mkdtempSync(path.join(tmpdir(), 'frugal-serve-spec-'));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(REF, f), path.join(tmp, f));
  writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(trainBpe(corpus, { vocabSize: 400 })));
  base = { model: await loadModel(tmp), tokenizer: await loadTokenizer(tmp), port: 0, log: (m) => { if (process.env.FRUGAL_DEBUG) console.error(m); } };
});
after(async () => {
  for (const s of servers) await s.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Streams a completion; returns the text and the final usage chunk. */
async function stream(url: string, prompt: string, maxTokens: number): Promise<{ text: string; usage: Record<string, any> }> {
  const res = await post(`${url}/v1/completions`, { model: 'tiny', prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } });
  assert.equal(res.status, 200);
  const data = (await res.text()).split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  assert.equal(data.at(-1), '[DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const text = chunks.map((c) => c.choices[0]?.text ?? '').join('');
  return { text, usage: chunks.at(-1).usage };
}

test('streams the same text with and without --speculative; cache hits and acceptance in usage and /health', { skip }, async () => {
  const plain = await start({});
  const spec = await start({ speculative: true });
  const prompt = 'The quick brown fox jumps over the lazy dog and the quick brown';
  const a = await stream(plain.url, prompt, 40);
  const b = await stream(spec.url, prompt, 40);
  assert.ok(a.text.length > 0);
  assert.equal(b.text, a.text);
  assert.equal(a.usage.speculative, undefined);
  const s = b.usage.speculative;
  assert.ok(s.proposed > 0 && s.accepted >= 0 && s.accepted <= s.proposed, JSON.stringify(s));
  assert.equal(s.acceptance_rate, s.accepted / s.proposed);
  assert.equal(b.usage.prompt_cache_hit_tokens, 0);
  // The repeated prompt reuses its cached prefix (all but the last token; with speculative decoding
  // one more is recomputed for the MTP layer's input) and still gives the same text.
  const b2 = await stream(spec.url, prompt, 40);
  assert.equal(b2.text, a.text);
  assert.equal(b2.usage.prompt_cache_hit_tokens, b2.usage.prompt_tokens - 2);
  assert.equal(b2.usage.prompt_cache_hit_tokens + b2.usage.prompt_cache_miss_tokens, b2.usage.prompt_tokens);
  const h = await (await fetch(`${spec.url}/health`)).json();
  assert.equal(h.speculative.proposed, s.proposed + b2.usage.speculative.proposed);
  assert.equal(h.speculative.accepted, s.accepted + b2.usage.speculative.accepted);
  assert.ok(h.prefix_cache.hits >= 1);
  assert.equal((await (await fetch(`${plain.url}/health`)).json()).speculative, null);
});

test('--speculative with the disk cache: a restarted server reuses the rows and gives the same text', { skip }, async () => {
  const dir = path.join(tmp, 'kv');
  const cfg = base.model.cfg;
  const disk = (): DiskCache => new DiskCache({ dir, modelId: 'tiny', rowWidth: prefixRowWidth(cfg, 1), log: () => {} });
  const long = 'In the beginning there were tokens. '.repeat(12);
  const plain = await start({ cacheBytes: 0 });
  const want = await stream(plain.url, long, 16);
  const s1 = await start({ speculative: true, cacheBytes: 0, diskCache: disk() });
  const r1 = await stream(s1.url, long, 16);
  assert.equal(r1.text, want.text);
  assert.equal(r1.usage.prompt_cache_hit_tokens, 0);
  await s1.close();
  const s2 = await start({ speculative: true, cacheBytes: 0, diskCache: disk() });
  const r2 = await stream(s2.url, long, 16);
  assert.equal(r2.text, want.text);
  assert.ok(r2.usage.prompt_tokens > 64, `${r2.usage.prompt_tokens} prompt tokens`);
  assert.equal(r2.usage.prompt_cache_hit_tokens, 63);
});
