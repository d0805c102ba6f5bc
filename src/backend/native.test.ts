// native backend vs the ts reference: every f32 kernel family the CPU can run (avx512, avx2,
// portable), odd shapes, all transposes, batching with broadcast, accumulate, 1 and 2 threads;
// RMSNorm/Softmax/SiluMul and the SiluMul/RMSNorm backwards; BF16 and FP8 GEMMs vs the exact emulation of src/fp8. Skipped (with
// the reason) when build/Release/frugal_native.node is not built.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { tsMatMul, tsRMSNorm, tsSoftmax, tsSiluMul, tsSiluMulBackward, tsRMSNormBackward } from './ts.js';
import type { MatMulArgs } from './registry.js';
import { loadNativeBackend, nativeUnavailableReason } from './native-node.js';
import { quantizeTiles, quantizeBlocks, fp8Gemm } from '../fp8/quant.js';
import { encodeBf16, decodeBf16 } from '../fp8/codec.js';

const be = loadNativeBackend({ threads: 2 });
const skip = be ? false : `native addon not built: ${nativeUnavailableReason()}`;
if (skip) console.log(`# native.test.ts skipped: ${skip}`);
after(() => { be?.addon.setIsa('auto'); be?.setThreads(2); });

let seed = 777;
function rand(n: number, scale = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = (seed / 2 ** 32 - 0.5) * scale; }
  return x;
}
function maxDiff(x: Float32Array, y: Float32Array): number {
  let e = 0;
  for (let i = 0; i < x.length; i++) { const d = Math.abs(x[i]! - y[i]!); if (!(d <= e)) e = d; }
  return e;
}
/** Native vs ts MatMul on the same operands and initial C; returns max |diff|. */
function compare(x: Omit<MatMulArgs, 'c'> & { cLen: number }): number {
  const c0 = rand(x.cLen);
  const ref = c0.slice(), got = c0.slice();
  tsMatMul({ ...x, c: ref });
  be!.kernels.MatMul!({ ...x, c: got });
  return maxDiff(ref, got);
}
function plain(m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate = false) {
  return { a: rand(m * k), b: rand(k * n), batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0, strideC: 0, accumulate, cLen: m * n };
}
const families = (): string[] => {
  const f = be!.cpuFeatures();
  return f.avx512f && f.isa === 'avx512' ? ['avx512', 'avx2', 'portable'] : f.avx2 ? ['avx2', 'portable'] : ['portable'];
};

test('MatMul matches ts: odd shapes, all transposes, every kernel family, 1 and 2 threads', { skip }, () => {
  const dims = [1, 7, 129, 130];
  for (const isa of families()) {
    assert.equal(be!.addon.setIsa(isa as 'avx512'), isa);
    for (const threads of [1, 2]) {
      be!.setThreads(threads);
      for (const m of dims) for (const n of [1, 33, 130]) for (const k of [1, 17, 300]) {
        for (const tA of [false, true]) for (const tB of [false, true]) {
          const e = compare(plain(m, n, k, tA, tB, (m + n + k) % 2 === 0));
          assert.ok(e < 1e-4, `${isa} T=${threads} m=${m} n=${n} k=${k} tA=${tA} tB=${tB}: max |diff| ${e}`);
        }
      }
    }
  }
  be!.addon.setIsa('auto');
});

test('few-row products (m ≤ 8): each row bit-identical to that row alone (f32 every family, bf16), 1 and 2 threads', { skip }, () => {
  // Speculative decoding's exactness rests on this: a 2-row verify step reproduces plain decoding.
  for (const isa of families()) {
    be!.addon.setIsa(isa as 'avx512');
    for (const threads of [1, 2]) {
      be!.setThreads(threads);
      for (const [m, n, k] of [[2, 130, 17], [3, 2100, 128], [8, 97, 300], [5, 64, 8], [7, 1030, 33]] as const) {
        for (const tB of [false, true]) {
          const a = rand(m * k), b = rand(n * k), c = rand(m * n), one = new Float32Array(n);
          const acc = n % 2 === 0;
          const c0 = c.slice();
          be!.addon.matmul(a, b, c, 1, m, n, k, false, tB, 0, 0, 0, acc);
          for (let i = 0; i < m; i++) {
            one.set(c0.subarray(i * n, (i + 1) * n));
            be!.addon.matmul(a.subarray(i * k, (i + 1) * k), b, one, 1, 1, n, k, false, tB, 0, 0, 0, acc);
            assert.deepEqual(c.subarray(i * n, (i + 1) * n), one, `${isa} T=${threads} ${m}x${n}x${k} tB=${tB} row ${i}`);
          }
          if (!tB || !be!.addon.gemvBf16 || isa !== families()[0]) continue;
          const wb = encodeBf16(b), y = new Float32Array(m * n), y1 = new Float32Array(n);
          be!.addon.gemvBf16(a, wb, y, m, n, k);
          for (let i = 0; i < m; i++) {
            be!.addon.gemvBf16(a.subarray(i * k, (i + 1) * k), wb, y1, 1, n, k);
            assert.deepEqual(y.subarray(i * n, (i + 1) * n), y1, `bf16 T=${threads} ${m}x${n}x${k} row ${i}`);
          }
        }
      }
    }
  }
  be!.addon.setIsa('auto');
});

test('MatMul matches ts on blocking edges (> one KC/MC/NC panel) and k = 0', { skip }, () => {
  for (const threads of [1, 2]) {
    be!.setThreads(threads);
    for (const [m, n, k] of [[181, 4100, 9], [300, 70, 700], [2, 3, 0], [5, 1, 1000], [1, 2100, 333]] as const) {
      for (const tB of [false, true]) {
        const e = compare(plain(m, n, k, false, tB, k === 0));
        assert.ok(e < 2e-4, `T=${threads} ${m}x${n}x${k} tB=${tB}: max |diff| ${e}`);
      }
    }
  }
});

test('MatMul batched: strides, stride-0 broadcast of A or B, accumulate into a shared C', { skip }, () => {
  for (const threads of [1, 2]) {
    be!.setThreads(threads);
    const [m, n, k, batch] = [37, 45, 29, 5];
    for (const [sa, sb, sc, acc] of [[m * k, k * n, m * n, false], [0, k * n, m * n, true], [m * k, 0, m * n, false], [m * k, k * n, 0, true]] as const) {
      const x = { a: rand(sa ? batch * sa : m * k), b: rand(sb ? batch * sb : k * n), batch, m, n, k, transA: false, transB: true,
        strideA: sa, strideB: sb, strideC: sc, accumulate: acc, cLen: sc ? batch * sc : m * n };
      const e = compare(x);
      assert.ok(e < 1e-4, `T=${threads} strides ${sa}/${sb}/${sc} acc=${acc}: max |diff| ${e}`);
    }
    // Many batch entries (split across threads by batch).
    const many = { a: rand(16 * 40 * 24), b: rand(16 * 24 * 36), batch: 16, m: 40, n: 36, k: 24, transA: true, transB: false,
      strideA: 40 * 24, strideB: 24 * 36, strideC: 40 * 36, accumulate: false, cLen: 16 * 40 * 36 };
    assert.ok(compare(many) < 1e-4);
  }
});

test('RMSNorm, Softmax, SiluMul match ts (every family)', { skip }, () => {
  for (const isa of families()) {
    be!.addon.setIsa(isa as 'avx512');
    for (const [rows, cols] of [[1, 1], [3, 17], [65, 256], [300, 333]] as const) {
      const x = rand(rows * cols, 8), w = rand(cols, 2);
      const r1 = new Float32Array(rows * cols), r2 = new Float32Array(rows * cols);
      const s1 = new Float32Array(rows), s2 = new Float32Array(rows);
      tsRMSNorm(x, w, r1, rows, cols, 1e-6, s1);
      be!.kernels.RMSNorm!(x, w, r2, rows, cols, 1e-6, s2);
      assert.ok(maxDiff(r1, r2) < 2e-5 && maxDiff(s1, s2) < 1e-5, `${isa} RMSNorm ${rows}x${cols}: ${maxDiff(r1, r2)}`);
      x[0] = -Infinity;
      tsSoftmax(x, r1, rows, cols);
      be!.kernels.Softmax!(x, r2, rows, cols);
      assert.ok(maxDiff(r1, r2) < 1e-6, `${isa} Softmax ${rows}x${cols}: ${maxDiff(r1, r2)}`);
      const u = rand(rows * cols, 4);
      x[0] = 3;
      tsSiluMul(x, u, r1);
      be!.kernels.SiluMul!(x, u, r2);
      assert.ok(maxDiff(r1, r2) < 2e-5, `${isa} SiluMul ${rows}x${cols}: ${maxDiff(r1, r2)}`);
    }
    // A row of -Infinity gives zeros (as ts does), in place.
    const y = new Float32Array([-Infinity, -Infinity, 1, 2]);
    be!.kernels.Softmax!(y, y, 2, 2);
    assert.deepEqual([...y.subarray(0, 2)], [0, 0]);
    assert.ok(Math.abs(y[3]! - 1 / (1 + Math.exp(-1))) < 1e-6);
  }
  be!.addon.setIsa('auto');
});

test('SiluMulBackward and RMSNormBackward match ts: odd shapes, every family, 1 and 2 threads, null outputs', { skip }, () => {
  // 700x512 crosses the single-thread threshold, so the per-thread gradW partial sums are exercised.
  const shapes = [[1, 1], [7, 129], [3, 17], [65, 256], [700, 512]] as const;
  for (const isa of families()) {
    be!.addon.setIsa(isa as 'avx512');
    for (const threads of [1, 2]) {
      be!.setThreads(threads);
      for (const [rows, cols] of shapes) {
        const n = rows * cols, tag = `${isa} T=${threads} ${rows}x${cols}`;
        const g = rand(n, 16), u = rand(n, 4), go = rand(n, 2);
        g[0] = -120; if (n > 1) g[1] = 95;  // saturated sigmoid on both sides
        const gg1 = new Float32Array(n), gu1 = new Float32Array(n), gg2 = new Float32Array(n).fill(7), gu2 = new Float32Array(n).fill(7);
        tsSiluMulBackward(g, u, go, gg1, gu1);
        be!.kernels.SiluMulBackward!(g, u, go, gg2, gu2);
        assert.ok(maxDiff(gg1, gg2) < 2e-5 && maxDiff(gu1, gu2) < 2e-5, `${tag} SiluMulBackward: ${maxDiff(gg1, gg2)} ${maxDiff(gu1, gu2)}`);

        const x = rand(n, 8), w = rand(cols, 2), rstd = new Float32Array(rows);
        tsRMSNorm(x, w, new Float32Array(n), rows, cols, 1e-6, rstd);
        const gw0 = rand(cols, 1);  // gradW accumulates onto what is there
        const gx1 = new Float32Array(n), gw1 = gw0.slice(), gx2 = new Float32Array(n).fill(7), gw2 = gw0.slice();
        tsRMSNormBackward(x, w, rstd, go, gx1, gw1, rows, cols);
        be!.kernels.RMSNormBackward!(x, w, rstd, go, gx2, gw2, rows, cols);
        const tolW = 2e-5 * Math.max(1, Math.sqrt(rows));
        assert.ok(maxDiff(gx1, gx2) < 2e-5, `${tag} RMSNormBackward gradX: ${maxDiff(gx1, gx2)}`);
        assert.ok(maxDiff(gw1, gw2) < tolW, `${tag} RMSNormBackward gradW: ${maxDiff(gw1, gw2)}`);
        // Only one output requested: the other is skipped, the requested one is unchanged.
        const gx3 = new Float32Array(n), gw3 = gw0.slice();
        be!.kernels.RMSNormBackward!(x, w, rstd, go, gx3, null, rows, cols);
        be!.kernels.RMSNormBackward!(x, w, rstd, go, null, gw3, rows, cols);
        assert.ok(maxDiff(gx1, gx3) < 2e-5 && maxDiff(gw1, gw3) < tolW, `${tag} RMSNormBackward with a null output`);
      }
    }
  }
  be!.addon.setIsa('auto');
  be!.setThreads(2);
});

test('FP8 GEMM matches the exact emulation (src/fp8 fp8Gemm), ragged K and N', { skip }, () => {
  for (const isa of ['auto', 'portable'] as const) {
    be!.addon.setIsa(isa);
    for (const threads of [1, 2]) {
      be!.setThreads(threads);
      for (const [M, N, K] of [[1, 256, 384], [7, 130, 200], [33, 300, 1100], [20, 129, 129]] as const) {
        const a = quantizeTiles(rand(M * K, 6), M, K), b = quantizeBlocks(rand(N * K, 0.2), N, K);
        const ref = fp8Gemm(a, b, M, N, K);
        const got = be!.fp8Gemm(a, b, M, N, K);
        let scale = 0;
        for (const v of ref) scale = Math.max(scale, Math.abs(v));
        const e = maxDiff(ref, got);
        assert.ok(e <= 2e-6 * scale * Math.sqrt(K / 128) + 1e-7, `${isa} T=${threads} ${M}x${N}x${K}: max |diff| ${e} (max |C| ${scale})`);
        // accumulate adds onto C
        const twice = be!.fp8Gemm(a, b, M, N, K, got.slice(), true);
        assert.ok(maxDiff(twice, ref.map((v) => 2 * v)) <= 4e-6 * scale * Math.sqrt(K / 128) + 1e-7);
      }
    }
  }
  be!.addon.setIsa('auto');
});

test('BF16 GEMM matches a float64 reference of the bf16-rounded operands', { skip }, () => {
  for (const threads of [1, 2]) {
    be!.setThreads(threads);
    for (const [M, N, K] of [[1, 64, 1], [9, 70, 257], [100, 260, 520]] as const) {
      const a = encodeBf16(rand(M * K)), b = encodeBf16(rand(N * K));
      const af = decodeBf16(a), bf = decodeBf16(b);
      const got = be!.bf16Gemm(a, b, M, N, K);
      let e = 0;
      for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
        let s = 0;
        for (let p = 0; p < K; p++) s += af[i * K + p]! * bf[j * K + p]!;
        e = Math.max(e, Math.abs(s - got[i * N + j]!));
      }
      assert.ok(e < 1e-5 * Math.sqrt(K), `T=${threads} ${M}x${N}x${K}: max |diff| ${e}`);
    }
  }
});

test('bad arguments throw errors that name the argument', { skip }, () => {
  const f = new Float32Array(4);
  assert.throws(() => be!.addon.rmsnormBackward(f, f, f, f, new Float32Array(3), null, 2, 2), /gradX has 3 elements, needs 4/);
  assert.throws(() => be!.addon.siluMulBackward(f, f, new Float32Array(2), f, f), /gradOut has 2 elements, needs 4/);
  assert.throws(() => be!.addon.matmul(f, f, f, 1, 3, 3, 3, false, false, 0, 0, 0, false), /matmul: a has 4 elements, needs 9/);
  assert.throws(() => be!.addon.softmax(new Float64Array(4) as unknown as Float32Array, f, 2, 2), /x must be a Float32Array/);
  assert.throws(() => be!.addon.setThreads(0), /threads must be 1..256/);
  assert.match(be!.describe!(), /native \(C\+\+ N-API: f32 GEMM \w+/);
});
