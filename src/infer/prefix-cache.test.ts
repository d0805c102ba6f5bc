// Radix tree prefix cache: longest-prefix match, insert with edge splits, LRU eviction under a
// byte budget, and reference counts that protect pinned paths (also across splits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrefixCache } from './prefix-cache.js';

/** Rows whose value encodes (position, token) so a wrong copy is visible. */
const rowsOf = (tokens: number[], W: number) => (a: number, b: number): Float32Array => {
  const out = new Float32Array((b - a) * W);
  for (let t = a; t < b; t++) for (let j = 0; j < W; j++) out[(t - a) * W + j] = t * 1000 + tokens[t]! + j / 10;
  return out;
};

test('match returns the longest prefix with the right rows; insert splits edges', () => {
  const W = 3;
  const pc = new PrefixCache(W, 1 << 20);
  const a = [1, 2, 3, 4, 5];
  pc.insert(a, rowsOf(a, W));
  let h = pc.match([1, 2, 3, 9]);
  assert.equal(h.length, 3);
  assert.deepEqual(Array.from(h.rows), Array.from(rowsOf(a, W)(0, 3)));
  pc.release(h);
  const b = [1, 2, 7, 8];
  let asked: [number, number] | null = null;
  pc.insert(b, (x, y) => { asked = [x, y]; return rowsOf(b, W)(x, y); });
  assert.deepEqual(asked, [2, 4], 'only the uncached suffix is computed');
  assert.deepEqual(pc.paths().sort(), [[1, 2, 3, 4, 5], [1, 2, 7, 8]]);
  h = pc.match(b);
  assert.equal(h.length, 4);
  assert.deepEqual(Array.from(h.rows), Array.from(rowsOf(b, W)(0, 4)));
  pc.release(h);
  assert.equal(pc.match([9, 1]).length, 0);
  assert.equal(pc.match(a, 2).length, 2, 'maxLen caps the match');
  assert.equal(pc.stats().tokens, 7);
});

test('eviction drops least-recently-used unreferenced leaves under the budget', () => {
  const W = 2; // 8 bytes per token
  const pc = new PrefixCache(W, 8 * 10);
  const a = [1, 1, 1, 1], b = [2, 2, 2, 2], c = [3, 3, 3, 3];
  pc.insert(a, rowsOf(a, W));
  pc.insert(b, rowsOf(b, W));
  pc.release(pc.match(a)); // a is now more recent than b
  pc.insert(c, rowsOf(c, W)); // 12 tokens > 10: evict the LRU leaf (b)
  assert.deepEqual(pc.paths().sort(), [a, c]);
  assert.ok(pc.stats().bytes <= 80);
  assert.equal(pc.stats().evictions, 1);
});

test('a pinned path survives eviction, also after its node is split', () => {
  const W = 1;
  const pc = new PrefixCache(W, 4 * 6);
  const a = [1, 2, 3, 4, 5];
  pc.insert(a, rowsOf(a, W));
  const h = pc.match(a); // pins [1..5]
  pc.insert([1, 2, 9], rowsOf([1, 2, 9], W)); // splits the pinned node at 2; 6 tokens: at budget
  pc.insert([7, 7, 7], rowsOf([7, 7, 7], W)); // over budget: only unpinned leaves may go
  assert.ok(pc.paths().some((p) => p.join() === a.join()), 'pinned prefix kept');
  pc.release(h);
  pc.release(h); // idempotent
  pc.insert([8, 8, 8, 8, 8, 8], rowsOf([8, 8, 8, 8, 8, 8], W));
  assert.ok(!pc.paths().some((p) => p.join() === a.join()), 'released prefix can be evicted');
  assert.ok(pc.stats().bytes <= 24);
});
