/**
 * Output allocation for kernels that overwrite their whole output (GEMM results, norms): in the
 * browser a plain `new Float32Array(n)`; on Node the native backend installs a non-zeroing
 * allocator. It lives in the backend layer because a backend installs it; the engine
 * (src/autograd/tensor.ts) re-exports it for the ops.
 *
 * Large arrays that the autograd tape knows are dead (a gradient after its node has run) are
 * handed back with `recycleF32` and reused by the next allocation of the same length: a training
 * step then reuses last step's gradient buffers instead of asking the heap (and V8's
 * external-memory GC trigger, and the kernel's first-touch page faults) for fresh ones.
 *
 * Contract:
 * - `allocUninitF32(n)` returns an array no one else references; its contents are unspecified.
 * - `allocZeroF32(n)` is the same, zero-filled.
 * - `recycleF32(a)` may only be called by code that holds the last reference to `a`; arrays that
 *   do not own their whole buffer (views) or are small are ignored. Of each length the pool keeps
 *   at most as many arrays as it has had to create for requests of that length (so it never
 *   grows past the program's peak demand), and at most `POOL_LIMIT_BYTES` in all;
 *   `clearF32Pool()` empties it; `setF32Pooling(false)` turns reuse off.
 */
let uninitF32: (n: number) => Float32Array = (n) => new Float32Array(n);

/** Arrays below this many elements are not pooled (the allocator is cheap there). */
const POOL_MIN = 1 << 14;
/** Most bytes the pool holds; further recycled arrays are left to the GC. */
export const POOL_LIMIT_BYTES = 512 << 20;
const pool = new Map<number, Float32Array[]>();
let pooling = true;
/** Arrays in the pool now: a second recycle of the same array is ignored (never handed out twice). */
const inPool = new WeakSet<ArrayBufferLike>();
let pooledBytes = 0;

/**
 * Arrays of each length the pool had to create because it was empty when asked: the most it keeps
 * of that length. Without this bound a step that hands back more arrays of a length than it asks
 * for (outputs made elsewhere and recycled here) grew the pool every step up to its byte limit.
 */
const created = new Map<number, number>();

function take(n: number): Float32Array | undefined {
  const a = pool.get(n)?.pop();
  if (a) { pooledBytes -= a.byteLength; inPool.delete(a.buffer); }
  else created.set(n, (created.get(n) ?? 0) + 1);
  return a;
}

/** A Float32Array of n elements whose contents are unspecified (zero-filling them is a memset per
 *  call, ~8% of a training step). */
export function allocUninitF32(n: number): Float32Array {
  const a = n >= POOL_MIN ? take(n) : undefined;
  return a ?? uninitF32(n);
}

/** A zero-filled Float32Array of n elements (a recycled one cleared, or a fresh one). */
export function allocZeroF32(n: number): Float32Array {
  const a = n >= POOL_MIN ? take(n) : undefined;
  return a ? a.fill(0) : new Float32Array(n);
}

/** Hands back an array its caller holds the last reference to (see the contract). */
export function recycleF32(a: Float32Array): void {
  const n = a.length;
  if (!pooling || n < POOL_MIN || a.byteOffset !== 0 || a.buffer.byteLength !== a.byteLength || inPool.has(a.buffer)) return;
  if (pooledBytes + a.byteLength > POOL_LIMIT_BYTES) return;
  let list = pool.get(n);
  if ((list?.length ?? 0) >= (created.get(n) ?? 0)) return;
  if (!list) { list = []; pool.set(n, list); }
  list.push(a);
  inPool.add(a.buffer);
  pooledBytes += a.byteLength;
}

/** Drops every pooled array (they become garbage). */
export function clearF32Pool(): void { for (const l of pool.values()) for (const a of l) inPool.delete(a.buffer); pool.clear(); pooledBytes = 0; }

/** Turns reuse on or off (off: `recycleF32` ignores everything — a reference for tests); returns the previous setting. */
export function setF32Pooling(on: boolean): boolean { const was = pooling; pooling = on; if (!on) clearF32Pool(); return was; }

/** Bytes held by the pool now. */
export function pooledF32Bytes(): number { return pooledBytes; }

/** Replaces the allocator behind `allocUninitF32` (it must return a fresh, unshared array). */
export function setUninitF32Allocator(fn: (n: number) => Float32Array): void { uninitF32 = fn; }
