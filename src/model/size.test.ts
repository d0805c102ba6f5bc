// modelSize counts exactly what initParams allocates (elements and tensors), in closed form, for
// the presets and for configs that vary every switch (q_lora, MoE spacing, MTP depth, no experts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeConfig, presets, type DeepSeekConfig } from './config.js';
import { initParams, paramEntries } from './deepseek.js';
import { checkAllocation, modelSize, ModelSizeError } from './size.js';

function counted(cfg: DeepSeekConfig): { elements: number; tensors: number } {
  const seen = new Set<object>();
  let elements = 0;
  for (const [, t] of paramEntries(initParams(cfg, { init: 'zeros' }), cfg)) {
    if (seen.has(t)) continue;
    seen.add(t);
    elements += t.size;
  }
  return { elements, tensors: seen.size };
}

test('modelSize equals what initParams allocates', () => {
  const small = { vocabSize: 50, hiddenSize: 8, intermediateSize: 12, moeIntermediateSize: 4, numAttentionHeads: 2, kvLoraRank: 4, qkNopeHeadDim: 4, qkRopeHeadDim: 2, vHeadDim: 4, nGroup: 1, topkGroup: 1 };
  const cases: DeepSeekConfig[] = [presets.tiny!, presets.demo!,
    makeConfig({ ...small, numHiddenLayers: 5, firstKDenseReplace: 2, moeLayerFreq: 2, nRoutedExperts: 4, nSharedExperts: 2, numExpertsPerTok: 2, qLoraRank: null, numNextnPredictLayers: 2 }),
    makeConfig({ ...small, numHiddenLayers: 3, firstKDenseReplace: 0, moeLayerFreq: 1, nRoutedExperts: 6, nSharedExperts: 0, numExpertsPerTok: 1, qLoraRank: 6, topkMethod: 'greedy', scoringFunc: 'softmax', numNextnPredictLayers: 1 }),
    makeConfig({ ...small, numHiddenLayers: 4, firstKDenseReplace: 3, moeLayerFreq: 3, nRoutedExperts: 2, nSharedExperts: 1, numExpertsPerTok: 1, qLoraRank: null, numNextnPredictLayers: 3 }),
    makeConfig({ ...small, numHiddenLayers: 2, firstKDenseReplace: 0, nRoutedExperts: 0, qLoraRank: null, numNextnPredictLayers: 0 })];
  for (const c of cases) {
    const s = modelSize(c);
    assert.deepEqual({ elements: s.elements, tensors: s.tensors }, counted(c), JSON.stringify(c).slice(0, 120));
  }
});

test('checkAllocation: refuses a model over the limit or a tensor over the typed-array limit, before allocating', () => {
  const v3 = presets['deepseek-v3']!;
  assert.ok(modelSize(v3).elements > 6.7e11 && modelSize(v3).elements < 6.9e11, 'DeepSeek-V3 + its MTP layer: ~684B parameters');
  assert.throws(() => checkAllocation(v3, { limitBytes: 2 ** 40, bytesPerElement: 4, what: 'v3', purpose: 'loading', fix: 'no' }), ModelSizeError);
  const wide = makeConfig({ ...presets.tiny!, vocabSize: 2 ** 20, hiddenSize: 2 ** 12 });
  assert.throws(() => checkAllocation(wide, { limitBytes: Infinity, bytesPerElement: 4, what: 'wide', purpose: 'loading', fix: 'no' }), /embed_tokens \/ lm_head tensor would hold 4\.29e\+9 elements/);
  assert.throws(() => initParams(wide), ModelSizeError, 'initParams checks too');
  assert.equal(checkAllocation(presets.tiny!, { limitBytes: 2 ** 30, bytesPerElement: 4, what: 't', purpose: 'loading', fix: '' }).elements, counted(presets.tiny!).elements);
});
