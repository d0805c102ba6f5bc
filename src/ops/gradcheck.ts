/**
 * Finite-difference gradient checking for tests: compares autograd gradients of
 * L = Σ out ⊙ R (R a fixed random tensor) with central differences computed in float64 sums.
 */
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad } from '../autograd/tape.js';
import { worseOf } from './compare.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
export function randn(shape: number[], seed: number, scale = 1): Tensor {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = scale * Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  return new Tensor(d, shape);
}

/** Returns the worst |analytic − numeric| / (atol + rtol·|numeric|) over all inputs (≤ 1 passes;
 *  NaN anywhere — a NaN gradient or a NaN loss — makes `worst` NaN, which fails `worst <= 1`). */
export function gradCheck(f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: { eps?: number; atol?: number; rtol?: number; seed?: number } = {}): { worst: number; detail: string } {
  const eps = opts.eps ?? 1e-2, atol = opts.atol ?? 2e-3, rtol = opts.rtol ?? 2e-2;
  for (const x of inputs) { x.requiresGrad = true; x.grad = null; }
  const out = f(...inputs);
  const R = randn([...out.shape], opts.seed ?? 99).f32;
  const lossOf = (o: Tensor): number => { let s = 0; const O = o.f32; for (let i = 0; i < O.length; i++) s += O[i]! * R[i]!; return s; };
  backward(out, R.slice());
  let worst = 0, detail = '';
  inputs.forEach((x, xi) => {
    const X = x.f32;
    for (let i = 0; i < X.length; i++) {
      const orig = X[i]!;
      X[i] = orig + eps; x.version++; const lp = noGrad(() => lossOf(f(...inputs)));
      X[i] = orig - eps; x.version++; const lm = noGrad(() => lossOf(f(...inputs)));
      X[i] = orig; x.version++; // each write announced (src/backend/residency.ts)
      const num = (lp - lm) / (2 * eps);
      const ana = x.grad ? x.grad[i]! : 0;
      const err = Math.abs(ana - num) / (atol + rtol * Math.abs(num));
      if (worseOf(err, worst)) { worst = err; detail = `input ${xi} element ${i}: analytic ${ana}, numeric ${num}`; }
    }
  });
  return { worst, detail };
}
