/**
 * Tensor: a typed array with a shape (row-major, contiguous; `strides` derived) and a dtype,
 * plus the autograd fields. Ops never mutate their inputs; they return new tensors. FP8/BF16
 * tensors hold their codes (u8/u16) and are decoded by the fp8 module; arithmetic ops take f32.
 */
import { declareResident, hostWrote } from '../backend/residency.js';
export type DType = 'f32' | 'bf16' | 'e4m3' | 'e5m2' | 'i32';
export type Storage = Float32Array | Int32Array | Uint16Array | Uint8Array;

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]!; }
  return s;
}

function allocate(dtype: DType, n: number): Storage {
  switch (dtype) {
    case 'f32': return new Float32Array(n);
    case 'i32': return new Int32Array(n);
    case 'bf16': return new Uint16Array(n);
    case 'e4m3': case 'e5m2': return new Uint8Array(n);
  }
}

/** Non-zeroing output allocation for kernels that overwrite their whole output (src/backend/alloc.ts). */
export { allocUninitF32, setUninitF32Allocator } from '../backend/alloc.js';

/**
 * A gradient that touches few elements (row gathers, slices, embedding lookups): instead of a
 * mostly-zero dense array it adds itself into the accumulator.
 */
export interface SparseGrad { addInto(dst: Float32Array): void }

/** Record of how a tensor was produced: consumed by backward(). */
export interface Node {
  /** Op name, for error messages and reports. */
  op: string;
  inputs: Tensor[];
  /** Given dL/d(output), returns dL/d(input_i) (null where an input needs none). */
  backward: (gradOut: Float32Array) => (Float32Array | SparseGrad | null)[];
  /** Drops saved tensors after backward. */
  release?: () => void;
}

let nextId = 1;

export class Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly dtype: DType;
  data: Storage;
  /** True for parameters and for anything computed from them while grad is enabled. */
  requiresGrad = false;
  /** Accumulated gradient (leaves only; f32, same size). Summed across backward() calls. */
  grad: Float32Array | null = null;
  /** The node that produced this tensor (null for leaves and noGrad results). */
  node: Node | null = null;
  name?: string;
  /**
   * Bumped by every in-place update of `data` (the optimizer step, loaders, gradient checks);
   * caches of values derived from the data (the FP8 copy of a weight, a device backend's resident
   * copy: src/backend/residency.ts) compare it. Code that writes a tensor's data in place after it
   * was used must bump it (`t.version++`, or `wrote()`).
   */
  get version(): number { return this.writes; }
  set version(v: number) { this.writes = v; if (this.data instanceof Float32Array) hostWrote(this.data, null); }
  private writes = 0;
  /** Bumps `version` for an in-place write made by backend `writer`'s kernel (see residency.ts); null = host code. */
  wrote(writer: string | null): void { this.writes++; if (this.data instanceof Float32Array) hostWrote(this.data, writer); }

  constructor(data: Storage, shape: readonly number[], dtype?: DType) {
    const n = sizeOf(shape);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`tensor: bad dimension ${d} in shape [${shape.join(', ')}]`);
    }
    if (data.length !== n) throw new Error(`tensor: data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`);
    this.dtype = dtype ?? (data instanceof Float32Array ? 'f32' : data instanceof Int32Array ? 'i32' : data instanceof Uint16Array ? 'bf16' : 'e4m3');
    this.data = data;
    this.shape = shape.slice();
    this.strides = stridesOf(shape);
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor { return new Tensor(allocate(dtype, sizeOf(shape)), shape, dtype); }
  static from(values: ArrayLike<number>, shape?: readonly number[]): Tensor {
    return new Tensor(Float32Array.from(values), shape ?? [values.length], 'f32');
  }
  static ints(values: ArrayLike<number>, shape?: readonly number[]): Tensor {
    return new Tensor(Int32Array.from(values), shape ?? [values.length], 'i32');
  }
  static scalar(v: number): Tensor { return new Tensor(Float32Array.of(v), [], 'f32'); }

  get size(): number { return this.data.length; }
  get rank(): number { return this.shape.length; }

  /** The f32 storage; throws for other dtypes. */
  get f32(): Float32Array {
    if (!(this.data instanceof Float32Array)) throw new Error(`tensor: expected f32, got ${this.dtype}${this.name ? ` (${this.name})` : ''}`);
    return this.data;
  }
  /** The i32 storage; throws for other dtypes. */
  get i32(): Int32Array {
    if (!(this.data instanceof Int32Array)) throw new Error(`tensor: expected i32, got ${this.dtype}`);
    return this.data;
  }
  /** First element as a number (for scalars such as a loss). */
  item(): number { return this.data[0] ?? NaN; }
  toArray(): number[] { return Array.from(this.data as ArrayLike<number>); }

  /** Marks a leaf as a trainable parameter. */
  param(name?: string): this {
    this.requiresGrad = true;
    // A parameter's writes are announced (version), so a device backend may keep it resident.
    if (this.data instanceof Float32Array) declareResident(this.data);
    if (name !== undefined) this.name = name;
    return this;
  }
  /** A tensor sharing storage but cut from the graph. */
  detach(): Tensor { return new Tensor(this.data, this.shape, this.dtype); }
  toString(): string { return `Tensor(${this.dtype}[${this.shape.join(', ')}])`; }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
export function fmtShape(s: readonly number[]): string { return `[${s.join(', ')}]`; }
