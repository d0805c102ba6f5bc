// Inference forwards (under noGrad) sum the residual stream in place and hand dead intermediates
// back to the allocation pool (src/model/dense.ts, src/model/deepseek.ts `block`). On every
// backend: their logits are bit-identical to the taped forward's, a second forward on other
// tokens (which reuses the pooled arrays) neither changes its own answer nor the first one's, and
// the pool really received arrays (shapes past its 2^14-element minimum).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import '../src/backend/index.js';
import { backendsUnderTest, withBackend } from '../src/backend/testing-node.js';
import { disposeBackends } from '../src/backend/setup.js';
import { clearF32Pool, pooledF32Bytes } from '../src/backend/alloc.js';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { initParams, forward } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { initDenseParams, denseForward, DenseKVCache, type DenseConfig } from '../src/model/dense.js';

const BACKENDS = await backendsUnderTest();
after(() => disposeBackends());

// 2 × 130 tokens at width 64: [B·T, H] activations are 16,640 elements, past the pool minimum.
const B = 2, T = 130;
const denseCfg: DenseConfig = { vocabSize: 97, hiddenSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, intermediateSize: 160, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 256 };

function tokens(seed: number, vocab: number, n = B * T): Tensor {
  let s = seed;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = s % vocab; }
  return new Tensor(out, [n / T, T], 'i32');
}

/** Taped forward (parameters require grad, so nothing is summed in place or recycled). */
function checkModel(label: string, run: (x: Tensor, last: boolean) => Float32Array, vocab: number): void {
  const xa = tokens(11, vocab), xb = tokens(12, vocab);
  for (const last of [false, true]) {
    const refA = run(xa, last).slice(), refB = run(xb, last).slice();
    clearF32Pool();
    const a = noGrad(() => run(xa, last));
    assert.ok(pooledF32Bytes() > 0, `${label}: the inference forward handed no arrays back to the pool`);
    const b = noGrad(() => run(xb, last));
    assert.deepEqual(a, refA, `${label} last=${last}: first inference forward differs from the taped one`);
    assert.deepEqual(b, refB, `${label} last=${last}: second inference forward (pooled arrays) differs from the taped one`);
    const a2 = noGrad(() => run(xa, last));
    assert.deepEqual(a2, refA, `${label} last=${last}: a third forward differs`);
  }
}

for (const be of BACKENDS) {
  test(`inference forwards reuse pooled arrays with bit-identical logits: dense and DeepSeek (${be})`, async () => {
    await withBackend(be, () => {
      const dp = initDenseParams(denseCfg, { seed: 4 });
      checkModel('dense', (x, last) => denseForward(dp, denseCfg, x, { lastLogits: last }).f32, denseCfg.vocabSize);
      // Chunked prefill through the K/V cache (batch 1) equals the taped one too.
      const x1 = tokens(13, denseCfg.vocabSize, T);
      const cached = (): Float32Array => {
        const cache = new DenseKVCache(denseCfg, 2 * T);
        denseForward(dp, denseCfg, x1, { cache });
        const x2 = tokens(14, denseCfg.vocabSize, T);
        return denseForward(dp, denseCfg, x2, { cache, startPos: T }).f32;
      };
      const ref = cached().slice();
      assert.deepEqual(noGrad(cached), ref, 'dense cached prefill: inference differs from taped');
      const cfg = presets.tiny!;
      const p = initParams(cfg, { seed: 4 });
      checkModel('deepseek tiny', (x, last) => forward(p, cfg, x, { lastLogits: last }).logits.f32, cfg.vocabSize);
    });
  });
}
