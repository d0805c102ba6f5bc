/**
 * The Q8_0 matrix-vector product's reference (plain TypeScript), the semantics the native
 * `gemvQ8` kernel (native/src/gemv_q8.cc) implements: y[m,n] = x[m,k] · W[n,k]^T where W is
 * ggml Q8_0 blocks (per 32 weights an f16 scale then 32 int8) and each row of x is first quantised
 * to Q8_0 the way llama.cpp's x86 CPU path quantises activations (`quantizeActivationsQ8`), so
 * every block adds f16(dw)·f16(dx)·Σ qw·qx (an exact integer sum) into an f32 accumulator.
 * Browser-safe.
 */
import { Q8_0_BLOCK, Q8_0_BYTES, f16Value, f32ToF16 } from '../io/gguf-quant.js';

/** Round half to even (what the x86 `_mm256_round_ps(v, _MM_ROUND_NEAREST)` in ggml does). */
function roundEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Activations to Q8_0 as ggml-cpu's x86 `quantize_row_q8_0` does (it differs from the reference
 * quantiser used for weights): per 32 values d = max|x|/127 stored as f16, q = round-half-even(x ·
 * (127/max|x|)), all in float32.
 */
export function quantizeActivationsQ8(x: Float32Array): Uint8Array {
  const nb = x.length / Q8_0_BLOCK;
  const out = new Uint8Array(nb * Q8_0_BYTES);
  const q = new Int8Array(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(x[b * Q8_0_BLOCK + i]!));
    const h = f32ToF16(Math.fround(amax / 127));
    out[b * Q8_0_BYTES] = h & 0xff;
    out[b * Q8_0_BYTES + 1] = h >> 8;
    const id = amax !== 0 ? Math.fround(127 / amax) : 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) q[b * Q8_0_BYTES + 2 + i] = roundEven(Math.fround(x[b * Q8_0_BLOCK + i]! * id));
  }
  return out;
}

/** y (m×n) = x (m×k) · W^T with W as n rows of k/32 Q8_0 blocks (k a multiple of 32). */
export function gemvQ8Ref(x: Float32Array, w: Uint8Array, y: Float32Array, m: number, n: number, k: number): void {
  if (k % Q8_0_BLOCK) throw new RangeError(`gemvQ8: k (${k}) must be a multiple of ${Q8_0_BLOCK}`);
  const nb = k / Q8_0_BLOCK;
  if (w.length < n * nb * Q8_0_BYTES || x.length < m * k || y.length < m * n) throw new RangeError('gemvQ8: an operand is shorter than its shape');
  const wq = new Int8Array(w.buffer, w.byteOffset, w.length);
  for (let i = 0; i < m; i++) {
    const xb = quantizeActivationsQ8(x.subarray(i * k, (i + 1) * k));
    const xq = new Int8Array(xb.buffer);
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let b = 0; b < nb; b++) {
        const wo = (j * nb + b) * Q8_0_BYTES, xo = b * Q8_0_BYTES;
        let s = 0;
        for (let t = 0; t < Q8_0_BLOCK; t++) s += wq[wo + 2 + t]! * xq[xo + 2 + t]!;
        const scale = Math.fround(f16Value(w[wo]! | (w[wo + 1]! << 8)) * f16Value(xb[xo]! | (xb[xo + 1]! << 8)));
        acc = Math.fround(acc + Math.fround(scale * s));
      }
      y[i * n + j] = acc;
    }
  }
}
