/**
 * The `ts` backend: plain TypeScript loops over typed arrays. It is the reference every other
 * backend is tested against, and the fallback for kernels a faster backend does not provide.
 */
import type { AdamWHyper, Backend, MatMulArgs } from './registry.js';
import { tsRope, tsConcatHeads, tsConcatHeadsBackward, tsCrossEntropyRows } from './ts-train.js';

/** C = op(A)·op(B) for one batch entry; i-k-j loop order so the inner loop streams rows of B. */
function gemm1(a: Float32Array, ao: number, b: Float32Array, bo: number, c: Float32Array, co: number,
  m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
  if (!accumulate) c.fill(0, co, co + m * n);
  if (!transB) {
    for (let i = 0; i < m; i++) {
      const crow = co + i * n;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[ao + p * m + i]! : a[ao + i * k + p]!;
        if (av === 0) continue;
        const brow = bo + p * n;
        for (let j = 0; j < n; j++) c[crow + j]! += av * b[brow + j]!;
      }
    }
  } else {
    // B is [N,K]: dot products of A rows with B rows.
    for (let i = 0; i < m; i++) {
      const crow = co + i * n;
      for (let j = 0; j < n; j++) {
        const brow = bo + j * k;
        let s = 0;
        if (!transA) {
          const arow = ao + i * k;
          for (let p = 0; p < k; p++) s += a[arow + p]! * b[brow + p]!;
        } else {
          for (let p = 0; p < k; p++) s += a[ao + p * m + i]! * b[brow + p]!;
        }
        c[crow + j]! += s;
      }
    }
  }
}

export function tsMatMul(x: MatMulArgs): void {
  for (let bi = 0; bi < x.batch; bi++) {
    gemm1(x.a, bi * x.strideA, x.b, bi * x.strideB, x.c, bi * x.strideC, x.m, x.n, x.k, x.transA, x.transB, x.accumulate);
  }
}

export function tsRMSNorm(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, cols: number, eps: number, rstd?: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let ss = 0;
    for (let j = 0; j < cols; j++) { const v = x[o + j]!; ss += v * v; }
    const rs = 1 / Math.sqrt(ss / cols + eps);
    if (rstd) rstd[r] = rs;
    for (let j = 0; j < cols; j++) out[o + j] = x[o + j]! * rs * w[j]!;
  }
}

export function tsSoftmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let mx = -Infinity;
    for (let j = 0; j < cols; j++) if (x[o + j]! > mx) mx = x[o + j]!;
    if (mx === -Infinity) { out.fill(0, o, o + cols); continue; }
    let s = 0;
    for (let j = 0; j < cols; j++) { const e = Math.exp(x[o + j]! - mx); out[o + j] = e; s += e; }
    const inv = 1 / s;
    for (let j = 0; j < cols; j++) out[o + j]! *= inv;
  }
}

export function tsSiluMul(g: Float32Array, u: Float32Array, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) { const z = g[i]!; out[i] = (z / (1 + Math.exp(-z))) * u[i]!; }
}

export function tsSoftmaxBackward(p: Float32Array, gradOut: Float32Array, gradIn: Float32Array, rows: number, cols: number, scale: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let dot = 0;
    for (let j = 0; j < cols; j++) dot += p[o + j]! * gradOut[o + j]!;
    for (let j = 0; j < cols; j++) gradIn[o + j] = scale * p[o + j]! * (gradOut[o + j]! - dot);
  }
}

export function tsSiluMulBackward(g: Float32Array, u: Float32Array, gradOut: Float32Array, gradG: Float32Array, gradU: Float32Array): void {
  for (let i = 0; i < gradG.length; i++) {
    const z = g[i]!, s = 1 / (1 + Math.exp(-z));
    gradU[i] = gradOut[i]! * z * s;
    gradG[i] = gradOut[i]! * u[i]! * s * (1 + z * (1 - s));
  }
}

export function tsRMSNormBackward(x: Float32Array, w: Float32Array, rstd: Float32Array, gradOut: Float32Array,
  gradX: Float32Array | null, gradW: Float32Array | null, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols, rs = rstd[r]!;
    let dot = 0;
    for (let j = 0; j < cols; j++) dot += gradOut[o + j]! * w[j]! * x[o + j]!;
    const c = dot * rs * rs / cols;
    for (let j = 0; j < cols; j++) {
      if (gradX) gradX[o + j] = rs * (gradOut[o + j]! * w[j]! - x[o + j]! * c);
      if (gradW) gradW[j]! += gradOut[o + j]! * x[o + j]! * rs;
    }
  }
}

export function tsAdamW(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWHyper): void {
  const { beta1, beta2, eps, stepSize, decay, invBc2Sqrt } = h;
  for (let j = 0; j < w.length; j++) {
    const gj = g[j]!;
    const mj = beta1 * m[j]! + (1 - beta1) * gj;
    const vj = beta2 * v[j]! + (1 - beta2) * gj * gj;
    m[j] = mj;
    v[j] = vj;
    w[j] = w[j]! * decay - stepSize * mj / (Math.sqrt(vj) * invBc2Sqrt + eps);
  }
}

export function tsSumSquares(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * x[i]!;
  return s;
}

export function tsAddInto(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
}

export function tsRowsAxpy(dst: Float32Array, dstRows: Int32Array | null, src: Float32Array, srcRows: Int32Array | null,
  scales: Float32Array | null, count: number, D: number): void {
  for (let i = 0; i < count; i++) {
    const d = (dstRows ? dstRows[i]! : i) * D, s = (srcRows ? srcRows[i]! : i) * D, a = scales ? scales[i]! : 1;
    if (d < 0 || d + D > dst.length || s < 0 || s + D > src.length) throw new RangeError(`RowsAxpy: row ${i} out of range`);
    for (let j = 0; j < D; j++) dst[d + j]! += a * src[s + j]!;
  }
}

export const tsBackend: Backend = {
  name: 'ts',
  fallback: null,
  threads: 1,
  kernels: {
    MatMul: tsMatMul, RMSNorm: tsRMSNorm, Softmax: tsSoftmax, SiluMul: tsSiluMul,
    SiluMulBackward: tsSiluMulBackward, RMSNormBackward: tsRMSNormBackward, SoftmaxBackward: tsSoftmaxBackward,
    AdamW: tsAdamW, SumSquares: tsSumSquares, AddInto: tsAddInto, RowsAxpy: tsRowsAxpy,
    Rope: tsRope, ConcatHeads: tsConcatHeads, ConcatHeadsBackward: tsConcatHeadsBackward, CrossEntropyRows: tsCrossEntropyRows,
  },
  describe: () => 'ts (plain TypeScript loops, reference)',
};
