// Q8_0 decode: the TypeScript reference against plain arithmetic on dequantised operands, the
// activation quantiser's ggml rounding, and the native gemvQ8 (every kernel family the CPU runs,
// 1 and 2 threads, m = 1..4, odd n) against the reference. Native parts skip when the addon is not built.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { gemvQ8Ref, quantizeActivationsQ8 } from './q8.js';
import { dequantizeQ8_0, quantizeQ8_0 } from '../io/gguf-quant.js';
import { loadNativeBackend, nativeUnavailableReason } from '../backend/native-node.js';

let seed = 99;
const rand = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return (seed / 2 ** 32 - 0.5) * scale; });

test('activations quantise as ggml-cpu x86 does: id = 127/max, ties to even', () => {
  const x = new Float32Array(32);
  x[0] = 127; x[1] = 2.5; x[2] = 3.5; x[3] = -2.5; x[4] = 0.5;
  const q = new Int8Array(quantizeActivationsQ8(x).buffer, 2, 32);
  assert.deepEqual(Array.from(q.slice(0, 5)), [127, 2, 4, -2, 0]); // weights' quantiser gives 3, 4, -3, 1
});

test('gemvQ8Ref = exact dot products of the dequantised Q8_0 operands (f32 sums)', () => {
  const m = 3, n = 7, k = 96;
  const x = rand(m * k, 4), w = quantizeQ8_0(rand(n * k));
  const y = new Float32Array(m * n);
  gemvQ8Ref(x, w, y, m, n, k);
  const wd = dequantizeQ8_0(w);
  for (let i = 0; i < m; i++) {
    const xd = dequantizeQ8_0(quantizeActivationsQ8(x.subarray(i * k, (i + 1) * k)));
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += xd[t]! * wd[j * k + t]!;
      assert.ok(Math.abs(y[i * n + j]! - s) <= 1e-5 * (1 + Math.abs(s)), `${i},${j}: ${y[i * n + j]} vs ${s}`);
    }
  }
  assert.throws(() => gemvQ8Ref(x, w, y, m, n, 95), /multiple of 32/);
});

const be = loadNativeBackend({ threads: 2 });
const addon = be?.addon as unknown as { gemvQ8?: (x: Float32Array, w: Uint8Array, y: Float32Array, m: number, n: number, k: number) => void; setIsa(s: string): boolean; cpuFeatures(): { isa: string; q8?: string } } | undefined;
after(() => { addon?.setIsa('auto'); be?.setThreads(2); });

test('native gemvQ8 matches the reference on every kernel family, threads 1 and 2', (t) => {
  if (!be || !addon?.gemvQ8) return t.skip(`native addon not built: ${nativeUnavailableReason()}`);
  const families = ['portable', 'avx2', 'avx512'];
  let ran = 0;
  for (const fam of families) {
    if (!addon.setIsa(fam) || addon.cpuFeatures().isa !== fam) continue;
    ran++;
    for (const threads of [1, 2]) {
      be.setThreads(threads);
      for (const [m, n, k] of [[1, 1, 32], [1, 67, 256], [4, 130, 512], [2, 1031, 1024], [3, 5000, 64]] as const) {
        const x = rand(m * k, 3), w = quantizeQ8_0(rand(n * k));
        const want = new Float32Array(m * n), got = new Float32Array(m * n);
        gemvQ8Ref(x, w, want, m, n, k);
        addon.gemvQ8(x, w, got, m, n, k);
        let e = 0;
        for (let i = 0; i < want.length; i++) e = Math.max(e, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
        assert.ok(e <= 1e-5, `${fam} T=${threads} ${m}x${n}x${k}: rel ${e}`);
      }
    }
  }
  assert.ok(ran >= 1);
  assert.throws(() => addon.gemvQ8!(new Float32Array(40), new Uint8Array(34), new Float32Array(1), 1, 1, 40), /multiple of 32/);
  assert.throws(() => addon.gemvQ8!(new Float32Array(32), new Uint8Array(33), new Float32Array(1), 1, 1, 32), /w has 33 elements/);
});
