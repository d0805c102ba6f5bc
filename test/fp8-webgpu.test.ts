// The FP8 recipe's WGSL kernels (src/backend/webgpu/wgsl-fp8.ts) on the webgpu backend — Dawn in
// Node, on SwiftShader without a GPU — against the TypeScript reference: the quantisers' codes and
// scales bit for bit (both scale formats, ragged shapes, ±inf, NaN, −0, subnormal and saturating
// values), the decode of all 256 E4M3 codes exact, the scaled GEMM in the recipe's three layouts
// within the native tests' tolerance (1e-5 of the float64 sum) and bit for bit with power-of-two
// (ue8m0) scales, accumulate, the accumulator ablation, and fp8Linear choosing these kernels.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { disposeBackends } from '../src/backend/setup-node.js';
import { backendsUnderTest, whyNotUnderTest, withBackend } from '../src/backend/testing-node.js';
import { kernel, kernelCounts, resetKernelCounts, type Fp8GemmArgs } from '../src/backend/registry.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward } from '../src/autograd/tape.js';
import * as op from '../src/ops/index.js';
import { E4M3_TO_F32 } from '../src/fp8/codec.js';
import { type ScaleFormat } from '../src/fp8/quant.js';
import { scaledGemm, type ScaledGemmOperands } from '../src/fp8/kernels.js';
import { fp8Linear, resolveFp8Gemm } from '../src/fp8/linear.js';
import { edgy, gauss, gemmLayouts, gemmRef, quantAll, relErr, sameCodes, sameF32Bits } from './fp8-cases.js';

const gpu = (await backendsUnderTest({ webgpu: true })).includes('webgpu');
const skip = gpu ? false : `webgpu not under test: ${whyNotUnderTest('webgpu')}`;
after(() => disposeBackends());


test('webgpu quantisers: codes and scales equal the TS reference bit for bit (both scale formats, ragged shapes, edge values)', { skip }, async () => {
  for (const fmt of ['fp32', 'ue8m0'] as ScaleFormat[]) {
    for (const [R, C] of [[200, 300], [130, 17], [1, 5], [129, 129], [7, 1000], [3, 2]] as const) {
      const x = edgy(R, C, R * 31 + C);
      const tag = `${fmt} ${R}x${C}`;
      const t = quantAll(x, R, C, fmt, 'ts');
      resetKernelCounts();
      const g = await withBackend('webgpu', () => quantAll(x, R, C, fmt, 'native'));
      for (const k of ['Fp8QuantizeRows', 'Fp8QuantizeCols', 'Fp8QuantizeWeight', 'Fp8RequantizeCols']) assert.ok(kernelCounts()[`webgpu:${k}`], `${k} did not run on webgpu`);
      for (const k of ['rows', 'cols', 'w', 'requant'] as const) {
        sameCodes(g[k].codes, t[k].codes, `${tag} ${k} codes`);
        sameF32Bits(g[k].scales, t[k].scales, `${tag} ${k} scales`);
      }
      sameCodes(g.w.codesT, t.w.codesT, `${tag} weight codesT`);
    }
  }
});

test('webgpu FP8 GEMM decodes all 256 E4M3 codes exactly (NaN codes to NaN)', { skip }, async () => {
  const a = Uint8Array.from({ length: 256 }, (_, i) => i);
  const c = new Float32Array(256);
  const g: Fp8GemmArgs = { a, aTrans: false, sa: new Float32Array(256).fill(1), saKb: 1, saRow: 1, b: Uint8Array.of(0x38), sb: Float32Array.of(1), sbKb: 1, sbDiv: 128, sbCol: 1, c, m: 256, n: 1, k: 1, accumulate: false };
  await withBackend('webgpu', () => kernel('Fp8ScaledGemm')(g));
  for (let i = 0; i < 256; i++) {
    const want = E4M3_TO_F32[i]!;
    assert.ok(Number.isNaN(want) ? Number.isNaN(c[i]) : c[i] === want, `code 0x${i.toString(16)}: ${c[i]} vs ${want}`);
  }
});

test('webgpu FP8 GEMM: Fprop, Dgrad and Wgrad layouts within 1e-5 of the float64 sum; bit for bit with ue8m0 scales; accumulate adds', { skip }, async () => {
  for (const [M, N, K] of [[37, 70, 300], [200, 150, 129], [5, 33, 64], [64, 256, 256], [3, 2, 1]] as const) {
    for (const fmt of ['fp32', 'ue8m0'] as ScaleFormat[]) {
      for (const [name, g] of Object.entries(gemmLayouts(M, N, K, fmt, 'ts'))) {
        const tag = `${M}x${N}x${K} ${fmt} ${name}`;
        // The TS reference with the ts MatMul (its panels are the K-ordered f32 sums the shader makes).
        const ts = scaledGemm(g, 'ts');
        const ref = gemmRef(g);
        resetKernelCounts();
        const gp = await withBackend('webgpu', () => scaledGemm(g, 'native'));
        assert.ok(kernelCounts()['webgpu:Fp8ScaledGemm'], `${tag}: not run on webgpu`);
        const e = relErr(gp, ref);
        assert.ok(e < 1e-5, `${tag}: relative error ${e} (ts: ${relErr(ts, ref)})`);
        if (fmt === 'ue8m0') sameF32Bits(gp, ts, `${tag} vs ts`);
        const acc = Float32Array.from(gp);
        await withBackend('webgpu', () => scaledGemm(g, 'native', acc, true));
        assert.ok(relErr(acc, Float64Array.from(ref, (v) => 2 * v)) < 1e-5, `${tag}: accumulate`);
      }
    }
  }
});

test('webgpu FP8 GEMM: the accumulator ablation follows the TS emulation (14-bit sums, promotion every 128)', { skip }, async () => {
  const M = 6, N = 40, K = 4096;
  const g: ScaledGemmOperands = gemmLayouts(M, N, K, 'fp32', 'ts', 5).fprop;
  const ref = gemmRef(g);
  const err: number[] = [];
  for (const accum of [0, 1, 2] as const) {
    const ts = scaledGemm({ ...g, accum }, 'ts');
    const gp = await withBackend('webgpu', () => scaledGemm({ ...g, accum }, 'native'));
    err.push(relErr(gp, ref));
    if (accum) assert.ok(relErr(gp, ts) < 0.5 * relErr(ts, ref), `accum ${accum}: webgpu ${relErr(gp, ref)} vs TS emulation ${relErr(ts, ref)} (differ by ${relErr(gp, ts)})`);
  }
  assert.ok(err[0]! < 1e-6, `fp32 accumulation: ${err[0]}`);
  assert.ok(err[1]! > 10 * err[0]!, `14-bit accumulation had no effect: ${err[1]} vs ${err[0]}`);
  assert.ok(err[2]! > 2 * err[1]!, `no promotion (${err[2]}) should be clearly worse than promotion every 128 (${err[1]})`);
});

test('fp8Linear on webgpu runs the WGSL kernels and equals the TS path within float noise (forward, dX, dW)', { skip }, async () => {
  const M = 200, N = 160, K = 200; // M spans two 128-token blocks (Wgrad runs one call per block)
  const run = (gemm: 'ts' | 'auto') => {
    const x = new Tensor(gauss(M * K, 31), [M, K]).param(), w = new Tensor(gauss(N * K, 32, 0.05), [N, K]).param();
    const y = fp8Linear(x, w, { gemm });
    backward(op.sum(op.mul(y, new Tensor(gauss(M * N, 33), [M, N]))));
    return { y: y.f32, gx: x.grad!, gw: w.grad! };
  };
  const ts = run('ts');
  resetKernelCounts();
  const gp = await withBackend('webgpu', () => { assert.equal(resolveFp8Gemm(), 'native'); return run('auto'); });
  const ran = kernelCounts();
  for (const k of ['Fp8QuantizeRows', 'Fp8QuantizeCols', 'Fp8QuantizeWeight', 'Fp8RequantizeCols', 'Fp8ScaledGemm']) assert.ok(ran[`webgpu:${k}`], `fp8Linear did not run webgpu:${k}: ${JSON.stringify(ran)}`);
  for (const k of ['y', 'gx', 'gw'] as const) assert.ok(relErr(gp[k], ts[k]) < 1e-5, `${k}: webgpu vs ts ${relErr(gp[k], ts[k])}`);
});

test('webgpu FP8 kernels reject operands that are too short with a RangeError naming them', { skip }, async () => {
  const g: Fp8GemmArgs = { a: new Uint8Array(10), aTrans: false, sa: new Float32Array(1), saKb: 1, saRow: 1, b: new Uint8Array(10), sb: new Float32Array(1), sbKb: 1, sbDiv: 128, sbCol: 1, c: new Float32Array(4), m: 2, n: 2, k: 5, accumulate: false };
  await withBackend('webgpu', () => {
    assert.throws(() => kernel('Fp8ScaledGemm')({ ...g, m: 3 }), /a has 10 elements, needs 15/);
    assert.throws(() => kernel('Fp8ScaledGemm')({ ...g, sbDiv: 0 }), /sbDiv must be >= 1/);
    assert.throws(() => kernel('Fp8ScaledGemm')({ ...g, saRow: 3 }), /sa \(largest index/);
    assert.throws(() => kernel('Fp8QuantizeRows')(new Float32Array(5), 2, 3, new Uint8Array(6), new Float32Array(2), false), /x has 5 elements, needs 6/);
  });
});
