/**
 * Where an FP8 (or FP32) training step's time goes: every registry kernel of the active backend
 * is wrapped with a timer, and the step is split into kernel time per kernel and the rest
 * (TypeScript ops, tape, allocation). Run: `npx tsx bench/fp8-profile.ts [recipe=fp8] [config=small] [B=8] [T=64] [threads=2] [steps=6]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { backward, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { initParams, lossFn, trainableParams } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { AdamW } from '../src/train/optim.js';
import { makeProjLinear, parseVariant, recipeSettings } from '../src/fp8/recipe.js';
import { timeKernels } from './kernel-timer.js';
import { lcgBatch } from './common.js';

const [rArg = 'fp8', config = 'small', bArg = '8', tArg = '64', thArg = '2', nArg = '6'] = process.argv.slice(2);
const recipe = parseVariant(rArg);
const cfg = presets[config]!;
const B = Number(bArg), T = Number(tArg), N = Number(nArg);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const spent = timeKernels();
const params = initParams(cfg, { seed: 1 });
const tp = trainableParams(params, cfg);
const s = recipeSettings(recipe);
const opt = new AdamW(tp, { momentDtype: s.momentDtype });
const opts = { projLinear: makeProjLinear(recipe), recompute: s.recompute, mtpWeight: 0.3 };
let total = 0;
for (let i = 0; i <= N; i++) {
  if (i === 1) spent.clear();
  const { inputs, targets } = lcgBatch(i + 1, B, T, cfg.vocabSize);
  const t0 = performance.now();
  const r = lossFn(params, cfg, new Tensor(inputs, [B, T], 'i32'), new Tensor(targets, [B * T], 'i32'), opts);
  backward(r.loss);
  opt.step(1e-3);
  zeroGrad(tp);
  if (i > 0) total += performance.now() - t0;
}
let kern = 0;
const rows = [...spent].sort((a, b) => b[1].ms - a[1].ms);
for (const [k, v] of rows) { kern += v.ms; console.log(`${k.padEnd(28)} ${(v.ms / N).toFixed(1).padStart(7)} ms/step ${(v.calls / N).toFixed(0).padStart(6)} calls/step`); }
console.log(`${recipe} ${config} ${B}x${T}: ${(total / N).toFixed(1)} ms/step; kernels ${(kern / N).toFixed(1)}; rest ${((total - kern) / N).toFixed(1)}`);
await disposeBackends();
