// MTP speculative decoding: the row decoder against forward (and 2 rows against 1 row at a time,
// bit for bit on the native backend), greedy speculative output equal to plain output on the
// reference models and on a briefly trained model (f32 and bf16 weights), the accept/resample rule
// keeping the target distribution (chi-square, fixed seeds), the sampled end-to-end distribution
// on a vocabulary of 8, and speculative decoding with the prefix cache and the disk store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../backend/index.js';
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../autograd/tape.js';
import { getBackend } from '../backend/registry.js';
import { loadNativeBackend } from '../backend/native-node.js';
import { loadModel } from '../model/load-node.js';
import { makeConfig, presets, type DeepSeekConfig } from '../model/config.js';
import { forward, mtpForward, initParams, lossFn, trainableParams, KVCache, type ModelParams } from '../model/deepseek.js';
import { RowDecoder } from '../model/decode.js';
import { AdamW } from '../train/optim.js';
import { generate, allLogits, type Model } from './generate.js';
import { Sampler, acceptOrResample } from './sampling.js';
import { PrefixCache, prefixRowWidth } from './prefix-cache.js';
import { DiskCache } from './disk-cache-node.js';
import { withBf16Weights } from './bf16-node.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const MTP_REFS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn'].filter((d) => existsSync(path.join(REF, d, 'config.json')));
const native = process.env.FRUGAL_NATIVE === '0' ? null : loadNativeBackend();
const maxDiff = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

/** The tiny config trained briefly on a repeating pattern with the MTP loss, so drafts are mostly right. */
let trained: Model | null = null;
function trainedTiny(): Model {
  if (trained) return trained;
  const cfg = presets.tiny!;
  const params = initParams(cfg, { seed: 3 });
  const tp = trainableParams(params, cfg);
  const opt = new AdamW(tp, { weightDecay: 0 });
  const pattern = [11, 42, 7, 300, 42, 99, 5, 17, 256, 3, 64, 128];
  const B = 2, T = 24;
  for (let step = 0; step < 40; step++) {
    const x = new Int32Array(B * T), y = new Int32Array(B * T);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) {
      const i = (step * 7 + b * 5 + t) % pattern.length;
      x[b * T + t] = pattern[i]!;
      y[b * T + t] = pattern[(i + 1) % pattern.length]!;
    }
    backward(lossFn(params, cfg, new Tensor(x, [B, T], 'i32'), new Tensor(y, [B * T], 'i32'), { mtpWeight: 0.3 }).loss);
    opt.step(3e-3);
    zeroGrad(tp);
  }
  return (trained = { cfg, params });
}

test('row decoder: 1 row matches forward, 2 rows equal two 1-row passes (bit for bit on native), MTP rows match mtpForward', { skip: MTP_REFS.length === 0 }, async () => {
  for (const dir of MTP_REFS) {
    const { cfg, params } = await loadModel(path.join(REF, dir));
    const prompt = [5, 17, 42, 99, 3, 250, 7];
    const P = prompt.length, V = cfg.vocabSize, H = cfg.hiddenSize;
    noGrad(() => {
      const ref = new KVCache(cfg, 1, 16, 'absorb', 1), one = new KVCache(cfg, 1, 16, 'absorb', 1), two = new KVCache(cfg, 1, 16, 'absorb', 1);
      const pre = forward(params, cfg, Tensor.ints(prompt, [1, P]), { cache: ref });
      for (const c of [one, two]) for (let l = 0; l < ref.layers.length; l++) c.layers[l]!.a.set(ref.layers[l]!.a);
      const f1 = forward(params, cfg, Tensor.ints([8], [1, 1]), { cache: ref, startPos: P });
      const f2 = forward(params, cfg, Tensor.ints([9], [1, 1]), { cache: ref, startPos: P + 1 });
      const dec = new RowDecoder(params, cfg);
      const a = dec.main([8], [{ cache: one, start: P, rows: 1 }]).logits.slice();
      const b = dec.main([9], [{ cache: one, start: P + 1, rows: 1 }]).logits.slice();
      assert.ok(maxDiff(a, f1.logits.f32) < 1e-4 && maxDiff(b, f2.logits.f32) < 1e-4, `${dir}: decode rows vs forward ${maxDiff(a, f1.logits.f32)}`);
      const ab = dec.main([8, 9], [{ cache: two, start: P, rows: 2 }]).logits;
      if (getBackend().name === 'native') assert.deepEqual([ab.subarray(0, V), ab.subarray(V)], [a, b], `${dir}: 2-row pass is row-exact`);
      else assert.ok(maxDiff(ab, Float32Array.of(...a, ...b)) < 1e-5);
      // MTP: rows (h_i, t_{i+1}) for the prompt against the batched mtpForward.
      const hid = pre.hidden.f32.slice(0, (P - 1) * H);
      const mt = mtpForward(params, cfg, 0, new Tensor(hid, [1, P - 1, H]), Tensor.ints(prompt.slice(1), [1, P - 1]), { cache: ref, startPos: 0 });
      const c3 = new KVCache(cfg, 1, 16, 'absorb', 1);
      const last = dec.mtp(0, hid, prompt.slice(1), [{ cache: c3, start: 0, rows: P - 1 }], P - 2).logits;
      assert.ok(maxDiff(last, mt.logits.f32.subarray((P - 2) * V)) < 1e-4, `${dir}: MTP rows vs mtpForward`);
    });
  }
});

test('greedy speculative decoding gives the plain tokens, token for token: reference models, a trained model, bf16 weights', { skip: MTP_REFS.length === 0 }, async () => {
  const models: Array<[string, Model]> = [];
  for (const dir of MTP_REFS) models.push([dir, await loadModel(path.join(REF, dir))]);
  models.push(['trained tiny', trainedTiny()]);
  if (native) models.push(['trained tiny, bf16 weights', withBf16Weights(trainedTiny()).model]);
  for (const [name, model] of models) {
    for (const prompt of [[5, 17, 42, 99, 3, 250, 7, 7, 301, 12], [11, 42, 7, 300], [1]]) {
      const a = generate(model, prompt, { greedy: true, maxTokens: 60 });
      const b = generate(model, prompt, { greedy: true, maxTokens: 60, speculative: true });
      assert.deepEqual(b.tokens, a.tokens, `${name} prompt ${prompt.join(',')}`);
      const s = b.speculative!;
      assert.ok(s.proposed > 0 && s.accepted <= s.proposed, `${name}: ${JSON.stringify(s)}`);
    }
  }
  // The trained model's drafts are mostly accepted, so speculation saves most main passes.
  const r = generate(trainedTiny(), [11, 42, 7], { greedy: true, maxTokens: 60, speculative: true });
  assert.ok(r.speculative!.acceptanceRate > 0.8, `trained acceptance ${r.speculative!.acceptanceRate}`);
  assert.ok(r.speculative!.proposed < 40, `${r.speculative!.proposed} verify steps for 60 tokens`);
});

/** Pearson chi-square of counts against probabilities (cells with p = 0 must be empty). */
function chiSquare(counts: number[], p: ArrayLike<number>, N: number): number {
  let x2 = 0;
  counts.forEach((c, j) => {
    if (p[j]! === 0) { assert.equal(c, 0, `id ${j} has probability 0 but was drawn ${c} times`); return; }
    x2 += (c - N * p[j]!) ** 2 / (N * p[j]!);
  });
  return x2;
}
// Chi-square critical values at 1e-6 for the degrees of freedom used (a correct rule fails once in a million seeds).
const CHI2_1E6: Record<number, number> = { 4: 33.4, 7: 39.3 };

test('accept/resample rule: emitted tokens follow p, not q (chi-square on 200K draws, 5 ids)', () => {
  const p = [0.5, 0.05, 0.3, 0.15, 0], q = [0.1, 0.4, 0.1, 0.2, 0.2];
  const V = 5, N = 200_000, counts = [0, 0, 0, 0, 0];
  const s = new Sampler({ temperature: 1, seed: 12345 });
  const pp = new Float64Array(V), qq = Float64Array.from(q);
  let accepted = 0;
  for (let i = 0; i < N; i++) {
    pp.set(p);
    const d = s.sampleFrom(qq, V);
    const r = acceptOrResample(pp, qq, d, V, s);
    counts[r.id]!++;
    if (r.accepted) accepted++;
  }
  const x2 = chiSquare(counts, p, N);
  assert.ok(x2 < CHI2_1E6[4]!, `chi-square ${x2.toFixed(1)} for counts ${counts}`);
  // Acceptance is Σ min(p, q) = 0.1 + 0.05 + 0.1 + 0.15 = 0.4.
  assert.ok(Math.abs(accepted / N - 0.4) < 0.01, `acceptance ${accepted / N}`);
});

test('sampled speculative decoding keeps the model distribution (vocabulary of 8, chi-square on 2,500 runs)', () => {
  // A random tiny model with 8 ids and its head scaled up so p (main) and q (MTP) are far apart.
  const cfg: DeepSeekConfig = makeConfig({ ...presets.tiny!, vocabSize: 8 });
  const params: ModelParams = initParams(cfg, { seed: 6 });
  const H = params.head.f32;
  for (let i = 0; i < H.length; i++) H[i] = H[i]! * 6;
  const model = { cfg, params }, prompt = [1, 6, 2];
  const sampling = { temperature: 0.8, topK: 6 };
  // Exact marginal of the second new token (the first one a speculative step emits):
  // Σ_a p(a | prompt) p(b | prompt, a) with the sampler's own transform.
  const dist = (logits: number[]): Float64Array => { const d = new Float64Array(8); new Sampler(sampling).probs(logits, 0, 8, d); return d; };
  const p1 = dist(allLogits(model, prompt).at(-1)!);
  const want = new Float64Array(8);
  for (let a = 0; a < 8; a++) if (p1[a]! > 0) { const p2 = dist(allLogits(model, [...prompt, a]).at(-1)!); for (let b = 0; b < 8; b++) want[b]! += p1[a]! * p2[b]!; }
  // The drafts must matter: the MTP head's marginal differs from the target's.
  const N = 2500, counts = new Array(8).fill(0) as number[];
  let proposed = 0, accepted = 0;
  for (let i = 0; i < N; i++) {
    const r = generate(model, prompt, { ...sampling, seed: 1000 + i, maxTokens: 2, speculative: true });
    counts[r.tokens[1]!]!++;
    proposed += r.speculative!.proposed; accepted += r.speculative!.accepted;
  }
  const x2 = chiSquare(counts, want, N);
  assert.ok(x2 < CHI2_1E6[7]!, `chi-square ${x2.toFixed(1)}: counts ${counts} vs expected ${Array.from(want, (x) => (x * N).toFixed(0))}`);
  assert.ok(accepted > 0.1 * proposed && accepted < 0.95 * proposed, `both branches exercised: ${accepted}/${proposed} accepted`);
});

test('speculative decoding with the prefix cache and the disk store: same tokens, cached tokens reported', { skip: MTP_REFS.length === 0 }, async () => {
  const model = await loadModel(path.join(REF, 'tiny-dsv3'));
  const prompt = [5, 17, 42, 99, 3, 250, 7, 7, 301, 12, 44, 45];
  const ref = generate(model, prompt, { greedy: true, maxTokens: 24 }).tokens;
  const pc = new PrefixCache(prefixRowWidth(model.cfg, 1), 1 << 24);
  assert.throws(() => generate(model, prompt, { greedy: true, maxTokens: 4, prefixCache: pc }), /rows are .* floats/);
  const first = generate(model, prompt, { greedy: true, maxTokens: 24, speculative: true, prefixCache: pc });
  assert.equal(first.cachedTokens, 0);
  const again = generate(model, prompt, { greedy: true, maxTokens: 24, speculative: true, prefixCache: pc });
  // All but the last prompt token are cached; the last cached one is recomputed for its hidden state.
  assert.equal(again.cachedTokens, prompt.length - 2);
  assert.deepEqual(first.tokens, ref);
  assert.deepEqual(again.tokens, ref);
  assert.ok(again.speculative!.acceptanceRate > 0 || again.speculative!.proposed > 0);
  // A prompt sharing a prefix then diverging.
  const other = [...prompt.slice(0, 8), 88, 89, 90];
  const o = generate(model, other, { greedy: true, maxTokens: 12, speculative: true, prefixCache: pc });
  assert.equal(o.cachedTokens, 7);
  assert.deepEqual(o.tokens, generate(model, other, { greedy: true, maxTokens: 12 }).tokens);
  // Disk store (64-token units): a fresh memory cache, rows from disk.
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-spec-'));
  try {
    const long = Array.from({ length: 70 }, (_, i) => (i * 37 + 5) % 500);
    const plain = generate(model, long, { greedy: true, maxTokens: 16 }).tokens;
    const mk = (): DiskCache => new DiskCache({ dir, modelId: 'tiny', rowWidth: prefixRowWidth(model.cfg, 1), log: () => {} });
    const s1 = generate(model, long, { greedy: true, maxTokens: 16, speculative: true, prefixStore: mk() });
    const s2 = generate(model, long, { greedy: true, maxTokens: 16, speculative: true, prefixStore: mk(), prefixCache: new PrefixCache(prefixRowWidth(model.cfg, 1), 1 << 24) });
    assert.equal(s1.storeTokens, 0);
    assert.equal(s2.storeTokens, 63);
    assert.equal(s2.cachedTokens, 63);
    assert.deepEqual(s1.tokens, plain);
    assert.deepEqual(s2.tokens, plain);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
