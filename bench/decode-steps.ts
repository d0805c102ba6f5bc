/**
 * Frugal-only batch-1 decode timing with the absorbed latent cache (no peer): tokens/s over
 * `steps` single-token steps after a prompt, median of `reps`; `--bf16` decodes with bf16 weights. For quick before/after checks; the
 * fair comparison is `frugal bench decode`. Run: `npx tsx bench/decode-steps.ts [small] [prompt] [steps] [threads] [reps]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { presets } from '../src/model/config.js';
import { initParams, forward, KVCache } from '../src/model/deepseek.js';
import { lcgTokens } from './common.js';
import { bf16Linear } from '../src/infer/bf16-node.js';

const bf16 = process.argv.includes('--bf16');
const [config = 'small', pArg = '16', sArg = '240', thArg = '2', rArg = '3'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const cfg = presets[config];
if (!cfg) throw new Error(`decode-steps: unknown config '${config}' (known: ${Object.keys(presets).join(', ')})`);
const prompt = Number(pArg), steps = Number(sArg), reps = Number(rArg);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const params = initParams(cfg, { seed: 1 });
// --bf16: decode steps read bf16 copies of the weights (src/infer/bf16-node.ts).
const lin = bf16 ? bf16Linear().linear ?? undefined : undefined;
const extra = lin ? { linear: lin } : {};
const rates: number[] = [];
noGrad(() => {
  for (let r = 0; r <= reps; r++) {
    const toks = lcgTokens(3 + r, prompt + steps, cfg.vocabSize);
    const cache = new KVCache(cfg, 1, prompt + steps, 'absorb');
    forward(params, cfg, new Tensor(toks.slice(0, prompt), [1, prompt], 'i32'), { cache });
    const t0 = performance.now();
    for (let i = prompt; i < prompt + steps; i++) forward(params, cfg, new Tensor(toks.slice(i, i + 1), [1, 1], 'i32'), { cache, startPos: i, ...extra });
    if (r > 0) rates.push(steps / ((performance.now() - t0) / 1000));
  }
});
rates.sort((a, b) => a - b);
console.log(`${config}${bf16 ? ' (bf16 weights)' : ''} decode ${prompt}→${prompt + steps}: median ${rates[rates.length >> 1]!.toFixed(0)} tokens/s (min ${rates[0]!.toFixed(0)}, max ${rates[rates.length - 1]!.toFixed(0)})`);
await disposeBackends();
