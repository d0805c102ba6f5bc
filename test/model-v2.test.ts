// DeepSeek-V2-family configs parse and run: softmax scores, no correction bias, greedy or
// group-limited-greedy (group max) selection, weights not normalised when norm_topk_prob is false.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import '../src/backend/index.js';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { forward, initParams, selectExperts } from '../src/model/deepseek.js';
import { parseHFConfig, makeConfig, presets } from '../src/model/config.js';

const REF = path.resolve(process.cwd(), '../shared/reference/configs');

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
    const f = noGrad(() => forward(p, cfg, toks, { collectRouting: true }));
    assert.ok(f.logits.f32.every(Number.isFinite));
    for (const r of f.routing) for (let t = 0; t < r.tokens; t++) {
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
