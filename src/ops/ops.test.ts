// Every op's gradient against central finite differences, on odd shapes; forward values against
// direct formulas where the formula is simple — on every backend this process can start.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import '../backend/index.js';
import { backendsUnderTest, withBackend } from '../backend/testing-node.js';
import { disposeBackends } from '../backend/setup-node.js';
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad, recompute, record } from '../autograd/tape.js';
import { maxAbsDiff, worstError } from './compare.js';
import * as op from './index.js';
import { gradCheck, randn } from './gradcheck.js';

const BACKENDS = await backendsUnderTest();
after(() => disposeBackends());
/** One test per backend under test, each with that backend active. */
function btest(name: string, fn: () => void): void {
  for (const be of BACKENDS) test(`${name} [${be}]`, () => withBackend(be, fn));
}

function ok(name: string, r: { worst: number; detail: string }): void {
  assert.ok(r.worst <= 1, `${name}: gradient mismatch ${r.worst.toFixed(2)}× tolerance at ${r.detail}`);
}

btest('elementwise grads with broadcasting', () => {
  ok('add', gradCheck((a, b) => op.add(a!, b!), [randn([3, 1, 5], 1), randn([4, 5], 2)]));
  ok('sub', gradCheck((a, b) => op.sub(a!, b!), [randn([7], 3), randn([1], 4)]));
  ok('mul', gradCheck((a, b) => op.mul(a!, b!), [randn([2, 3, 4], 5), randn([3, 1], 6)]));
  ok('div', gradCheck((a, b) => op.div(a!, b!), [randn([5, 3], 7), op.addScalar(op.square(randn([3], 8)), 1).detach()]));
  ok('mul row', gradCheck((a, b) => op.mul(a!, b!), [randn([3, 5], 18), randn([3, 1], 19)]));
  ok('div row', gradCheck((a, b) => op.div(a!, b!), [randn([2, 3, 4], 20), op.addScalar(op.square(randn([2, 3, 1], 21)), 1).detach()]));
  ok('exp', gradCheck((a) => op.exp(a!), [randn([7], 9)]));
  ok('log', gradCheck((a) => op.log(a!), [op.addScalar(op.square(randn([7], 10)), 0.5).detach()]));
  ok('sqrt', gradCheck((a) => op.sqrt(a!), [op.addScalar(op.square(randn([7], 11)), 0.5).detach()]));
  ok('rsqrt', gradCheck((a) => op.rsqrt(a!), [op.addScalar(op.square(randn([7], 12)), 0.5).detach()]));
  ok('sigmoid', gradCheck((a) => op.sigmoid(a!), [randn([9], 13)]));
  ok('silu', gradCheck((a) => op.silu(a!), [randn([9], 14)]));
  ok('siluMul', gradCheck((a, b) => op.siluMul(a!, b!), [randn([3, 5], 15), randn([3, 5], 16)]));
  ok('maskedFill', gradCheck((a) => op.maskedFill(a!, Tensor.ints([1, 0, 1], [3]), -5), [randn([2, 3], 17)]));
});

btest('elementwise forward values', () => {
  const a = Tensor.from([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = Tensor.from([10, 20, 30], [3]);
  assert.deepEqual(op.add(a, b).toArray(), [11, 22, 33, 14, 25, 36]);
  assert.deepEqual(op.mul(a, Tensor.from([2, 3], [2, 1])).toArray(), [2, 4, 6, 12, 15, 18]);
  assert.throws(() => op.add(a, Tensor.from([1, 2], [2])), /do not broadcast/);
  const s = op.silu(Tensor.from([0, 1])).toArray();
  assert.ok(Math.abs(s[1]! - 1 / (1 + Math.exp(-1))) < 1e-7 && s[0] === 0);
});

btest('matmul: all transposes, batched, broadcast operands', () => {
  for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
    const a = randn(tA ? [2, 5, 3] : [2, 3, 5], 20), b = randn(tB ? [2, 4, 5] : [2, 5, 4], 21);
    ok(`matmul ${tA}${tB}`, gradCheck((x, y) => op.matmul(x!, y!, { transA: tA, transB: tB }), [a, b]));
    const b2 = randn(tB ? [4, 5] : [5, 4], 22);
    ok(`matmul shared B ${tA}${tB}`, gradCheck((x, y) => op.matmul(x!, y!, { transA: tA, transB: tB }), [a, b2]));
    const a2 = randn(tA ? [5, 3] : [3, 5], 23);
    ok(`matmul shared A ${tA}${tB}`, gradCheck((x, y) => op.matmul(x!, y!, { transA: tA, transB: tB }), [a2, b]));
  }
  // Forward against a direct triple loop on a 7×129 · 129×1 case.
  const A = randn([7, 129], 24), B = randn([129, 1], 25);
  const C = op.matmul(A, B).f32;
  for (let i = 0; i < 7; i++) {
    let s = 0;
    for (let k = 0; k < 129; k++) s += A.f32[i * 129 + k]! * B.f32[k]!;
    assert.ok(Math.abs(C[i]! - s) < 1e-4);
  }
  ok('linear', gradCheck((x, w) => op.linear(x!, w!), [randn([2, 3, 7], 26), randn([5, 7], 27)]));
});

btest('shape ops', () => {
  ok('reshape', gradCheck((a) => op.reshape(a!, [3, -1]), [randn([2, 3, 2], 30)]));
  ok('permute', gradCheck((a) => op.permute(a!, [2, 0, 1]), [randn([2, 3, 4], 31)]));
  ok('transpose', gradCheck((a) => op.transpose(a!), [randn([2, 3, 4], 32)]));
  ok('slice', gradCheck((a) => op.slice(a!, 1, 1, 3), [randn([2, 4, 3], 33)]));
  ok('concat', gradCheck((a, b) => op.concat([a!, b!], -1), [randn([2, 3], 34), randn([2, 5], 35)]));
  ok('split', gradCheck((a) => op.mul(op.split(a!, [2, 3], 1)[1]!, op.split(a!, [3, 2], 1)[0]!), [randn([2, 5], 36)]));
  ok('expand', gradCheck((a) => op.expand(a!, [3, 2, 4]), [randn([2, 1], 37)]));
  const p = op.permute(Tensor.from([0, 1, 2, 3, 4, 5], [2, 3]), [1, 0]);
  assert.deepEqual(p.toArray(), [0, 3, 1, 4, 2, 5]);
  assert.deepEqual(op.concat([Tensor.from([1, 2], [2, 1]), Tensor.from([3, 4], [2, 1])], 1).toArray(), [1, 3, 2, 4]);
});

btest('reductions and normalisers', () => {
  ok('sum all', gradCheck((a) => op.sum(a!), [randn([3, 4], 40)]));
  ok('sum axis', gradCheck((a) => op.sum(a!, 1, true), [randn([3, 4, 2], 41)]));
  ok('mean', gradCheck((a) => op.mean(a!, 0), [randn([3, 4], 42)]));
  ok('max', gradCheck((a) => op.max(a!, -1), [randn([3, 5], 43)]));
  ok('softmax', gradCheck((a) => op.softmax(a!), [randn([3, 7], 44)]));
  ok('logSoftmax', gradCheck((a) => op.logSoftmax(a!), [randn([3, 7], 45)]));
  assert.deepEqual(op.argmax(Tensor.from([1, 5, 2, 9, 0, 3], [2, 3])).toArray(), [1, 0]);
  const sm = op.softmax(Tensor.from([1000, 1000])).toArray();
  assert.deepEqual(sm, [0.5, 0.5]);
});

btest('nn ops: rmsNorm, rope, embedding, crossEntropy, attention', () => {
  ok('rmsNorm', gradCheck((x, w) => op.rmsNorm(x!, w!), [randn([3, 7], 50), randn([7], 51)]));
  const T = 5, half = 4;
  const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) { cos[t * half + i] = Math.cos(t * 0.3 ** i); sin[t * half + i] = Math.sin(t * 0.3 ** i); }
  ok('rope', gradCheck((x) => op.rope(x!, cos, sin), [randn([2, T, 3, 8], 52)]));
  ok('rope tail', gradCheck((x) => op.rope(x!, cos, sin, 3), [randn([2, T, 2, 11], 61)]));
  // rope with an offset = split → rope → concat.
  const xq = randn([2, T, 3, 13], 62);
  const [head, tail] = op.split(xq, [5, 8], 3) as [Tensor, Tensor];
  assert.deepEqual(op.rope(xq, cos, sin, 5).toArray(), op.concat([head, op.rope(tail, cos, sin)], 3).toArray());
  ok('concatHeads', gradCheck((a, b) => op.concatHeads(a!, b!), [randn([2, 3, 4, 5], 63), randn([2, 3, 1, 3], 64)]));
  ok('concatHeads take', gradCheck((a, b) => op.concatHeads(a!, b!, 2), [randn([2, 3, 4, 5], 65), randn([2, 3, 1, 3], 66)]));
  const ka = randn([1, 2, 3, 2], 80), kb = randn([1, 2, 1, 4], 81);
  assert.deepEqual(op.concatHeads(ka, kb).toArray(), op.concat([ka, op.expand(kb, [1, 2, 3, 4])], 3).toArray());
  // rope preserves pair norms and rotates pair (1, 0) at angle φ to (cos φ, sin φ).
  const x = new Tensor(new Float32Array(8).fill(0), [1, 1, 1, 8]); x.f32[0] = 1;
  const c1 = Float32Array.of(Math.cos(0.5), 1, 1, 1), s1 = Float32Array.of(Math.sin(0.5), 0, 0, 0);
  const y = op.rope(x, c1, s1).f32;
  assert.ok(Math.abs(y[0]! - Math.cos(0.5)) < 1e-7 && Math.abs(y[1]! - Math.sin(0.5)) < 1e-7);
  const table = randn([11, 4], 53);
  ok('embedding', gradCheck((t) => op.embedding(t!, Tensor.ints([3, 3, 10, 0], [2, 2])), [table]));
  assert.throws(() => op.embedding(table, Tensor.ints([11])), /out of range/);
  const targets = Tensor.ints([2, -100, 0, 4]);
  ok('crossEntropy', gradCheck((l) => op.crossEntropy(l!, targets), [randn([4, 5], 54)]));
  const l0 = Tensor.from([0, 0, 0, 0], [1, 4]);
  assert.ok(Math.abs(op.crossEntropy(l0, Tensor.ints([1])).item() - Math.log(4)) < 1e-6);
  ok('latentAttention', gradCheck((q, k) => op.latentAttention(q!, k!, 3, 0.4), [randn([1, 3, 2, 5], 68), randn([1, 4, 1, 5], 69)]));
  ok('attention shared kv', gradCheck((q, k, v) => op.causalAttention(q!, k!, v!, 0.3), [randn([1, 3, 3, 4], 65), randn([1, 4, 1, 4], 66), randn([1, 4, 1, 2], 67)]));
  ok('attention', gradCheck((q, k, v) => op.causalAttention(q!, k!, v!, 0.4), [randn([2, 3, 2, 4], 55), randn([2, 5, 2, 4], 56), randn([2, 5, 2, 3], 57)]));
  // Attention equals softmax(QKᵀ·scale + causal mask)·V computed with other ops.
  const q = randn([1, 4, 1, 3], 58), k = randn([1, 4, 1, 3], 59), v = randn([1, 4, 1, 2], 60);
  const fused = op.causalAttention(q, k, v, 0.7).f32;
  const s = op.mulScalar(op.matmul(op.reshape(q, [4, 3]), op.reshape(k, [4, 3]), { transB: true }), 0.7);
  const mask = Tensor.ints([0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0], [4, 4]);
  const ref = op.matmul(op.softmax(op.maskedFill(s, mask, -Infinity)), op.reshape(v, [4, 2])).f32;
  for (let i = 0; i < 8; i++) assert.ok(Math.abs(fused[i]! - ref[i]!) < 1e-5);
});

btest('linearCrossEntropy equals crossEntropy(linear) in value and gradients, across chunks', () => {
  ok('linearCrossEntropy', gradCheck((x, w) => op.mulScalar(op.linearCrossEntropy(x!, w!, Tensor.ints([2, -100, 0, 4, 1])), 0.3), [randn([5, 3], 70), randn([6, 3], 71)]));
  // V = 4096 → chunks of 256 rows; 300 rows span two chunks, with ignored rows in both.
  const N = 300, H = 5, V = 4096;
  const x = randn([N, H], 72), w = randn([V, H], 73);
  x.requiresGrad = true; w.requiresGrad = true;
  const ys = Array.from({ length: N }, (_, i) => (i % 37 === 5 ? -100 : (i * 7919) % V));
  const fused = op.linearCrossEntropy(x, w, Tensor.ints(ys));
  backward(op.mulScalar(fused, 2));
  const gx = x.grad!.slice(), gw = w.grad!.slice();
  x.grad = null; w.grad = null;
  const ref = op.crossEntropy(op.linear(x, w), Tensor.ints(ys));
  backward(op.mulScalar(ref, 2));
  assert.ok(Math.abs(fused.item() - ref.item()) < 1e-5 * Math.abs(ref.item()), `loss ${fused.item()} vs ${ref.item()}`);
  let worst = 0;
  for (let i = 0; i < gx.length; i++) worst = Math.max(worst, Math.abs(gx[i]! - x.grad![i]!));
  for (let i = 0; i < gw.length; i++) worst = Math.max(worst, Math.abs(gw[i]! - w.grad![i]!));
  assert.ok(worst < 1e-6, `gradient differs by ${worst}`);
  // Without gradients it records nothing and still gives the loss.
  const plain = noGrad(() => op.linearCrossEntropy(x, w, Tensor.ints(ys)));
  assert.equal(plain.requiresGrad, false);
  assert.ok(Math.abs(plain.item() - ref.item()) < 1e-5 * ref.item());
  assert.throws(() => op.linearCrossEntropy(x, w, Tensor.ints([V, ...ys.slice(1)])), /out of range/);
});

btest('index ops: topk, gather, indexSelect, indexAdd', () => {
  const x = Tensor.from([0.1, 0.9, 0.5, 0.3, 0.2, 0.8, 0.7, 0.6], [2, 4]);
  const { values, indices } = op.topk(x, 2);
  assert.deepEqual(indices.toArray(), [1, 2, 1, 2]);
  assert.deepEqual(Array.from(values.f32), [Math.fround(0.9), Math.fround(0.5), Math.fround(0.8), Math.fround(0.7)]);
  ok('gather', gradCheck((a) => op.gather(a!, Tensor.ints([3, 0, 0, 1], [2, 2])), [randn([2, 4], 61)]));
  ok('indexSelect', gradCheck((a) => op.indexSelect(a!, Int32Array.of(2, 0, 2)), [randn([3, 4], 62)]));
  ok('indexAddMany', gradCheck((a, b, c) => op.indexAddMany(a!, [Int32Array.of(1, 1, 0), Int32Array.of(2)], [b!, c!]), [randn([3, 2], 68), randn([3, 2], 69), randn([1, 2], 70)]));
  ok('indexAddMany scaled', gradCheck((a, b, c, s1, s2) => op.indexAddMany(a!, [Int32Array.of(1, 1, 0), Int32Array.of(2)], [b!, c!], [s1!, s2!]), [randn([3, 2], 71), randn([3, 2], 72), randn([1, 2], 73), randn([3, 1], 74), randn([1, 1], 75)]));
  ok('indexAdd', gradCheck((a, b) => op.indexAdd(a!, Int32Array.of(1, 1, 0), b!), [randn([3, 2], 63), randn([3, 2], 64)]));
});

btest('autograd: accumulation across backward calls, noGrad, recompute, freeing', () => {
  const w = randn([3, 3], 70).param('w');
  const x = randn([2, 3], 71);
  backward(op.sum(op.linear(x, w)));
  const g1 = w.grad!.slice();
  backward(op.sum(op.linear(x, w)));
  for (let i = 0; i < 9; i++) assert.ok(Math.abs(w.grad![i]! - 2 * g1[i]!) < 1e-6);
  const y = noGrad(() => op.linear(x, w));
  assert.equal(y.requiresGrad, false);
  assert.equal(y.node, null);
  // recompute gives the same gradients as storing.
  const w2 = randn([3, 3], 72).param();
  const xin = randn([2, 3], 73); xin.requiresGrad = true;
  const f = (t: Tensor): Tensor => op.silu(op.rmsNorm(op.linear(t, w2), Tensor.from([1, 2, 3])));
  backward(op.sum(op.square(f(xin))));
  const gw = w2.grad!.slice(), gx = xin.grad!.slice();
  w2.grad = null; xin.grad = null;
  const out = recompute(f, xin);
  assert.equal(out.node?.op, 'Recompute');
  backward(op.sum(op.square(out)));
  for (let i = 0; i < 9; i++) assert.ok(Math.abs(w2.grad![i]! - gw[i]!) < 1e-5);
  for (let i = 0; i < 6; i++) assert.ok(Math.abs(xin.grad![i]! - gx[i]!) < 1e-5);
  // Nodes are released after backward.
  const z = op.sum(op.linear(x, w));
  backward(z);
  assert.equal(z.node, null);
});

test('the gradient checker itself fails a NaN gradient and a wrong one (it cannot pass silently)', () => {
  // An op y = x² whose backward is given: correct, NaN in one element, or off by 10%.
  const square = (grad: (x: Float32Array, g: Float32Array) => Float32Array) => (x: Tensor): Tensor => {
    const y = new Tensor(x.f32.map((v) => v * v), [...x.shape]);
    return record(y, 'TestSquare', [x], (g) => [grad(x.f32, g)]);
  };
  const good = gradCheck(square((x, g) => x.map((v, i) => 2 * v * g[i]!)), [randn([6], 90)]);
  assert.ok(good.worst <= 1, `the correct backward passes (${good.worst})`);
  const nan = gradCheck(square((x, g) => x.map((v, i) => (i === 3 ? NaN : 2 * v * g[i]!))), [randn([6], 90)]);
  assert.ok(!(nan.worst <= 1), 'a NaN gradient must fail the check');
  assert.match(nan.detail, /element 3/);
  const off = gradCheck(square((x, g) => x.map((v, i) => 2.2 * v * g[i]!)), [randn([6], 90)]);
  assert.ok(!(off.worst <= 1), `a 10% wrong gradient must fail the check (${off.worst})`);
  assert.equal(worstError([1, NaN, 3], [1, 2, 3], 1e-6, 0).index, 1);
  assert.ok(Number.isNaN(maxAbsDiff([0, 0], [0, NaN])));
  assert.throws(() => maxAbsDiff([1], [1, 2]), /lengths differ/);
});
