// The MoE feed-forward op (grouped native or webgpu kernel where a backend has it) against its
// composition from generic ops on the ts reference backend: values and the gradients of x, the gate
// weights and every expert weight, on every backend (webgpu on the small cases: SwiftShader is slow);
// finite differences; the ts twin of the grouped kernels; and bad input.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import '../backend/index.js';
import { backendsUnderTest, withBackend } from '../backend/testing-node.js';
import { disposeBackends } from '../backend/setup.js';
import { optionalKernel, registerBackend, kernelCounts, resetKernelCounts, getBackendByName } from '../backend/registry.js';
import { tsMoeFfnBackward, tsMoeFfnForward } from '../backend/ts-moe.js';
import type { WebGPUBackend } from '../backend/webgpu/index.js';
import { Tensor } from '../autograd/tensor.js';
import { backward } from '../autograd/tape.js';
import { worstError } from './compare.js';
import * as op from './index.js';
import { gradCheck, randn, rng } from './gradcheck.js';

const BACKENDS = await backendsUnderTest({ webgpu: true });
after(() => disposeBackends());

interface Case { N: number; H: number; I: number; Is: number; E: number; k: number; seed: number }

/** Runs the op (fused or composed) on fresh copies of one case; returns output and all gradients. */
function runCase(c: Case, composed: boolean, leafWeights = true): Float32Array[] {
  let seed = c.seed;
  const x = randn([c.N, c.H], seed++).param();
  const w = randn([c.N, c.k], seed++).param();
  const mk = (rows: number, cols: number): Tensor => randn([rows, cols], seed++, 0.3).param();
  const experts = Array.from({ length: c.E }, () => ({ gate: mk(c.I, c.H), up: mk(c.I, c.H), down: mk(c.H, c.I) }));
  const shared = c.Is > 0 ? { gate: mk(c.Is, c.H), up: mk(c.Is, c.H), down: mk(c.H, c.Is) } : null;
  const r = rng(c.seed * 7 + 1);
  // Expert E-1 gets no rows (an empty group); ids repeat across tokens.
  const ids = Int32Array.from({ length: c.N * c.k }, () => Math.floor(r() * Math.max(1, c.E - 1)));
  // Non-leaf weights (a scaled copy) take the path that hands gradients back through the tape.
  const use = (t: Tensor): Tensor => (leafWeights ? t : op.mulScalar(t, 1));
  const ex = experts.map((m) => ({ gate: use(m.gate), up: use(m.up), down: use(m.down) }));
  const sh = shared ? { gate: use(shared.gate), up: use(shared.up), down: use(shared.down) } : null;
  const out = (composed ? op.moeFfnComposed : op.moeFfn)(x, ex, sh, ids, c.k, op.mulScalar(w, 1));
  backward(op.sum(op.mul(out, randn([c.N, c.H], 999))));
  const grads = [x, w, ...experts.flatMap((m) => [m.gate, m.up, m.down]), ...(shared ? [shared.gate, shared.up, shared.down] : [])]
    .map((t) => t.grad ?? new Float32Array(t.size));
  return [out.f32, ...grads];
}

const CASES: Case[] = [
  { N: 37, H: 19, I: 13, Is: 11, E: 5, k: 3, seed: 1 },
  { N: 9, H: 16, I: 32, Is: 0, E: 4, k: 2, seed: 2 },
  // Past the kernel's threading and shared-block thresholds (several 256-row shared blocks).
  { N: 600, H: 160, I: 48, Is: 96, E: 6, k: 3, seed: 3 },
];
/** webgpu: past one 64×64 tile in every GEMM dimension (gathered rows, K over slots), still small. */
const GPU_CASES: Case[] = [...CASES.slice(0, 2), { N: 70, H: 66, I: 20, Is: 67, E: 3, k: 2, seed: 4 }];

// The ts twin of the grouped kernels (webgpu's fallback for a layer past the binding limit), as a backend of its own.
registerBackend({ name: 'ts-moe', fallback: 'ts', threads: 1, kernels: { MoeFfnForward: tsMoeFfnForward, MoeFfnBackward: tsMoeFfnBackward } });
/** Backends whose own grouped kernels must run (not the composed path). */
const GROUPED = new Set(['native', 'webgpu', 'ts-moe']);

for (const be of [...BACKENDS, 'ts-moe']) {
  test(`moeFfn equals the composed ops on ts, values and gradients [${be}]`, async () => {
    for (const c of be === 'webgpu' ? GPU_CASES : CASES) {
      for (const leaf of [true, false]) {
        const ref = await withBackend('ts', () => runCase(c, true, leaf));
        resetKernelCounts();
        const got = await withBackend(be, () => runCase(c, false, leaf));
        if (GROUPED.has(be)) {
          const n = kernelCounts();
          assert.ok(n[`${be}:MoeFfnForward`] && n[`${be}:MoeFfnBackward`], `${be} ran its grouped kernels: ${JSON.stringify(n)}`);
        }
        assert.equal(got.length, ref.length);
        got.forEach((g, i) => {
          const e = worstError(g, ref[i]!, 1e-4, 1e-3); // as test/backends.test.ts
          assert.ok(e.worst <= 1, `case N=${c.N} leaf=${leaf} array ${i}: ${e.worst.toFixed(2)}× tolerance at ${e.index} (${g[e.index]} vs ${ref[i]![e.index]})`);
        });
      }
    }
  });

  // webgpu: the comparison above covers its gradients; ~600 SwiftShader jobs of finite differences would not add to it.
  test(`moeFfn gradients match finite differences [${be}]`, { skip: be === 'webgpu' ? 'covered by the comparison with ts' : false }, async () => {
    await withBackend(be, () => {
      const N = 6, H = 5, I = 4, k = 2;
      const ids = Int32Array.of(0, 2, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2);
      const f = (x: Tensor, w: Tensor, g0: Tensor, u0: Tensor, d0: Tensor, g1: Tensor, u1: Tensor, d1: Tensor, g2: Tensor, u2: Tensor, d2: Tensor, sg: Tensor, su: Tensor, sd: Tensor): Tensor =>
        op.moeFfn(x, [{ gate: g0, up: u0, down: d0 }, { gate: g1, up: u1, down: d1 }, { gate: g2, up: u2, down: d2 }], { gate: sg, up: su, down: sd }, ids, k, w);
      const ins = [randn([N, H], 1), randn([N, k], 2), ...Array.from({ length: 12 }, (_, i) => randn(i % 3 === 2 ? [H, I] : [I, H], 10 + i, 0.5))];
      const r = gradCheck((...xs) => f(...(xs as [Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor])), ins);
      assert.ok(r.worst <= 1, `gradient mismatch ${r.worst.toFixed(2)}× tolerance at ${r.detail}`);
    });
  });

  test(`moeFfn rejects bad routing [${be}]`, async () => {
    await withBackend(be, () => {
      const x = randn([3, 4], 1), w = randn([3, 1], 2);
      const e = { gate: randn([2, 4], 3), up: randn([2, 4], 4), down: randn([4, 2], 5) };
      assert.throws(() => op.moeFfn(x, [e], null, Int32Array.of(0, 1, 0), 1, w), /expert id 1 out of range \[0, 1\)/);
      assert.throws(() => op.moeFfn(x, [e], null, Int32Array.of(0, 0), 1, w), /need 3 ids/);
    });
  });
}

test('webgpu runs a MoE layer forward in one job and its backward in one more', async (t) => {
  if (!BACKENDS.includes('webgpu')) { t.skip('webgpu not under test'); return; }
  const gpu = getBackendByName('webgpu') as WebGPUBackend;
  const c = GPU_CASES[2]!;
  await withBackend('webgpu', () => {
    const x = randn([c.N, c.H], 1).param(), w = randn([c.N, c.k], 2);
    const mk = (r: number, cols: number, s: number): Tensor => randn([r, cols], s, 0.3).param();
    const experts = Array.from({ length: c.E }, (_, e) => ({ gate: mk(c.I, c.H, 10 + e), up: mk(c.I, c.H, 20 + e), down: mk(c.H, c.I, 30 + e) }));
    const ids = Int32Array.from({ length: c.N * c.k }, (_, i) => (i * 5 + Math.floor(i / 3)) % c.E);
    const j0 = gpu.stats().jobs;
    const out = op.moeFfn(x, experts, { gate: mk(c.Is, c.H, 40), up: mk(c.Is, c.H, 41), down: mk(c.H, c.Is, 42) }, ids, c.k, w);
    const j1 = gpu.stats().jobs;
    resetKernelCounts();
    backward(op.sum(out));
    const n = kernelCounts();
    assert.equal(j1 - j0, 1, 'forward: one job');
    assert.equal(n['webgpu:MoeFfnBackward'], 1, `the grouped backward ran: ${JSON.stringify(n)}`);
    assert.equal(gpu.stats().jobs - j1, 1, `backward: one job (${JSON.stringify(n)})`);
  });
});

for (const be of ['native', 'webgpu', 'ts-moe']) test(`grouped MoE kernel checks order, offsets and sizes [${be}]`, async (t) => {
  if (be !== 'ts-moe' && !BACKENDS.includes(be)) { t.skip(`${be} backend not under test`); return; }
  await withBackend(be, () => {
    const fwd = optionalKernel('MoeFfnForward')!;
    assert.ok(fwd, `${be} has MoeFfnForward`);
    const base = () => ({
      x: new Float32Array(2 * 4), N: 2, H: 4, I: 3, k: 1, gate: [new Float32Array(12)], up: [new Float32Array(12)], down: [new Float32Array(12)],
      sGate: null, sUp: null, sDown: null, Is: 0, order: Int32Array.of(0, 1), offsets: Int32Array.of(0, 2), slotW: new Float32Array(2),
      g: new Float32Array(6), u: new Float32Array(6), y: new Float32Array(8), sg: null, su: null,
    });
    const out = new Float32Array(8);
    fwd(base(), out);
    assert.throws(() => fwd({ ...base(), order: Int32Array.of(1, 1) }, out), /order must be a permutation/);
    assert.throws(() => fwd({ ...base(), order: Int32Array.of(0, 7) }, out), /order must be a permutation/);
    assert.throws(() => fwd({ ...base(), offsets: Int32Array.of(0, 1) }, out), /offsets must start at 0 and end at N\*k/);
    assert.throws(() => fwd({ ...base(), y: new Float32Array(7) }, out), /y has 7 elements, needs 8/);
    assert.throws(() => fwd({ ...base(), down: [new Float32Array(11)] }, out), /down\[0\] has 11 elements/);
  });
});
