import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  ConfigError, isMoeLayer, parseHFConfig, presets, resolveConfig, ropeInvFreq, softmaxScale, toHFConfig,
} from './config.js';

const ref = new URL('../../../shared/reference/', import.meta.url);
const readJson = (p: string): Record<string, unknown> => JSON.parse(readFileSync(new URL(p, ref), 'utf8')) as Record<string, unknown>;
const tinySets = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8'];
const releases = ['deepseek-v3', 'deepseek-v2', 'deepseek-v2-lite'];

test('tiny reference configs parse and round-trip', () => {
  for (const set of tinySets) {
    const c = parseHFConfig(readJson(`${set}/config.json`));
    assert.deepEqual(parseHFConfig(toHFConfig(c)), c, set);
  }
  const yarnCfg = parseHFConfig(readJson('tiny-dsv3-yarn/config.json'));
  assert.deepEqual(yarnCfg.ropeScaling, { type: 'yarn', factor: 4, originalMaxPositionEmbeddings: 64, betaFast: 32, betaSlow: 1, mscale: 0.707, mscaleAllDim: 0.707 });
  assert.equal(parseHFConfig(readJson('tiny-dsv3-noqlora/config.json')).qLoraRank, null);
  assert.deepEqual(parseHFConfig(readJson('tiny-dsv3-fp8/config.json')).quantization, { fmt: 'e4m3', weightBlockSize: [128, 128] });
});

test('presets equal the reference configs they copy', () => {
  assert.deepEqual(presets.tiny, parseHFConfig(readJson('tiny-dsv3/config.json')));
  for (const name of releases) {
    const parsed = parseHFConfig(readJson(`configs/${name}.json`));
    assert.deepEqual(presets[name], parsed, name);
    assert.deepEqual(parseHFConfig(toHFConfig(parsed)), parsed, name);
  }
  for (const [name, p] of Object.entries(presets)) assert.deepEqual(parseHFConfig(toHFConfig(p)), p, name);
  const v2 = presets['deepseek-v2']!;
  assert.equal(v2.scoringFunc, 'softmax');
  assert.equal(v2.normTopkProb, false);
  assert.equal(toHFConfig(presets['deepseek-v3']!).architectures instanceof Array, true);
  assert.deepEqual(toHFConfig(presets['deepseek-v3']!).architectures, ['DeepseekV3ForCausalLM']);
});

test('V2 behaviour defaults apply when model_type is deepseek_v2', () => {
  const c = parseHFConfig({ model_type: 'deepseek_v2', n_routed_experts: 8, num_experts_per_tok: 2 });
  assert.equal(c.scoringFunc, 'softmax');
  assert.equal(c.topkMethod, 'greedy');
  assert.equal(c.normTopkProb, false);
  assert.equal(c.nGroup, 1);
});

test('bad configs name every bad key', () => {
  const base = readJson('tiny-dsv3/config.json');
  const bad = (patch: Record<string, unknown>): string => {
    try { parseHFConfig({ ...base, ...patch }); } catch (e) { assert.ok(e instanceof ConfigError); return e.message; }
    assert.fail(`accepted ${JSON.stringify(patch)}`);
  };
  assert.equal(bad({ num_attention_heads: '8' }), 'config: num_attention_heads must be a positive integer, got "8"');
  assert.equal(bad({ n_routed_experts: 10 }), 'config: n_routed_experts (10) must be divisible by n_group (4)');
  assert.match(bad({ topk_group: 5 }), /topk_group \(5\) must be ≤ n_group \(4\)/);
  assert.match(bad({ num_experts_per_tok: 9 }), /num_experts_per_tok \(9\) must be ≤ n_routed_experts \(8\)/);
  assert.match(bad({ num_experts_per_tok: 5 }), /num_experts_per_tok \(5\) must be ≤ topk_group × experts per group \(2 × 2\)/);
  assert.match(bad({ qk_rope_head_dim: 7 }), /qk_rope_head_dim \(7\) must be even/);
  assert.match(bad({ hidden_size: 63 }), /hidden_size \(63\) must be even/);
  assert.match(bad({ scoring_func: 'relu' }), /scoring_func must be one of "sigmoid", "softmax", got "relu"/);
  assert.match(bad({ rope_scaling: { type: 'linear', factor: 2 } }), /rope_scaling.type must be "yarn"/);
  assert.match(bad({ rope_scaling: { type: 'yarn', factor: 4, mscale: 1, mscale_all_dim: 0.707 } }), /mscale \(1\) must equal rope_scaling.mscale_all_dim \(0.707\)/);
  assert.match(bad({ quantization_config: { fmt: 'e5m2', weight_block_size: [128] } }), /fmt must be "e4m3".*weight_block_size must be two positive integers/);
  // Several problems at once are all reported.
  const many = bad({ vocab_size: 0, rms_norm_eps: -1, q_lora_rank: 1.5 });
  for (const k of ['vocab_size', 'rms_norm_eps', 'q_lora_rank']) assert.match(many, new RegExp(k));
  assert.throws(() => parseHFConfig('{not json'), /config: not valid JSON/);
  assert.throws(() => resolveConfig('deepseek-v9'), /unknown preset "deepseek-v9" \(known: tiny, small/);
});

test('HF key variants: rope_type, q_lora_rank 0, eos list, unknown keys', () => {
  const c = parseHFConfig({
    ...readJson('tiny-dsv3/config.json'), q_lora_rank: 0, eos_token_id: [1, 2], some_future_key: 3,
    rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 64, mscale_all_dim: 0.707 },
  });
  assert.equal(c.qLoraRank, null);
  assert.equal(c.eosTokenId, 1);
  assert.equal(c.ropeScaling?.mscale, 0.707);
  assert.equal(c.ropeScaling?.betaFast, 32);
});

test('isMoeLayer follows first_k_dense_replace and moe_layer_freq', () => {
  const v3 = presets['deepseek-v3']!;
  assert.deepEqual([0, 1, 2, 3, 60, 61].map((l) => isMoeLayer(v3, l)), [false, false, false, true, true, true]);
  const alt = { ...v3, moeLayerFreq: 2 };
  assert.deepEqual([3, 4, 5].map((l) => isMoeLayer(alt, l)), [false, true, false]);
});

test('ropeInvFreq and softmaxScale match the official vectors', () => {
  for (const set of ['tiny-dsv3', 'tiny-dsv3-yarn']) {
    const v = readJson(`${set}/vectors.json`) as { softmax_scale: number; rope: { inv_freq: { data: number[] } } };
    const c = parseHFConfig(readJson(`${set}/config.json`));
    const got = ropeInvFreq(c);
    const want = v.rope.inv_freq.data;
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-6 * want[i]!, `${set} inv_freq[${i}] ${got[i]} vs ${want[i]}`);
    assert.ok(Math.abs(softmaxScale(c) - v.softmax_scale) < 1e-12, `${set} softmax_scale ${softmaxScale(c)} vs ${v.softmax_scale}`);
  }
  // V3 at full scale: 192^-1/2 · (1 + 0.1 ln 40)²
  const m = 1 + 0.1 * Math.log(40);
  assert.ok(Math.abs(softmaxScale(presets['deepseek-v3']!) - (m * m) / Math.sqrt(192)) < 1e-15);
});
