/**
 * Output allocation for kernels that overwrite their whole output (GEMM results, norms): in the
 * browser a plain `new Float32Array(n)`; on Node the native backend installs a non-zeroing
 * allocator. It lives in the backend layer because a backend installs it; the engine
 * (src/autograd/tensor.ts) re-exports it for the ops.
 *
 * Contract: the returned array is fresh and unshared; its contents are unspecified.
 */
let uninitF32: (n: number) => Float32Array = (n) => new Float32Array(n);

/** A Float32Array of n elements whose contents are unspecified (zero-filling them is a memset per
 *  call, ~8% of a training step). */
export function allocUninitF32(n: number): Float32Array { return uninitF32(n); }

/** Replaces the allocator behind `allocUninitF32` (it must return a fresh, unshared array). */
export function setUninitF32Allocator(fn: (n: number) => Float32Array): void { uninitF32 = fn; }
