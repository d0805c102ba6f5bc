// Generation on the golden tiny DeepSeek-V3: greedy equals the reference continuation; output is
// identical with and without the prefix cache, and with and without MTP speculative decoding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import '../backend/index.js';
import { loadModel } from '../model/load-node.js';
import { generate, allLogits, Generation } from './generate.js';
import { PrefixCache, latentRowWidth } from './prefix-cache.js';
import { DiskCache } from './disk-cache-node.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const DIR = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(DIR);

test('greedy generation matches the reference continuation; speculative and cached runs match it', { skip }, async () => {
  const model = await loadModel(DIR);
  const v = JSON.parse(readFileSync(path.join(DIR, 'vectors.json'), 'utf8'));
  const g = v.greedy as { prompt: number[]; max_new_tokens: number; new_tokens: number[] };
  const plain = generate(model, g.prompt, { greedy: true, maxTokens: g.max_new_tokens });
  assert.deepEqual(plain.tokens, g.new_tokens);
  assert.equal(plain.finishReason, 'length');
  const spec = generate(model, g.prompt, { greedy: true, maxTokens: g.max_new_tokens, speculative: true });
  assert.deepEqual(spec.tokens, g.new_tokens);
  assert.ok(spec.speculative && spec.speculative.proposed > 0, 'speculative stats reported');

  // A longer run, so drafts are both accepted and rejected.
  const prompt = [5, 17, 42, 99, 3, 250, 7, 7, 301, 12];
  const a = generate(model, prompt, { greedy: true, maxTokens: 40 });
  const b = generate(model, prompt, { greedy: true, maxTokens: 40, speculative: true });
  assert.deepEqual(b.tokens, a.tokens);
  assert.ok(b.speculative!.proposed < 40, 'speculation saved main-model steps');
  // Seeded speculative sampling is reproducible (its distribution: speculative.test.ts).
  const s1 = generate(model, prompt, { temperature: 0.9, topK: 50, topP: 0.95, seed: 7, maxTokens: 30, speculative: true });
  const s2 = generate(model, prompt, { temperature: 0.9, topK: 50, topP: 0.95, seed: 7, maxTokens: 30, speculative: true });
  assert.deepEqual(s2.tokens, s1.tokens);

  // Prefix cache: the second request reuses all but the last prompt token; same output.
  const pc = new PrefixCache(latentRowWidth(model.cfg), 1 << 24);
  const c1 = generate(model, prompt, { greedy: true, maxTokens: 20, prefixCache: pc });
  assert.equal(c1.cachedTokens, 0);
  const c2 = generate(model, prompt, { greedy: true, maxTokens: 20, prefixCache: pc });
  assert.equal(c2.cachedTokens, prompt.length - 1);
  assert.deepEqual(c1.tokens, a.tokens.slice(0, 20));
  assert.deepEqual(c2.tokens, c1.tokens);
  // A prompt sharing 6 tokens then diverging gets a 6-token hit and the uncached answer.
  const other = [...prompt.slice(0, 6), 88, 89, 90];
  const c3 = generate(model, other, { greedy: true, maxTokens: 12, prefixCache: pc });
  assert.equal(c3.cachedTokens, 6);
  assert.deepEqual(c3.tokens, generate(model, other, { greedy: true, maxTokens: 12 }).tokens);
});

test('stop ids, onToken stop, max tokens and bad input', { skip }, async () => {
  const model = await loadModel(DIR);
  const prompt = [5, 17, 42];
  const ref = generate(model, prompt, { greedy: true, maxTokens: 10 }).tokens;
  const r = generate(model, prompt, { greedy: true, maxTokens: 10, stopTokenIds: [ref[3]!] });
  assert.equal(r.finishReason, 'stop');
  assert.deepEqual(r.tokens, ref.slice(0, ref.indexOf(ref[3]!) + 1));
  const seen: number[] = [];
  const g = new Generation(model, prompt, { greedy: true, maxTokens: 10, onToken: (id) => { seen.push(id); return seen.length === 2; } });
  while (!g.done) g.step();
  assert.deepEqual(seen, ref.slice(0, 2));
  assert.equal(g.result().finishReason, 'stop');
  assert.throws(() => generate(model, [1, 600], {}), /outside the vocabulary/);
  assert.throws(() => generate(model, new Array(model.cfg.maxPositionEmbeddings).fill(1), {}), /context/);
  // Context caps max tokens.
  const long = generate(model, new Array(model.cfg.maxPositionEmbeddings - 3).fill(2), { greedy: true, maxTokens: 50 });
  assert.equal(long.tokens.length, 3);
  assert.equal(long.finishReason, 'length');
});

test('allLogits: batched and incremental agree with the reference', { skip }, async () => {
  const model = await loadModel(DIR);
  const v = JSON.parse(readFileSync(path.join(DIR, 'vectors.json'), 'utf8'));
  const s = v.sequences[0];
  for (const incremental of [false, true]) {
    const rows = allLogits(model, s.tokens, { incremental });
    const want = (incremental ? s.logits_decode_absorb : s.logits_full_absorb).data as number[];
    let d = 0;
    rows.flat().forEach((x, i) => { d = Math.max(d, Math.abs(x - want[i]!)); });
    assert.ok(d < 1e-4, `max |Δ| ${d}`);
  }
});

test('disk cache: a fresh process-level cache reuses 64-token units with identical output', { skip }, async () => {
  const model = await loadModel(DIR);
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-gen-dc-'));
  try {
    const prompt = Array.from({ length: 70 }, (_, i) => (i * 37 + 11) % 512);
    const W = latentRowWidth(model.cfg);
    const want = generate(model, prompt, { greedy: true, maxTokens: 8 }).tokens;
    const first = generate(model, prompt, { greedy: true, maxTokens: 8, prefixStore: new DiskCache({ dir, modelId: 'x', rowWidth: W }) });
    assert.equal(first.cachedTokens, 0);
    // "Restart": new in-memory cache, new DiskCache object on the same folder.
    const again = generate(model, prompt, { greedy: true, maxTokens: 8, prefixCache: new PrefixCache(W, 1 << 24), prefixStore: new DiskCache({ dir, modelId: 'x', rowWidth: W }) });
    assert.equal(again.cachedTokens, 64);
    assert.equal(again.storeTokens, 64);
    assert.deepEqual(first.tokens, want);
    assert.deepEqual(again.tokens, want);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
