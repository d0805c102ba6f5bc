// A few optimizer steps of the whole model (MoE with a shared expert, MLA, MTP loss) on every
// backend against the ts reference: losses and final weights agree within float noise. The steps
// free activations through the allocation pool, as the trainer does, and the gradients with and
// without that are bit-identical on each backend.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import '../src/backend/index.js';
import { backendsUnderTest, withBackend } from '../src/backend/testing-node.js';
import { disposeBackends } from '../src/backend/setup.js';
import { allocUninitF32, allocZeroF32, recycleF32, clearF32Pool, pooledF32Bytes, setF32Pooling } from '../src/backend/alloc.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, zeroGrad } from '../src/autograd/tape.js';
import { initParams, lossFn, trainableParams } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { AdamW } from '../src/train/optim.js';
import { worstError } from '../src/ops/compare.js';

const BACKENDS = await backendsUnderTest();
after(() => disposeBackends());

const cfg = presets.tiny!;
// 4 × 80 tokens: activations and gradients of [B·T, hidden] and wider are past the pool's minimum
// size (2^14 elements), so the steps really reuse arrays.
const B = 4, T = 80;

function batch(seed: number): { x: Tensor; y: Tensor } {
  const n = B * (T + 1);
  const toks = Array.from({ length: n }, (_, i) => (i * 131 + seed * 977 + ((i * i) % 17)) % cfg.vocabSize);
  const x = Int32Array.from({ length: B * T }, (_, i) => toks[Math.floor(i / T) * (T + 1) + (i % T)]!);
  const y = Int32Array.from({ length: B * T }, (_, i) => toks[Math.floor(i / T) * (T + 1) + (i % T) + 1]!);
  return { x: new Tensor(x, [B, T], 'i32'), y: new Tensor(y, [B * T], 'i32') };
}

/** Losses of `steps` AdamW steps and the final weights. */
function train(steps: number): { losses: number[]; weights: Float32Array[] } {
  const p = initParams(cfg, { seed: 11 });
  const tp = trainableParams(p, cfg);
  const opt = new AdamW(tp);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    // One batch repeated: the loss must fall, so the comparison is of a run that learns.
    const { x, y } = batch(0);
    const r = lossFn(p, cfg, x, y, { mtpWeight: 0.3 });
    losses.push(r.loss.item());
    backward(r.loss, undefined, { freeActivations: true });
    opt.step(3e-3);
    zeroGrad(tp);
  }
  return { losses, weights: tp.map((t) => t.f32.slice()) };
}

test('training steps on every backend match the ts backend (losses, final weights)', async () => {
  const ref = await withBackend('ts', () => train(4));
  assert.ok(ref.losses[3]! < ref.losses[0]!, `the reference run learns: ${ref.losses.join(', ')}`);
  for (const be of BACKENDS.filter((b) => b !== 'ts')) {
    const got = await withBackend(be, () => train(4));
    got.losses.forEach((l, i) => assert.ok(Math.abs(l - ref.losses[i]!) <= 1e-4 * Math.abs(ref.losses[i]!), `${be} step ${i}: loss ${l} vs ts ${ref.losses[i]}`));
    got.weights.forEach((w, i) => {
      const e = worstError(w, ref.weights[i]!, 1e-4, 1e-3);
      assert.ok(e.worst <= 1, `${be} weight ${i}: ${e.worst.toFixed(2)}× tolerance at ${e.index}`);
    });
  }
});

for (const be of BACKENDS) {
  test(`reusing gradient and activation arrays leaves every gradient bit-identical [${be}]`, async () => {
    await withBackend(be, () => {
      const grads = (reuse: boolean): Float32Array[] => {
        const was = setF32Pooling(reuse);
        try {
          const p = initParams(cfg, { seed: 5 });
          const { x, y } = batch(1);
          // Two steps: the second allocates from arrays the first handed back.
          let out: Float32Array[] = [];
          for (let s = 0; s < 2; s++) {
            const tp = trainableParams(p, cfg);
            zeroGrad(tp);
            backward(lossFn(p, cfg, x, y, { mtpWeight: 0.3 }).loss, undefined, { freeActivations: reuse });
            out = tp.map((t) => (t.grad ?? new Float32Array(t.size)).slice());
          }
          return out;
        } finally { setF32Pooling(was); }
      };
      const a = grads(false), b = grads(true);
      a.forEach((g, i) => assert.deepEqual(b[i], g, `gradient ${i} differs`));
    });
  });
}

test('allocation pool: views, small arrays and second recycles are ignored; zeroed reuse', () => {
  clearF32Pool();
  const big = allocUninitF32(1 << 15);
  recycleF32(big.subarray(1));
  recycleF32(new Float32Array(100));
  assert.equal(pooledF32Bytes(), 0);
  recycleF32(big);
  recycleF32(big);
  assert.equal(pooledF32Bytes(), big.byteLength);
  big.fill(3);
  const z = allocZeroF32(1 << 15);
  assert.equal(z, big, 'the pooled array is reused');
  assert.ok(z.every((v) => v === 0));
  assert.notEqual(allocUninitF32(1 << 15), big, 'handed out once only');
  clearF32Pool();
});

test('allocation pool: keeps no more arrays of a length than it had to create (a training run does not grow it)', () => {
  clearF32Pool();
  const n = (1 << 15) + 16;
  for (let i = 0; i < 5; i++) recycleF32(new Float32Array(n));
  assert.equal(pooledF32Bytes(), 0, 'a length never asked for is not kept');
  const a = allocUninitF32(n), b = allocUninitF32(n);
  for (let i = 0; i < 5; i++) recycleF32(new Float32Array(n));
  assert.equal(pooledF32Bytes(), 2 * a.byteLength, 'two created, two kept');
  // Steps that hand back more than they take: the pool stays at two.
  for (let step = 0; step < 50; step++) {
    const x = allocUninitF32(n);
    recycleF32(x);
    recycleF32(new Float32Array(n));
  }
  assert.equal(pooledF32Bytes(), 2 * a.byteLength);
  void b;
  clearF32Pool();
});
