/**
 * Frugal-only training step timing (no peer): median of N steps of fwd+bwd+AdamW on a bench config.
 * For quick before/after checks while optimising; the fair comparison is `frugal bench train`.
 * CPU time per step (user, sys) counts the timed steps only: on a loaded machine it moves less than wall time.
 * Run: `npx tsx bench/train-steps.ts [small] [B] [T] [threads] [steps] [--mtp]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { backward, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { initParams, lossFn, trainableParams } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { lcgBatch, makeAdamW } from './common.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const mtp = process.argv.includes('--mtp');
const [config = 'small', bArg = '8', tArg = '256', thArg = '2', nArg = '5'] = args;
const cfg = presets[config];
if (!cfg) throw new Error(`train-steps: unknown config '${config}' (known: ${Object.keys(presets).join(', ')})`);
const B = Number(bArg), T = Number(tArg), N = Number(nArg);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const params = initParams(cfg, { seed: 1 });
const tp = trainableParams(params, cfg);
const { opt } = await makeAdamW(tp);
const times: number[] = [];
let cpu0 = process.cpuUsage();
let flt0 = 0;
for (let i = 0; i <= N; i++) {
  const { inputs, targets } = lcgBatch(i + 1, B, T, cfg.vocabSize);
  const x = new Tensor(inputs, [B, T], 'i32'), y = new Tensor(targets, [B * T], 'i32');
  const t0 = performance.now();
  const r = lossFn(params, cfg, x, y, mtp ? { mtpWeight: 0.3 } : {});
  backward(r.loss, undefined, { freeActivations: true });
  opt.step(1e-4);
  zeroGrad(tp);
  if (i > 0) times.push(performance.now() - t0);
  if (i === 0) { flt0 = process.resourceUsage().minorPageFault; cpu0 = process.cpuUsage(); }
}
const faults = (process.resourceUsage().minorPageFault - flt0) / N;
const cpu = process.cpuUsage(cpu0);
times.sort((a, b) => a - b);
const med = times[times.length >> 1]!;
console.log(`${config} ${B}×${T}${mtp ? ' +MTP' : ''}: median ${med.toFixed(0)} ms/step = ${(B * T / med * 1000).toFixed(0)} tokens/s (min ${times[0]!.toFixed(0)}, max ${times[times.length - 1]!.toFixed(0)}); cpu/step user ${(cpu.user / 1e3 / N).toFixed(0)} ms sys ${(cpu.system / 1e3 / N).toFixed(0)} ms; ${faults.toFixed(0)} page faults/step; peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
await disposeBackends();
