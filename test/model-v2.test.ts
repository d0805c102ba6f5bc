// DeepSeek-V2-family configs parse and run: softmax scores, no correction bias, greedy or
// group-limited-greedy (group max) selection, weights not normalised when norm_topk_prob is false.
// Selection and weights are checked exactly against an independent oracle (sort-based, float64)
// of DeepSeek's published routing rule, both for selectExperts alone and inside a forward pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import '../src/backend/index.js';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { forward, initParams, selectExperts } from '../src/model/deepseek.js';
import { parseHFConfig, makeConfig, presets, type DeepSeekConfig } from '../src/model/config.js';

const REF = path.resolve(process.cwd(), '../shared/reference/configs');

/**
 * The routing rule written independently of src/model (SPEC §7): biased scores choose; groups are
 * ranked by the sum of their top two (V3, bias present) or their max (V2, no bias); the top
 * topk_group groups stay; the top k experts of those win. Weights come from the unbiased scores,
 * normalised for sigmoid or norm_topk_prob, times routed_scaling_factor.
 */
function oracle(cfg: DeepSeekConfig, scores: ArrayLike<number>, bias: ArrayLike<number> | null): { ids: number[]; weights: Map<number, number> } {
  const E = cfg.nRoutedExperts, k = cfg.numExpertsPerTok, G = cfg.nGroup, per = E / G;
  const b = Array.from({ length: E }, (_, e) => scores[e]! + (bias ? bias[e]! : 0));
  let allowed = Array.from({ length: E }, (_, e) => e);
  if (cfg.topkMethod !== 'greedy' && G > 1 && cfg.topkGroup < G) {
    const groupScore = Array.from({ length: G }, (_, g) => {
      const v = b.slice(g * per, (g + 1) * per).sort((x, y) => y - x);
      return bias ? v[0]! + v[1]! : v[0]!;
    });
    const kept = new Set(groupScore.map((v, g) => [v, g] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]).slice(0, cfg.topkGroup).map(([, g]) => g));
    allowed = allowed.filter((e) => kept.has(Math.floor(e / per)));
  }
  const ids = allowed.sort((x, y) => b[y]! - b[x]! || x - y).slice(0, k);
  const raw = ids.map((e) => scores[e]!);
  const norm = cfg.scoringFunc === 'sigmoid' || cfg.normTopkProb ? raw.reduce((x, y) => x + y, 0) : 1;
  return { ids, weights: new Map(ids.map((e, j) => [e, (raw[j]! / norm) * cfg.routedScalingFactor])) };
}

/** Asserts one token's selection: k distinct ids equal to the oracle's, weights within float32 noise. */
function checkToken(what: string, cfg: DeepSeekConfig, ids: ArrayLike<number>, weights: ArrayLike<number> | null, want: ReturnType<typeof oracle>): void {
  const got = Array.from(ids);
  assert.equal(new Set(got).size, cfg.numExpertsPerTok, `${what}: ${cfg.numExpertsPerTok} distinct experts, got [${got}]`);
  assert.deepEqual(got.slice().sort((a, b) => a - b), want.ids.slice().sort((a, b) => a - b), `${what}: experts`);
  if (weights) got.forEach((e, j) => {
    const w = want.weights.get(e)!;
    assert.ok(Math.abs(weights[j]! - w) <= 1e-6 * Math.max(1, Math.abs(w)), `${what}: weight of expert ${e} ${weights[j]} vs ${w}`);
  });
}

test('selectExperts equals the routing oracle on 600 random tokens: V2 group max, V3 top-2 sums with bias, greedy', () => {
  let seed = 1;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648; };
  const base = { nRoutedExperts: 16, numExpertsPerTok: 3, nGroup: 4, topkGroup: 2 };
  const cases: Array<[string, DeepSeekConfig, boolean]> = [
    ['V2 group_limited_greedy', makeConfig({ ...base, topkMethod: 'group_limited_greedy', scoringFunc: 'softmax', normTopkProb: false }), false],
    ['V3 noaux_tc + bias', makeConfig({ ...base, topkMethod: 'noaux_tc' }), true],
    ['V3 noaux_tc, no bias', makeConfig({ ...base, topkMethod: 'noaux_tc' }), false],
    ['greedy', makeConfig({ ...base, topkMethod: 'greedy', scoringFunc: 'softmax' }), false],
  ];
  for (const [name, cfg, withBias] of cases) {
    const N = 150, E = cfg.nRoutedExperts;
    const scores = Float32Array.from({ length: N * E }, rnd);
    const bias = withBias ? Float32Array.from({ length: E }, () => (rnd() - 0.5) * 0.4) : null;
    const ids = selectExperts(cfg, scores, bias, N);
    const k = cfg.numExpertsPerTok;
    for (let t = 0; t < N; t++) checkToken(`${name} token ${t}`, cfg, ids.subarray(t * k, (t + 1) * k), null, oracle(cfg, scores.subarray(t * E, (t + 1) * E), bias));
  }
});

test('selectExperts: V3 top-2-sum groups with bias, V2 group max, greedy', () => {
  // 8 experts in 4 groups of 2; k = 2, keep 2 groups.
  const base = { nRoutedExperts: 8, numExpertsPerTok: 2, nGroup: 4, topkGroup: 2 };
  const s = Float32Array.of(0.9, 0.0, 0.5, 0.5, 0.6, 0.1, 0.2, 0.2);
  // Group max: g0 0.9, g1 0.5, g2 0.6, g3 0.2 -> keep g0, g2 -> experts 0 and 4.
  const v2 = makeConfig({ ...base, topkMethod: 'group_limited_greedy', scoringFunc: 'softmax' });
  assert.deepEqual([...selectExperts(v2, s, null, 1)].sort(), [0, 4]);
  // Top-2 sum (bias zero): g0 0.9, g1 1.0, g2 0.7, g3 0.4 -> keep g0, g1 -> experts 0 and (2 or 3).
  const v3 = makeConfig({ ...base, topkMethod: 'noaux_tc' });
  const ids = [...selectExperts(v3, s, new Float32Array(8), 1)];
  assert.ok(ids.includes(0) && (ids.includes(2) || ids.includes(3)) && !ids.includes(4), `got ${ids}`);
  // The bias changes selection only: +1 on expert 7 brings group 3 in.
  const bias = new Float32Array(8); bias[7] = 1;
  assert.ok([...selectExperts(v3, s, bias, 1)].includes(7));
  // Greedy ignores groups.
  const g = makeConfig({ ...base, topkMethod: 'greedy', scoringFunc: 'softmax' });
  assert.deepEqual([...selectExperts(g, s, null, 1)].sort(), [0, 4]);
});

for (const name of ['deepseek-v2', 'deepseek-v2-lite']) {
  test(`${name}: published config parses; a tiny model with its routing runs`, () => {
    const full = parseHFConfig(JSON.parse(readFileSync(path.join(REF, `${name}.json`), 'utf8')));
    assert.equal(full.modelType, 'deepseek_v2');
    assert.equal(full.scoringFunc, 'softmax');
    assert.equal(full.normTopkProb, false);
    const cfg = makeConfig({
      ...presets.tiny!, modelType: 'deepseek_v2', scoringFunc: 'softmax', topkMethod: full.topkMethod, normTopkProb: false,
      routedScalingFactor: full.routedScalingFactor, nGroup: full.nGroup === 1 ? 1 : 4, topkGroup: full.nGroup === 1 ? 1 : 2,
      qLoraRank: full.qLoraRank === null ? null : 32, ropeScaling: full.ropeScaling, numNextnPredictLayers: 0,
    });
    const p = initParams(cfg, { seed: 11 });
    for (const l of p.layers) if (l.moe) { assert.equal(l.moe.bias, null); l.moe.router.f32.forEach((_, i, a) => { a[i] = Math.sin(i * 1.7) * 0.5; }); }
    const toks = Tensor.ints([1, 5, 9, 100, 200, 7], [1, 6]);
    const f = noGrad(() => forward(p, cfg, toks, { collectRouting: 'scores' }));
    assert.ok(f.logits.f32.every(Number.isFinite));
    assert.ok(f.routing.length > 0, 'the model routed');
    for (const r of f.routing) for (let t = 0; t < r.tokens; t++) {
      const E = cfg.nRoutedExperts;
      const sc = r.scores!.subarray(t * E, (t + 1) * E);
      assert.ok(Math.abs(sc.reduce((x, y) => x + y, 0) - 1) < 1e-5, 'softmax scores sum to 1');
      checkToken(`${name} layer ${r.layer} token ${t}`, cfg, r.ids.subarray(t * r.k, (t + 1) * r.k), r.weights.subarray(t * r.k, (t + 1) * r.k), oracle(cfg, sc, null));
      let sum = 0;
      for (let j = 0; j < r.k; j++) sum += r.weights[t * r.k + j]!;
      // Unnormalised softmax weights of k of 8 experts: strictly below the scaling factor.
      assert.ok(sum > 0 && sum < cfg.routedScalingFactor - 1e-6, `weights sum ${sum}`);
    }
    const v3 = noGrad(() => forward(initParams(presets.tiny!, { seed: 11 }), presets.tiny!, toks, { collectRouting: true }));
    for (const r of v3.routing) for (let t = 0; t < r.tokens; t++) {
      const sum = r.weights[t * r.k]! + r.weights[t * r.k + 1]!;
      assert.ok(Math.abs(sum - presets.tiny!.routedScalingFactor) < 1e-5, 'V3 weights are normalised then scaled');
    }
  });
}
