// bf16 decode weights: the native gemvBf16 kernel against an f32 product over the decoded weights,
// and a model decoding through withBf16Weights close to (not equal to) the f32 model.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBackend, disposeBackends } from '../backend/setup-node.js';
import { getBackendByName } from '../backend/registry.js';
import type { NativeBackend } from '../backend/native-node.js';
import { Tensor } from '../autograd/tensor.js';
import { noGrad } from '../autograd/tape.js';
import { decodeBf16, encodeBf16 } from '../fp8/codec.js';
import { randn } from '../ops/gradcheck.js';
import { initParams, forward, KVCache } from '../model/deepseek.js';
import { presets } from '../model/config.js';
import { Generation } from './generate.js';
import { withBf16Weights, bf16Linear } from './bf16-node.js';
import { denseConfigs, initDenseParams, denseForward, DenseKVCache } from '../model/dense.js';

after(() => disposeBackends());

async function native(): Promise<NativeBackend | null> {
  try { await useBackend('native', { threads: 2 }); } catch { return null; }
  return (getBackendByName('native') as NativeBackend | undefined) ?? null;
}

test('gemvBf16 equals x · decode(bf16(W))ᵀ in f32, odd sizes, threaded', async (t) => {
  const nb = await native();
  if (!nb || !nb.addon.gemvBf16) { t.skip('native backend not available'); return; }
  for (const [m, n, k] of [[1, 7, 5], [1, 1031, 300], [3, 513, 129], [2, 64, 33]] as const) {
    const x = randn([m, k], m + n).f32, w = randn([n, k], k).f32;
    const wb = encodeBf16(w), wd = decodeBf16(wb, new Float32Array(w.length));
    const y = new Float32Array(m * n).fill(Number.NaN);
    nb.addon.gemvBf16(x, wb, y, m, n, k);
    let worst = 0, moved = 0;
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let ref = 0, exact = 0, mag = 0;
      for (let d = 0; d < k; d++) { ref += x[i * k + d]! * wd[j * k + d]!; exact += x[i * k + d]! * w[j * k + d]!; mag += Math.abs(x[i * k + d]! * wd[j * k + d]!); }
      // f32 sums in another order: error bounded by a few ulps of Σ|x·w|.
      worst = Math.max(worst, Math.abs(y[i * n + j]! - ref) / (1e-30 + mag));
      moved = Math.max(moved, Math.abs(ref - exact));
    }
    assert.ok(worst < 1e-5, `m=${m} n=${n} k=${k}: relative error ${worst}`);
    assert.ok(moved > 0, 'bf16 rounding should move the result');
  }
  assert.throws(() => nb.addon.gemvBf16!(new Float32Array(4), new Uint16Array(3), new Float32Array(1), 1, 1, 4), /w has 3 elements, needs 4/);
});

test('a model decoding with bf16 weights stays close to f32 and uses the bf16 path', async (t) => {
  const nb = await native();
  if (!nb) { t.skip('native backend not available'); return; }
  const cfg = presets.tiny!;
  const params = initParams(cfg, { seed: 5 });
  const { model, note } = withBf16Weights({ cfg, params });
  assert.match(note, /bf16/);
  assert.ok(model.linear);
  const toks = [3, 9, 27, 1, 14];
  const run = (linear?: (x: Tensor, w: Tensor) => Tensor): Float32Array[] => noGrad(() => {
    const cache = new KVCache(cfg, 1, 8, 'absorb');
    const o = linear ? { linear } : {};
    const out = [forward(params, cfg, Tensor.ints(toks, [1, 5]), { cache }).logits.f32];
    for (let i = 5; i < 8; i++) out.push(forward(params, cfg, Tensor.ints([i * 7 % cfg.vocabSize], [1, 1]), { cache, startPos: i, ...o }).logits.f32);
    return out;
  });
  const f32 = run(), bf = run(model.linear);
  let maxAbs = 0, diff = 0;
  for (let s = 0; s < f32.length; s++) for (let i = 0; i < f32[s]!.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(f32[s]![i]!));
    diff = Math.max(diff, Math.abs(f32[s]![i]! - bf[s]![i]!));
  }
  // Prefill is f32 in both; the single-token steps read bf16 weights.
  assert.deepEqual(bf[0], f32[0]);
  assert.ok(diff > 0, 'decode steps should differ from f32');
  assert.ok(diff < 2e-2 * maxAbs, `bf16 decode moved logits by ${diff} (max |logit| ${maxAbs})`);
  const g = new Generation(model, toks, { greedy: true, maxTokens: 4 });
  while (!g.done) g.step();
  assert.equal(g.result().tokens.length, 4);
});

test('bf16Linear drives the dense model too: decode logits close to f32, not equal', async (t) => {
  const nb = await native();
  if (!nb) { t.skip('native backend not available'); return; }
  const { linear } = bf16Linear();
  assert.ok(linear);
  const cfg = denseConfigs['dense-tiny']!;
  const p = initDenseParams(cfg, { seed: 3 });
  const run = (lin?: (x: Tensor, w: Tensor) => Tensor): Float32Array => noGrad(() => {
    const cache = new DenseKVCache(cfg, 8);
    denseForward(p, cfg, Tensor.ints([1, 2, 3], [1, 3]), { cache });
    return denseForward(p, cfg, Tensor.ints([4], [1, 1]), { cache, startPos: 3, ...(lin ? { linear: lin } : {}) }).f32;
  });
  const a = run(), b = run(linear!);
  let diff = 0, mx = 0;
  for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i]! - b[i]!)); mx = Math.max(mx, Math.abs(a[i]!)); }
  assert.ok(diff > 0 && diff < 2e-2 * mx, `dense bf16 decode moved logits by ${diff} (max ${mx})`);
});
