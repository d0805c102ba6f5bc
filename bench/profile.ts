/**
 * Where Frugal's time goes in one training step (fwd+bwd+AdamW) and one decode step: every
 * registry kernel of the active backend is wrapped with a timer, so the step splits into kernel
 * time per kernel (GEMM share), optimizer time, and the rest (TypeScript ops: elementwise,
 * attention, MoE dispatch, allocation, tape). Run: `npx tsx bench/profile.ts [small|tiny] [B] [T] [threads]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { initParams, lossFn, trainableParams, forward, KVCache } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { timeKernels } from './kernel-timer.js';
import { lcgBatch, lcgTokens, makeAdamW } from './common.js';

const [config = 'small', bArg = '8', tArg = '256', thArg = '2'] = process.argv.slice(2);
const cfg = presets[config];
if (!cfg) throw new Error(`profile: unknown config '${config}' (known: ${Object.keys(presets).join(', ')})`);
const B = Number(bArg), T = Number(tArg);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const spent = timeKernels();
const params = initParams(cfg, { seed: 1 });
const tp = trainableParams(params, cfg);
const { opt } = await makeAdamW(tp);
const { inputs, targets } = lcgBatch(1, B, T, cfg.vocabSize);
const x = new Tensor(inputs, [B, T], 'i32'), y = new Tensor(targets, [B * T], 'i32');
function report(label: string, total: number, extra: Record<string, number>): void {
  console.log(`\n${label}: ${total.toFixed(0)} ms`);
  const rows = [...spent.entries()].map(([k, v]) => [k, v.ms, v.calls] as const);
  for (const [k, v] of Object.entries(extra)) rows.push([k, v, 1]);
  const accounted = rows.reduce((s, r) => s + r[1], 0);
  for (const [k, ms, calls] of rows.sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(22)} ${ms.toFixed(0).padStart(7)} ms ${(100 * ms / total).toFixed(1).padStart(5)}%  (${calls} calls, ${(1000 * ms / calls).toFixed(0)} µs/call)`);
  console.log(`  ${'rest (TS ops, tape, alloc)'.padEnd(22)} ${(total - accounted).toFixed(0).padStart(7)} ms ${(100 * (total - accounted) / total).toFixed(1).padStart(5)}%`);
  spent.clear();
}
const step = (): { total: number; fwd: number; bwd: number; optMs: number } => {
  const t0 = performance.now();
  const r = lossFn(params, cfg, x, y, {});
  const t1 = performance.now();
  backward(r.loss);
  const t2 = performance.now();
  opt.step(1e-4);
  zeroGrad(tp);
  const t3 = performance.now();
  return { total: t3 - t0, fwd: t1 - t0, bwd: t2 - t1, optMs: t3 - t2 };
};
step(); spent.clear();
const s = step();
console.log(`(forward ${s.fwd.toFixed(0)} ms, backward ${s.bwd.toFixed(0)} ms, AdamW+zero ${s.optMs.toFixed(0)} ms)`);
report(`training step ${B}×${T}`, s.total, { 'AdamW + zeroGrad': s.optMs });
noGrad(() => {
  const n = 64, toks = lcgTokens(3, 16 + n, cfg.vocabSize);
  const cache = new KVCache(cfg, 1, 16 + n, 'absorb');
  forward(params, cfg, new Tensor(toks.slice(0, 16), [1, 16], 'i32'), { cache });
  spent.clear();
  const t0 = performance.now();
  for (let i = 16; i < 16 + n; i++) forward(params, cfg, new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), { cache, startPos: i });
  report(`${n} decode steps (batch 1, 16→${16 + n})`, performance.now() - t0, {});
});
await disposeBackends();
