/**
 * FP8 vs FP32 (vs BF16) training-step time on one config, interleaved: each round runs one step of
 * every recipe in turn (A, B, A, B, ...) so machine load hits them alike; prints the median ms/step
 * of each recipe with its range, and the ratio to the first recipe per round (median, range), for wall
 * time and for process CPU time (user + system: less sensitive to other jobs; includes workers' spin).
 * Run: `npx tsx bench/fp8-step.ts [config=small] [B=8] [T=64] [threads=2] [rounds=12] [recipes=fp32,fp8]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { backward, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { initParams, lossFn, trainableParams } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { AdamW } from '../src/train/optim.js';
import { makeProjLinear, parseVariant, recipeSettings } from '../src/fp8/recipe.js';
import { lcgBatch } from './common.js';

const [config = 'small', bArg = '8', tArg = '64', thArg = '2', nArg = '12', rArg = 'fp32,fp8'] = process.argv.slice(2);
const cfg = presets[config];
if (!cfg) throw new Error(`fp8-step: unknown config '${config}' (known: ${Object.keys(presets).join(', ')})`);
const B = Number(bArg), T = Number(tArg), N = Number(nArg);
const recipes = rArg.split(',').map((s) => parseVariant(s.trim()));
await useBackend('auto', { threads: Number(thArg) });
console.log(`${describeBackend()}; ${config} ${B}x${T}; load ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
const runs = recipes.map((recipe) => {
  const params = initParams(cfg, { seed: 1 });
  const tp = trainableParams(params, cfg);
  const s = recipeSettings(recipe);
  const opt = new AdamW(tp, { momentDtype: s.momentDtype });
  const opts = { projLinear: makeProjLinear(recipe), recompute: s.recompute, mtpWeight: 0.3 };
  const times: number[] = [], cpu: number[] = [];
  const step = (i: number): void => {
    const { inputs, targets } = lcgBatch(i + 1, B, T, cfg.vocabSize);
    const x = new Tensor(inputs, [B, T], 'i32'), y = new Tensor(targets, [B * T], 'i32');
    const t0 = performance.now(), c0 = process.cpuUsage();
    const r = lossFn(params, cfg, x, y, opts);
    backward(r.loss);
    opt.step(1e-3);
    zeroGrad(tp);
    if (i > 0) { times.push(performance.now() - t0); const c = process.cpuUsage(c0); cpu.push((c.user + c.system) / 1000); }
  };
  return { recipe, step, times, cpu };
});
for (let i = 0; i <= N; i++) for (const r of runs) r.step(i);
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const r of runs) {
  const ratios = r.times.map((t, i) => t / runs[0]!.times[i]!);
  const cr = r.cpu.map((t, i) => t / runs[0]!.cpu[i]!);
  console.log(`${r.recipe.padEnd(16)} median ${med(r.times).toFixed(1)} ms/step (min ${Math.min(...r.times).toFixed(1)}, max ${Math.max(...r.times).toFixed(1)}); vs ${runs[0]!.recipe} per round: median ${med(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}); ` +
    `CPU time ${med(r.cpu).toFixed(1)} ms/step, ratio ${med(cr).toFixed(3)} (${Math.min(...cr).toFixed(3)}–${Math.max(...cr).toFixed(3)})`);
}
await disposeBackends();
