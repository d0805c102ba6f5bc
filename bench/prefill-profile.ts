/**
 * Where a prefill's time goes: every registry kernel of the active backend timed over a few
 * no-grad forwards of batch × seq (the `frugal bench prefill` case), the rest being TypeScript ops,
 * glue and allocation. Run: `npx tsx bench/prefill-profile.ts [small|dense-10m] [threads] [last|all] [reps]`.
 *
 * Contract:
 * - Prints the backend, wall and CPU time per forward (CPU time is the steadier figure on a loaded
 *   machine at 1 thread), then per kernel its ms per forward, share and calls; then the untimed rest.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { timeKernels } from './kernel-timer.js';
import { MODEL_BENCH_CONFIGS, benchModel, lcgBatch } from './common.js';

const [config = 'dense-10m', thArg = '1', which = 'last', repArg = '5'] = process.argv.slice(2);
const shape = MODEL_BENCH_CONFIGS[config];
if (!shape) throw new Error(`prefill-profile: unknown config '${config}' (known: ${Object.keys(MODEL_BENCH_CONFIGS).join(', ')})`);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const model = benchModel(shape, 1);
const B = shape.batch, T = shape.seq, reps = Number(repArg), last = which === 'last';
const x = new Tensor(lcgBatch(2, B, T, model.vocabSize).inputs, [B, T], 'i32');
const run = (): number => noGrad(() => { const t0 = performance.now(); model.forward(x, undefined, undefined, last); return performance.now() - t0; });
run(); run();
const spent = timeKernels();
const times: number[] = [], cpu: number[] = [];
for (let i = 0; i < reps; i++) { const c0 = process.cpuUsage(); times.push(run()); const c = process.cpuUsage(c0); cpu.push((c.user + c.system) / 1e3); }
const total = times.reduce((s, t) => s + t, 0);
console.log(`\nprefill ${config} ${B}×${T} (${last ? 'last' : 'all'} logits), ${reps} reps: ${(total / reps).toFixed(1)} ms/forward (min ${Math.min(...times).toFixed(1)}), ${(B * T / (Math.min(...times) / 1e3)).toFixed(0)} tokens/s at best; CPU time ${(cpu.reduce((a, b) => a + b, 0) / reps).toFixed(1)} ms/forward (min ${Math.min(...cpu).toFixed(1)}; all threads)`);
const rows = [...spent.entries()].sort((a, b) => b[1].ms - a[1].ms);
let acc = 0;
for (const [k, v] of rows) {
  acc += v.ms;
  console.log(`  ${k.padEnd(28)} ${(v.ms / reps).toFixed(2).padStart(8)} ms ${(100 * v.ms / total).toFixed(1).padStart(5)}%  (${v.calls / reps} calls, ${(1000 * v.ms / v.calls).toFixed(0)} µs/call)`);
}
console.log(`  ${'rest (TS ops, glue, alloc)'.padEnd(28)} ${((total - acc) / reps).toFixed(2).padStart(8)} ms ${(100 * (total - acc) / total).toFixed(1).padStart(5)}%`);
await disposeBackends();
