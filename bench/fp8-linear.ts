/**
 * fp8Linear vs the f32 linear, forward + backward, on the projection shapes of a training step of
 * `small` (8x64 tokens: 512-token projections, ~64-token routed experts), interleaved per round;
 * prints the median time of each and the median per-round ratio with its range.
 * Run: `npx tsx bench/fp8-linear.ts [threads=2] [rounds=15]`.
 */
import { Tensor } from '../src/autograd/tensor.js';
import { backward } from '../src/autograd/tape.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import * as op from '../src/ops/index.js';
import { fp8Linear } from '../src/fp8/linear.js';

const [thArg = '2', rArg = '15'] = process.argv.slice(2);
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const shapes: Array<[string, number, number, number]> = [
  ['expert gate/up/down', 64, 256, 256], ['shared expert', 512, 256, 256], ['dense up', 512, 1024, 256], ['dense down', 512, 256, 1024],
  ['q_a', 512, 128, 256], ['q_b', 512, 384, 128], ['kv_a', 512, 80, 256], ['kv_b', 512, 512, 64], ['o_proj', 512, 256, 256],
];
const rnd = (n: number, s: number): Float32Array => { const a = new Float32Array(n); let x = s; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; a[i] = (x / 4294967296 - 0.5) * s * 0.01; } return a; };
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
for (const [name, M, N, K] of shapes) {
  const xd = rnd(M * K, 3), wd = rnd(N * K, 5), g = rnd(M * N, 7);
  const w = new Tensor(wd, [N, K]).param();
  const step = (lin: (x: Tensor, w: Tensor) => Tensor): number => {
    const x = new Tensor(xd, [M, K]).param();
    const t0 = performance.now();
    backward(lin(x, w), g);
    const t = performance.now() - t0;
    w.grad = null; w.version++; // as after an optimizer step: the FP8 weight copy is rebuilt once
    return t;
  };
  const f: number[] = [], q: number[] = [];
  for (let r = 0; r < Number(rArg); r++) { f.push(step(op.linear)); q.push(step(fp8Linear)); }
  const ratios = q.map((t, i) => t / f[i]!);
  console.log(`${name.padEnd(20)} ${M}x${N}x${K}: f32 ${med(f).toFixed(3)} ms, fp8 ${med(q).toFixed(3)} ms, fp8/f32 median ${med(ratios).toFixed(2)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})`);
}
await disposeBackends();
