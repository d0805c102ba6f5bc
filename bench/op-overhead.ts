/**
 * Fixed cost of one op call (validation, dispatch, allocation, autograd record, thread hand-off)
 * on tiny tensors, per backend, and the share it takes in a 64-wide model's training step.
 * Run: npx tsx bench/op-overhead.ts
 */
import { useBackend, disposeBackends } from '../src/backend/setup-node.js';
import { setBackend, listBackends, getBackend } from '../src/backend/registry.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad } from '../src/autograd/tape.js';
import * as op from '../src/ops/index.js';
import { randn } from '../src/ops/gradcheck.js';
import { initParams, lossFn } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';

function usPer(fn: () => void, n: number): number {
  for (let i = 0; i < Math.min(200, n); i++) fn();
  const ts: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    ts.push(((performance.now() - t0) * 1000) / n);
  }
  return ts.sort((a, b) => a - b)[2]!;
}

const rows: string[] = ['| backend | add 64 (noGrad) | add 64 (recorded) | linear 1×64·64ᵀ | linear 8×64·64ᵀ fwd+bwd | tiny model step, 2×16 tokens (ms) | ops in that step |', '|---|---|---|---|---|---|---|'];
for (const name of ['ts', 'wasm', 'native']) {
  try { if (name === 'ts') setBackend('ts'); else await useBackend(name as 'wasm' | 'native', { threads: 2 }); } catch { continue; }
  if (getBackend().name !== name) continue;
  const a = randn([64], 1), b = randn([64], 2);
  const w = randn([64, 64], 3).param(), x1 = randn([1, 64], 4), x8 = randn([8, 64], 5);
  const addNg = usPer(() => { noGrad(() => op.add(a, b)); }, 20000);
  const pa = randn([64], 6).param();
  const addRec = usPer(() => { op.add(pa, b); }, 20000);
  const lin1 = usPer(() => { noGrad(() => op.linear(x1, w)); }, 20000);
  const lin8 = usPer(() => { backward(op.sum(op.linear(x8, w))); }, 5000);
  const cfg = presets.tiny!;
  const p = initParams(cfg, { seed: 1 });
  const inp = Tensor.ints(Array.from({ length: 32 }, (_, i) => (i * 7) % cfg.vocabSize), [2, 16]);
  const tgt = Tensor.ints(Array.from({ length: 32 }, (_, i) => (i * 11) % cfg.vocabSize), [32]);
  let nodes = 0;
  const stepMs = usPer(() => { const r = lossFn(p, cfg, inp, tgt, { mtpWeight: 0.3 }); nodes = countNodes(r.loss); backward(r.loss); }, 20) / 1000;
  rows.push(`| ${name} | ${addNg.toFixed(2)} µs | ${addRec.toFixed(2)} µs | ${lin1.toFixed(2)} µs | ${lin8.toFixed(2)} µs | ${stepMs.toFixed(2)} | ${nodes} |`);
}
console.log(`backends: ${listBackends().join(', ')}\n`);
console.log(rows.join('\n'));
await disposeBackends();

function countNodes(t: Tensor): number {
  const seen = new Set<number>();
  const stack = [t];
  while (stack.length) {
    const u = stack.pop()!;
    if (seen.has(u.id) || !u.node) continue;
    seen.add(u.id);
    for (const i of u.node.inputs) stack.push(i);
  }
  return seen.size;
}
