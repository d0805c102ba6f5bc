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
