/**
 * The kernels of one FP8 projection (fp8Linear forward + backward) timed one by one on the native
 * backend, against the three f32 GEMMs of the f32 linear: quantise x (1×128), quantise W (128×128 +
 * transposed codes; once per optimizer step in training), Fprop, quantise dY (1×128), Dgrad,
 * quantise dY (128×1), re-tile x (128×1), Wgrad. Median of 9 samples of 50 calls, two passes.
 * Run: `npx tsx bench/fp8-parts.ts [threads=1] [M,N,K=64,256,256]`.
 */
import { loadNativeBackend } from '../src/backend/native-node.js';
import { setBackend, kernel } from '../src/backend/registry.js';
import * as K8 from '../src/fp8/kernels.js';

const be = loadNativeBackend({ threads: Number(process.argv[2] ?? 1) });
if (!be) throw new Error('fp8-parts: the native backend is not built');
setBackend('native');
console.log(be.describe?.());
const [M, N, K] = (process.argv[3] ?? '64,256,256').split(',').map(Number) as [number, number, number];
const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const x = rnd(M * K), w = rnd(N * K), g = rnd(M * N);
const time = (f: () => void): number => {
  for (let i = 0; i < 20; i++) f();
  const ts: number[] = [];
  for (let r = 0; r < 9; r++) { const t0 = performance.now(); for (let i = 0; i < 50; i++) f(); ts.push(((performance.now() - t0) / 50) * 1000); }
  return ts.sort((a, b) => a - b)[4]!;
};
const qx = K8.quantizeRows(x, M, K, 'fp32', 'native'), wq = K8.quantizeWeight(w, N, K, 'fp32', 'native');
const qg = K8.quantizeRows(g, M, N, 'fp32', 'native'), qgc = K8.quantizeCols(g, M, N, 'fp32', 'native'), qxc = K8.requantizeCols(qx, M, K, 'fp32', 'native');
const KB = Math.ceil(K / 128), NB = Math.ceil(N / 128);
const y = new Float32Array(M * N), gx = new Float32Array(M * K), gw = new Float32Array(N * K);
const mm = kernel('MatMul');
const f32 = (a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, tA: boolean, tB: boolean) => () =>
  mm({ a, b, c, batch: 1, m, n, k, transA: tA, transB: tB, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
for (let pass = 0; pass < 2; pass++) {
  const r: Record<string, number> = {
    'quantise x': time(() => K8.quantizeRows(x, M, K, 'fp32', 'native')),
    'quantise W': time(() => K8.quantizeWeight(w, N, K, 'fp32', 'native')),
    'Fprop': time(() => K8.scaledGemm({ a: qx.codes, aTrans: false, sa: qx.scales, saKb: 1, saRow: KB, b: wq.codesT, sb: wq.scales, sbKb: 1, sbDiv: 128, sbCol: KB, m: M, n: N, k: K }, 'native', y)),
    'quantise dY rows': time(() => K8.quantizeRows(g, M, N, 'fp32', 'native')),
    'Dgrad': time(() => K8.scaledGemm({ a: qg.codes, aTrans: false, sa: qg.scales, saKb: 1, saRow: NB, b: wq.codes, sb: wq.scales, sbKb: KB, sbDiv: 128, sbCol: 1, m: M, n: K, k: N }, 'native', gx)),
    'quantise dY cols': time(() => K8.quantizeCols(g, M, N, 'fp32', 'native')),
    're-tile x': time(() => K8.requantizeCols(qx, M, K, 'fp32', 'native')),
    'Wgrad': time(() => K8.scaledGemm({ a: qgc.codes, aTrans: true, sa: qgc.scales, saKb: N, saRow: 1, b: qxc.codes, sb: qxc.scales, sbKb: K, sbDiv: 1, sbCol: 1, m: N, n: K, k: M }, 'native', gw)),
    'f32 forward': time(f32(x, w, y, M, N, K, false, true)),
    'f32 dgrad': time(f32(g, w, gx, M, K, N, false, false)),
    'f32 wgrad': time(f32(g, x, gw, N, K, M, true, false)),
  };
  if (pass === 0) continue;
  for (const [k, v] of Object.entries(r)) console.log(k.padEnd(18), v.toFixed(1).padStart(8), 'µs');
  const fp8 = ['quantise x', 'quantise W', 'Fprop', 'quantise dY rows', 'Dgrad', 'quantise dY cols', 're-tile x', 'Wgrad'].reduce((s, k) => s + r[k]!, 0);
  const q = ['quantise x', 'quantise W', 'quantise dY rows', 'quantise dY cols', 're-tile x'].reduce((s, k) => s + r[k]!, 0);
  const f = r['f32 forward']! + r['f32 dgrad']! + r['f32 wgrad']!;
  console.log(`${M}x${N}x${K}: FP8 ${fp8.toFixed(1)} µs (quantising ${q.toFixed(1)}), f32 GEMMs ${f.toFixed(1)} µs, FP8/f32 ${(fp8 / f).toFixed(2)}`);
}
be.dispose?.();
