// Sampling: greedy argmax, seeded reproducibility, top-k/top-p support, stop-sequence matching.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, StopMatcher, argmax } from './sampling.js';

test('greedy, top-k, top-p and seeds', () => {
  const logits = Float32Array.from([0.1, 2, 1.9, -1, 0]);
  assert.equal(argmax(logits), 1);
  assert.equal(new Sampler({ greedy: true }).sample(logits, 0, 5), 1);
  assert.equal(new Sampler({ temperature: 0 }).sample(logits, 0, 5), 1);
  const draw = (o: object, n = 400): number[] => { const s = new Sampler(o); return Array.from({ length: n }, () => s.sample(logits, 0, 5)); };
  assert.deepEqual(draw({ seed: 3 }), draw({ seed: 3 }));
  assert.notDeepEqual(draw({ seed: 3 }), draw({ seed: 4 }));
  assert.deepEqual(new Set(draw({ seed: 1, topK: 2 })), new Set([1, 2]));
  // top-p 0.5: token 1 alone has p ≈ 0.44 < 0.5, so the nucleus is {1, 2}.
  assert.deepEqual(new Set(draw({ seed: 1, topP: 0.5 })), new Set([1, 2]));
  assert.ok(new Set(draw({ seed: 1, temperature: 5 })).size === 5);
  assert.throws(() => new Sampler({ topP: 0 }), /top_p/);
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature/);
});

test('StopMatcher holds back partial matches and cuts at the stop', () => {
  const m = new StopMatcher(['END', '\n\n']);
  assert.deepEqual(m.push('hello E'), { emit: 'hello ', stopped: false });
  assert.deepEqual(m.push('N'), { emit: '', stopped: false });
  assert.deepEqual(m.push('X more'), { emit: 'ENX more', stopped: false });
  assert.deepEqual(m.push(' then EN'), { emit: ' then ', stopped: false });
  assert.deepEqual(m.push('D tail'), { emit: '', stopped: true });
  const m2 = new StopMatcher(['zz']);
  assert.equal(m2.push('abz').emit, 'ab');
  assert.equal(m2.flush(), 'z');
});

/** The sampler as it was before the radix sort: a comparator sort of all ids, then the same sums. */
function referenceDraw(logits: ArrayLike<number>, V: number, o: { temperature?: number; topK?: number; topP?: number }, u: number): number {
  const temp = o.temperature ?? 1;
  let ids = Array.from({ length: V }, (_, j) => j);
  ids.sort((a, b) => logits[b]! - logits[a]! || a - b);
  const k = o.topK ?? 0;
  if (k > 0 && k < V) ids = ids.slice(0, k);
  const max = logits[ids[0]!]!;
  const p = ids.map((j) => Math.exp((logits[j]! - max) / temp));
  let total = p.reduce((s, x) => s + x, 0);
  let n = p.length;
  if ((o.topP ?? 1) < 1) {
    let acc = 0;
    for (n = 0; n < p.length; ) { acc += p[n++]! / total; if (acc >= o.topP!) break; }
    total = p.slice(0, n).reduce((s, x) => s + x, 0);
  }
  let r = u * total;
  for (let i = 0; i < n; i++) { r -= p[i]!; if (r < 0) return ids[i]!; }
  return ids[n - 1]!;
}

test('sampling through the radix sort draws exactly what the comparator sort drew (ties, ±0, −Infinity, top-k, top-p)', () => {
  let s = 7;
  const rnd = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
  for (const V of [5, 300, 2048]) {
    const logits = new Float32Array(V);
    // Coarse values so that many ties occur, plus signed zeros and infinities.
    for (let j = 0; j < V; j++) logits[j] = Math.round((rnd() - 0.5) * 40) / 4;
    logits[0] = -0; logits[1 % V] = 0; if (V > 10) { logits[7] = -Infinity; logits[9] = -Infinity; logits[3] = Math.fround(1e3); }
    for (const o of [{}, { temperature: 0.7 }, { topK: 40 }, { topP: 0.9 }, { temperature: 1.3, topK: 100, topP: 0.8 }]) {
      for (const seed of [1, 2, 3]) {
        const a = new Sampler({ ...o, seed }), ref = new Sampler({ ...o, seed });
        for (let i = 0; i < 50; i++) {
          const u = ref.uniform();
          assert.equal(a.sample(logits, 0, V), referenceDraw(logits, V, o, u), `V ${V} ${JSON.stringify(o)} seed ${seed} draw ${i}`);
        }
      }
    }
    // An offset into a longer array (a row of a logits matrix), and plain number arrays.
    const two = new Float32Array(2 * V);
    two.set(logits, V);
    const x = new Sampler({ seed: 5 }), y = new Sampler({ seed: 5 }), z = new Sampler({ seed: 5 });
    for (let i = 0; i < 20; i++) {
      const want = x.sample(logits, 0, V);
      assert.equal(y.sample(two, V, V), want);
      assert.equal(z.sample(Array.from(logits), 0, V), want);
    }
  }
});
