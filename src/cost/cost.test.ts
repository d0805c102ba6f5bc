import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseHFConfig, presets } from '../model/config.js';
import {
  activationBytesPerToken, bubbleFormula, countParams, densePresets, estimateCost, flopsPerToken, getGpu, impliedMfu,
  kvCacheBytesPerToken, parseDenseConfig, simulate, stateBytes,
} from './index.js';

const v3 = presets['deepseek-v3']!;
const llama = densePresets['llama-3.1-405b']!;
const near = (got: number, want: number, rel: number, what: string): void =>
  assert.ok(Math.abs(got / want - 1) <= rel, `${what}: ${got} not within ${rel * 100}% of ${want}`);

test('parameter counts match the published totals', () => {
  const p = countParams(v3);
  near(p.total, 671e9, 0.005, 'V3 total');
  near(p.totalWithMtp, 685e9, 0.005, 'V3 with MTP');
  near(p.active, 37e9, 0.03, 'V3 activated');
  assert.equal(p.embedding, 129280 * 7168);
  near(countParams(presets['deepseek-v2']!).total, 236e9, 0.005, 'V2 total');
  near(countParams(presets['deepseek-v2']!).active, 21e9, 0.03, 'V2 activated');
  near(countParams(presets['deepseek-v2-lite']!).total, 15.7e9, 0.005, 'V2-Lite total');
  near(countParams(llama).total, 405e9, 0.01, 'Llama total');
  assert.deepEqual(parseDenseConfig(JSON.parse(readFileSync(new URL('../../../shared/reference/configs/llama-3.1-405b.json', import.meta.url), 'utf8')) as Record<string, unknown>), llama);
});

test('tiny-dsv3 parameter count equals the tensors in its checkpoint', () => {
  const dir = new URL('../../../shared/reference/tiny-dsv3/', import.meta.url);
  const buf = readFileSync(new URL('model.safetensors', dir));
  const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8')) as Record<string, { shape?: number[] }>;
  let n = 0;
  for (const [k, v] of Object.entries(header)) if (k !== '__metadata__') n += (v.shape ?? []).reduce((a, b) => a * b, 1);
  const p = countParams(parseHFConfig(JSON.parse(readFileSync(new URL('config.json', dir), 'utf8'))));
  assert.equal(p.totalWithMtp, n);
});

test('FLOPs per token: ~250 GFLOP at 4K, 6·N·D ~11% low, attention grows with seq', () => {
  const f = flopsPerToken(v3, 4096);
  near(f.trainingMain, 250e9, 0.02, 'V3 training FLOPs/token');
  assert.ok(f.training > f.trainingMain && f.mtp > 0);
  const lowBy = 1 - (6 * 37e9) / f.trainingMain;
  assert.ok(lowBy > 0.09 && lowBy < 0.13, `6ND low by ${lowBy}`);
  assert.ok(flopsPerToken(v3, 32768).attnCore > 7.9 * f.attnCore);
  assert.throws(() => flopsPerToken(v3, 0), /seq must be a positive integer/);
});

test('defaults reproduce DeepSeek-V3 pre-training GPU-hours and dollars', () => {
  const e = estimateCost(v3, { mfu: 0.3894 });
  near(e.gpuHours, 2.664e6, 0.05, 'GPU-hours');
  near(e.usd, 5.328e6, 0.05, 'USD');
  near(estimateCost(v3, { tokens: 1e12, mfu: 0.3894 }).gpuHours, 180e3, 0.05, 'GPU-hours per trillion tokens');
  near(impliedMfu(v3, 14.8e12, 4096, 2.664e6, 'h800'), 0.39, 0.02, 'implied MFU');
  assert.throws(() => estimateCost(v3, { mfu: 39 }), /mfu must be in \(0, 1\]/);
  assert.throws(() => getGpu('tpu'), /unknown GPU "tpu" \(known: h800/);
});

test('KV cache bytes per token, MLA vs GQA', () => {
  assert.equal(kvCacheBytesPerToken(v3).actual, 70272);
  assert.equal(kvCacheBytesPerToken(llama).actual, 516096);
  assert.ok(kvCacheBytesPerToken(v3).mha > 70 * 70272);
});

test('memory per recipe', () => {
  const fp32 = stateBytes(v3, 'fp32'), bf16 = stateBytes(v3, 'bf16'), fp8 = stateBytes(v3, 'fp8');
  assert.equal(fp32.bytesPerParam, 16);
  assert.equal(bf16.bytesPerParam, 18);
  assert.ok(fp8.bytesPerParam > 13 && fp8.bytesPerParam < 13.01, `fp8 ${fp8.bytesPerParam}`);
  const a = (r: 'fp32' | 'bf16' | 'fp8', rc: boolean): number => activationBytesPerToken(v3, r, rc);
  assert.ok(a('fp8', true) < a('fp8', false) && a('fp8', false) < a('bf16', false) && a('bf16', false) < a('fp32', false));
});

test('pipeline simulator confirms the Table 2 bubble formulas', () => {
  const settings: [number, number, { F: number; B: number; W: number }][] = [
    [2, 2, { F: 1, B: 2, W: 1 }], [4, 4, { F: 1, B: 2, W: 1 }], [8, 8, { F: 2, B: 3, W: 1 }],
    [4, 8, { F: 2, B: 3, W: 1 }], [6, 12, { F: 1, B: 1.5, W: 0.5 }], [8, 16, { F: 2, B: 3, W: 1 }],
  ];
  for (const [pp, m, t] of settings) {
    assert.equal(simulate('1f1b', pp, m, t).bubble, bubbleFormula('1f1b', pp, t), `1F1B pp=${pp} m=${m}`);
    const zb = simulate('zb1p', pp, m, t);
    assert.equal(zb.bubble, bubbleFormula('zb1p', pp, t), `ZB1P pp=${pp} m=${m}`);
    assert.ok(zb.maxInFlight <= pp);
  }
  assert.equal(bubbleFormula('dualpipe', 8, { F: 1, B: 2, W: 1, fb: 3 }), 3 * (3 + 2 - 3));
  assert.throws(() => bubbleFormula('dualpipe', 3, { F: 1, B: 2, W: 1 }), /even pp/);
});
