// The fused causal attention (native kernel where a backend has it) against the ts reference at
// training-like sizes: query blocks past the kernel's 64-row causal blocks, key rows past its
// 16-lane vector tails, S > T (queries at the end of the keys), per-head K/V and MLA's shared
// latent key. Values and the gradients of q, k and v; the small finite-difference checks live in
// ops.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import '../backend/index.js';
import { backendsUnderTest, withBackend } from '../backend/testing-node.js';
import { disposeBackends } from '../backend/setup.js';
import { backward } from '../autograd/tape.js';
import { worstError } from './compare.js';
import * as op from './index.js';
import { randn } from './gradcheck.js';

const BACKENDS = await backendsUnderTest();
after(() => disposeBackends());

interface Case { B: number; T: number; S: number; H: number; KH: number; Dk: number; Dv: number; seed: number }
const CASES: Case[] = [
  { B: 2, T: 70, S: 70, H: 3, KH: 3, Dk: 20, Dv: 13, seed: 1 },
  { B: 1, T: 67, S: 83, H: 2, KH: 2, Dk: 48, Dv: 32, seed: 2 },
  { B: 2, T: 130, S: 130, H: 4, KH: 1, Dk: 24, Dv: 17, seed: 3 },  // latent: one shared key head
];

/** Output and the gradients of q, k (and v) under a fixed random cotangent. */
function run(c: Case): Float32Array[] {
  const q = randn([c.B, c.T, c.H, c.Dk], c.seed, 2).param();
  const k = randn([c.B, c.S, c.KH, c.Dk], c.seed + 1, 2).param();
  const v = c.KH === 1 ? null : randn([c.B, c.S, c.KH, c.Dv], c.seed + 2).param();
  const scale = 1 / Math.sqrt(c.Dk);
  const out = v ? op.causalAttention(q, k, v, scale) : op.latentAttention(q, k, c.Dv, scale);
  backward(op.sum(op.mul(out, randn([...out.shape], c.seed + 3))));
  return [out.f32, q.grad!, k.grad!, ...(v ? [v.grad!] : [])];
}

for (const be of BACKENDS) {
  test(`causal and latent attention equal the ts reference at training sizes, values and gradients [${be}]`, async () => {
    for (const c of CASES) {
      const ref = await withBackend('ts', () => run(c));
      const got = await withBackend(be, () => run(c));
      assert.equal(got.length, ref.length);
      got.forEach((g, i) => {
        const e = worstError(g, ref[i]!, 1e-4, 1e-3);
        assert.ok(e.worst <= 1, `T=${c.T} S=${c.S} KH=${c.KH} array ${i}: ${e.worst.toFixed(2)}× tolerance at ${e.index} (${g[e.index]} vs ${ref[i]![e.index]})`);
      });
    }
  });
}
