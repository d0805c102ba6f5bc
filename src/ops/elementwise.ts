/**
 * Elementwise ops with broadcasting and their gradients: add, sub, mul, div, scalar forms,
 * neg, exp, log, sqrt, rsqrt, sigmoid, silu, the fused silu(g)*u of SwiGLU, square, and masked fill.
 */
import { Tensor, sameShape, sizeOf, allocUninitF32 } from '../autograd/tensor.js';
import { record, needsGrad } from '../autograd/tape.js';
import { kernel } from '../backend/registry.js';
import { broadcastIndex, broadcastShape, broadcastStrides, reduceTo } from './broadcast.js';

type BinFn = (x: number, y: number) => number;
/** Same-shape adds from this many elements on run on the backend's AddInto kernel. */
const ADD_KERNEL_MIN = 1 << 14;

function binary(op: string, a: Tensor, b: Tensor, f: BinFn,
  grads: (g: Float32Array, av: Float32Array, bv: Float32Array) => [Float32Array | null, Float32Array | null]): Tensor {
  const A = a.f32, B = b.f32;
  const same = sameShape(a.shape, b.shape);
  const shape: readonly number[] = same ? a.shape : broadcastShape(a.shape, b.shape, op);
  const n = sizeOf(shape);
  const out = allocUninitF32(n); // every branch below writes all n elements
  let ia: Int32Array | null = null, ib: Int32Array | null = null;
  let scalarB = false;
  if (same) {
    // Monomorphic loops for the hot ops (a per-element callback does not inline across ops).
    // Large same-shape adds (the residual stream) as a copy plus the backend's vector add: the
    // same single rounding per element as the loop.
    if (op === 'Add' && n >= ADD_KERNEL_MIN) { out.set(A); kernel('AddInto')(out, B); }
    else if (op === 'Add') for (let i = 0; i < n; i++) out[i] = A[i]! + B[i]!;
    else if (op === 'Mul') for (let i = 0; i < n; i++) out[i] = A[i]! * B[i]!;
    else for (let i = 0; i < n; i++) out[i] = f(A[i]!, B[i]!);
  } else if (rowBroadcast(a.shape, b.shape)) {
    // b is a's shape with last dim 1: one value per row (MoE gate weights, norms).
    const D = a.shape[a.rank - 1]!;
    if (op === 'Mul') for (let r = 0, i = 0; r < B.length; r++) { const y = B[r]!; for (let j = 0; j < D; j++, i++) out[i] = A[i]! * y; }
    else for (let r = 0, i = 0; r < B.length; r++) { const y = B[r]!; for (let j = 0; j < D; j++, i++) out[i] = f(A[i]!, y); }
    ib = new Int32Array(0); // marker: expanded lazily in backward
  } else if (B.length === 1 && sameShape(shape, a.shape)) {
    scalarB = true;
    const y = B[0]!;
    for (let i = 0; i < n; i++) out[i] = f(A[i]!, y);
  } else {
    ia = broadcastIndex(shape, broadcastStrides(a.shape, shape));
    ib = broadcastIndex(shape, broadcastStrides(b.shape, shape));
    for (let i = 0; i < n; i++) out[i] = f(A[ia[i]!]!, B[ib[i]!]!);
  }
  const t = new Tensor(out, shape);
  if (!needsGrad(a, b)) return t;
  return record(t, op, [a, b], (g) => {
    const av = ia ? gatherIdx(A, ia) : A;
    const bv = ib && ib.length === 0 ? expandRows(B, n / B.length) : ib ? gatherIdx(B, ib) : scalarB ? new Float32Array(n).fill(B[0]!) : B;
    const [ga, gb] = grads(g, av, bv);
    return [ga && a.requiresGrad ? reduceTo(ga, shape, a.shape) : null, gb && b.requiresGrad ? reduceTo(gb, shape, b.shape) : null];
  });
}

function rowBroadcast(a: readonly number[], b: readonly number[]): boolean {
  const r = a.length;
  if (r < 1 || b.length !== r || b[r - 1] !== 1 || a[r - 1] === 1) return false;
  for (let i = 0; i < r - 1; i++) if (a[i] !== b[i]) return false;
  return true;
}

function expandRows(B: Float32Array, D: number): Float32Array {
  const o = allocUninitF32(B.length * D);
  for (let r = 0, i = 0; r < B.length; r++) { const y = B[r]!; for (let j = 0; j < D; j++, i++) o[i] = y; }
  return o;
}

function gatherIdx(src: Float32Array, idx: Int32Array): Float32Array {
  const o = allocUninitF32(idx.length);
  for (let i = 0; i < idx.length; i++) o[i] = src[idx[i]!]!;
  return o;
}

function map(n: number, f: (i: number) => number): Float32Array {
  const o = allocUninitF32(n);
  for (let i = 0; i < n; i++) o[i] = f(i);
  return o;
}

export function add(a: Tensor, b: Tensor): Tensor {
  return binary('Add', a, b, (x, y) => x + y, (g) => [g, g]);
}
/**
 * a += b in place (same shapes), for inference code that owns `a` and will not read its old value
 * again (a residual stream). Refuses where a gradient would be recorded: the tape may need `a`.
 */
export function addInPlace(a: Tensor, b: Tensor): void {
  if (!sameShape(a.shape, b.shape)) throw new Error(`addInPlace: shapes [${a.shape}] and [${b.shape}] differ`);
  if (needsGrad(a, b)) throw new Error('addInPlace: an input requires grad; in-place sums are for inference (use add, or run under noGrad)');
  kernel('AddInto')(a.f32, b.f32);
}
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary('Sub', a, b, (x, y) => x - y, (g) => {
    const gb = allocUninitF32(g.length);
    for (let i = 0; i < g.length; i++) gb[i] = -g[i]!;
    return [g, gb];
  });
}
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary('Mul', a, b, (x, y) => x * y, (g, av, bv) => {
    const ga = allocUninitF32(g.length), gb = allocUninitF32(g.length);
    for (let i = 0; i < g.length; i++) { ga[i] = g[i]! * bv[i]!; gb[i] = g[i]! * av[i]!; }
    return [ga, gb];
  });
}
export function div(a: Tensor, b: Tensor): Tensor {
  return binary('Div', a, b, (x, y) => x / y, (g, av, bv) => {
    const ga = allocUninitF32(g.length), gb = allocUninitF32(g.length);
    for (let i = 0; i < g.length; i++) { const y = bv[i]!; ga[i] = g[i]! / y; gb[i] = -g[i]! * av[i]! / (y * y); }
    return [ga, gb];
  });
}

function unary(op: string, x: Tensor, f: (v: number) => number, df: (v: number, y: number) => number): Tensor {
  const X = x.f32;
  const out = allocUninitF32(X.length);
  for (let i = 0; i < out.length; i++) out[i] = f(X[i]!);
  const t = new Tensor(out, x.shape);
  return record(t, op, [x], (g) => [map(g.length, (i) => g[i]! * df(X[i]!, out[i]!))]);
}

export const neg = (x: Tensor): Tensor => unary('Neg', x, (v) => -v, () => -1);
export const exp = (x: Tensor): Tensor => unary('Exp', x, Math.exp, (_v, y) => y);
export const log = (x: Tensor): Tensor => unary('Log', x, Math.log, (v) => 1 / v);
export const sqrt = (x: Tensor): Tensor => unary('Sqrt', x, Math.sqrt, (_v, y) => 0.5 / y);
export const rsqrt = (x: Tensor): Tensor => unary('Rsqrt', x, (v) => 1 / Math.sqrt(v), (v, y) => -0.5 * y / v);
export const square = (x: Tensor): Tensor => unary('Square', x, (v) => v * v, (v) => 2 * v);
export const sigmoid = (x: Tensor): Tensor => unary('Sigmoid', x, (v) => 1 / (1 + Math.exp(-v)), (_v, y) => y * (1 - y));
export const silu = (x: Tensor): Tensor => unary('Silu', x, (v) => v / (1 + Math.exp(-v)), (v) => {
  const s = 1 / (1 + Math.exp(-v));
  return s * (1 + v * (1 - s));
});
export const addScalar = (x: Tensor, c: number): Tensor => unary('AddScalar', x, (v) => v + c, () => 1);
export const mulScalar = (x: Tensor, c: number): Tensor => unary('MulScalar', x, (v) => v * c, () => c);

/** silu(g) * u, fused (the SwiGLU activation); same shapes. */
export function siluMul(g: Tensor, u: Tensor): Tensor {
  if (!sameShape(g.shape, u.shape)) throw new Error(`siluMul: shapes [${g.shape}] and [${u.shape}] differ`);
  const G = g.f32, U = u.f32;
  const out = allocUninitF32(G.length); // the kernels overwrite their outputs
  kernel('SiluMul')(G, U, out);
  const t = new Tensor(out, g.shape);
  return record(t, 'SiluMul', [g, u], (go) => {
    const gg = allocUninitF32(G.length), gu = allocUninitF32(G.length);
    kernel('SiluMulBackward')(G, U, go, gg, gu);
    return [gg, gu];
  });
}

/** Where mask (i32/f32 nonzero, broadcast to x) is set, the output is `value`; the gradient there is 0. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  const shape = broadcastShape(x.shape, mask.shape, 'maskedFill');
  if (shape.length !== x.shape.length || !sameShape(shape, x.shape)) throw new Error(`maskedFill: mask [${mask.shape}] must broadcast to x [${x.shape}]`);
  const im = broadcastIndex(shape, broadcastStrides(mask.shape, shape));
  const X = x.f32, M = mask.data;
  const out = new Float32Array(X.length);
  for (let i = 0; i < out.length; i++) out[i] = M[im[i]!] ? value : X[i]!;
  return record(new Tensor(out, x.shape), 'MaskedFill', [x], (g) => [map(g.length, (i) => (M[im[i]!] ? 0 : g[i]!))]);
}
