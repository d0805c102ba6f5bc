/**
 * Child process of `frugal bench memory`: runs one Frugal job (two training steps, or one decode
 * run) on a bench config and prints `{"maxRssKB": N}` (process.resourceUsage().maxRSS) as its
 * last stdout line. Usage: memory-child <config> <train|decode> <threads> <backend>.
 */
import { readFileSync } from 'node:fs';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad, zeroGrad } from '../src/autograd/tape.js';
import { useBackend, disposeBackends, type BackendChoice } from '../src/backend/setup-node.js';
import { MODEL_BENCH_CONFIGS, benchModel, lcgBatch, lcgTokens, makeAdamW } from './common.js';

const [config = 'small', what = 'train', threads = '2', backend = 'auto'] = process.argv.slice(2);
const shape = MODEL_BENCH_CONFIGS[config];
if (!shape) { console.error(`memory-child: unknown config '${config}'`); process.exit(2); }
const { batch: B, seq: T } = shape;
await useBackend(backend as BackendChoice, { threads: Number(threads) });
const model = benchModel(shape, 1);
if (what === 'train') {
  const { inputs, targets } = lcgBatch(1, B, T, model.vocabSize);
  const tp = model.trainable();
  const { opt } = await makeAdamW(tp);
  for (let i = 0; i < 2; i++) {
    backward(model.loss(new Tensor(inputs, [B, T], 'i32'), new Tensor(targets, [B * T], 'i32'), 0), undefined, { freeActivations: true });
    opt.step(1e-4);
    zeroGrad(tp);
  }
} else {
  const d = shape.decodeShort;
  const toks = lcgTokens(3, d.prompt + d.steps, model.vocabSize);
  noGrad(() => {
    const cache = model.makeCache(d.prompt + d.steps);
    model.forward(new Tensor(toks.slice(0, d.prompt), [1, d.prompt], 'i32'), cache, 0);
    for (let i = d.prompt; i < d.prompt + d.steps; i++) model.forward(new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), cache, i);
  });
}
// VmHWM is this process's own peak; getrusage's maxRSS on Linux keeps the parent's high-water
// mark across fork+exec, which made a small child report its (large) parent's peak.
let hwm = process.resourceUsage().maxRSS;
try { const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8')); if (m) hwm = Number(m[1]); } catch { /* not Linux */ }
console.log(JSON.stringify({ maxRssKB: hwm }));
await disposeBackends();
