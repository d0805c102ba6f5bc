/**
 * Precision recipes for training (one switch: 'fp32' | 'bf16' | 'fp8'), DeepSeek-V3 report §3.3.
 *
 * Contract:
 * - `makeProjLinear(recipe)` is the linear for the FP8-eligible projections (ForwardOptions
 *   .projLinear). Embedding, router, head, norms and attention stay f32 in every recipe (the model
 *   does that). 'fp32' → op.linear (saves x as f32: 4 B/value); 'bf16' → operands rounded to BF16,
 *   f32 accumulation, gradients likewise, x saved as BF16 bits (2 B/value); 'fp8' → fp8Linear
 *   (1 B/value + tile scales). All three count their saved bytes in `savedActivationStats()`.
 * - `recipeSettings(recipe)`: recompute (RMSNorm / MLA up-projection outputs recomputed in
 *   backward) is on for 'fp8', off otherwise; AdamW moments are BF16 for 'fp8', f32 otherwise.
 *   Master weights and gradients are f32 in all recipes.
 * - `AdamW`: decoupled weight decay, bias correction, moments stored in f32 or BF16
 *   (round-to-nearest-even after each update). Used only until the trainer's optimizer exists.
 * - On a CPU every low-precision format is emulated: BF16 decoded to f32; FP8 decoded to f32 (ts/wasm)
 *   or exactly to BF16 for the native backend's AVX-512 BF16 fp8Gemm (see linear.ts).
 */
import { Tensor, fmtShape } from '../autograd/tensor.js';
import { needsGrad, record } from '../autograd/tape.js';
import { kernel } from '../backend/registry.js';
import * as op from '../ops/index.js';
import { decodeBf16, encodeBf16 } from './codec.js';
import { fp8Linear, resolveFp8Gemm, trackSaved } from './linear.js';

/** The precision recipes. */
export type Recipe = 'fp32' | 'bf16' | 'fp8';
/** All recipes, for option validation. */
export const RECIPES: readonly Recipe[] = ['fp32', 'bf16', 'fp8'];

/** Throws an error naming the accepted values unless `s` is a recipe. */
export function parseRecipe(s: string): Recipe {
  if ((RECIPES as readonly string[]).includes(s)) return s as Recipe;
  throw new Error(`unknown precision recipe '${s}' (use ${RECIPES.join(', ')})`);
}

/** What a recipe switches besides the projection linear. */
export interface RecipeSettings {
  /** Recompute RMSNorm and MLA up-projection outputs in backward. */
  recompute: boolean;
  /** Storage of the AdamW moments. */
  momentDtype: 'f32' | 'bf16';
}

/** Settings of a recipe (see the file comment). */
export function recipeSettings(recipe: Recipe): RecipeSettings {
  return recipe === 'fp8' ? { recompute: true, momentDtype: 'bf16' } : { recompute: false, momentDtype: 'f32' };
}

/** One honest line for logs (the fp8 line names the GEMM the active backend runs: see fp8Linear). */
export function describeRecipe(recipe: Recipe): string {
  switch (recipe) {
    case 'fp32':
      return 'fp32: f32 GEMMs (FP32 accumulate); memory: activations saved as f32, AdamW moments f32';
    case 'bf16':
      return 'bf16: projection operands rounded to BF16, GEMM emulated on CPU in f32 (FP32 accumulate); memory: projection inputs saved as BF16, AdamW moments f32';
    case 'fp8':
      return `fp8: E4M3 1x128/128x128 scaled GEMM emulated on CPU (${resolveFp8Gemm() === 'native'
        ? 'native fp8Gemm: codes decoded exactly to BF16, AVX-512 BF16 dot products where the CPU has them' : 'codes decoded to f32, MatMul kernel'}; FP32 accumulate, 128-K promotion); ` +
        'memory: activations saved as FP8 bytes, AdamW moments BF16, norms/MLA up-projections recomputed';
  }
}

function roundBf16(x: Float32Array): Float32Array {
  return decodeBf16(encodeBf16(x));
}

function mm(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, transA: boolean, transB: boolean): void {
  kernel('MatMul')({ a, b, c, batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
}

/**
 * y = x·Wᵀ with x, W (and dY in backward) rounded to BF16 and f32 accumulation; saves x as BF16
 * bits (2 bytes per value). Gradients are f32.
 */
export function bf16Linear(x: Tensor, w: Tensor): Tensor {
  if (w.rank !== 2) throw new Error(`bf16Linear: weight must be [out, in], got ${fmtShape(w.shape)}`);
  const [N, K] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== K) throw new Error(`bf16Linear: input ${fmtShape(x.shape)} does not end in ${K} (weight ${fmtShape(w.shape)}${w.name ? ' ' + w.name : ''})`);
  const M = K === 0 ? 0 : x.size / K;
  const xb = encodeBf16(x.f32);
  const y = new Float32Array(M * N);
  mm(decodeBf16(xb), roundBf16(w.f32), y, M, N, K, false, true);
  const out = new Tensor(y, [...x.shape.slice(0, -1), N]);
  if (!needsGrad(x, w)) return out;
  let saved: Uint16Array | null = xb;
  const release = trackSaved(xb.byteLength);
  return record(out, 'Bf16Linear', [x, w], (g) => {
    if (!saved) throw new Error('bf16Linear: backward ran twice');
    const gb = roundBf16(g);
    let gx: Float32Array | null = null, gw: Float32Array | null = null;
    if (x.requiresGrad) { gx = new Float32Array(M * K); mm(gb, roundBf16(w.f32), gx, M, K, N, false, false); }
    if (w.requiresGrad) { gw = new Float32Array(N * K); mm(gb, decodeBf16(saved), gw, N, K, M, true, false); }
    return [gx, gw];
  }, () => { saved = null; release(); });
}

/** op.linear, with the f32 x it keeps for backward counted in savedActivationStats(). */
export function fp32Linear(x: Tensor, w: Tensor): Tensor {
  const out = op.linear(x, w);
  const node = out.node;
  if (node) {
    const release = trackSaved(x.size * 4);
    const prev = node.release;
    node.release = () => { prev?.(); release(); };
  }
  return out;
}

/** The projection linear of a recipe (ForwardOptions.projLinear). */
export function makeProjLinear(recipe: Recipe): (x: Tensor, w: Tensor) => Tensor {
  switch (recipe) {
    case 'fp32': return fp32Linear;
    case 'bf16': return bf16Linear;
    case 'fp8': return (x, w) => fp8Linear(x, w);
    default: throw new Error(`makeProjLinear: unknown recipe '${String(recipe)}' (use ${RECIPES.join(', ')})`);
  }
}

// ---------------------------------------------------------------------------------------------
// AdamW with f32 or BF16 moments

/** AdamW hyper-parameters. */
export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled weight decay, applied to matrices (rank >= 2) only. Default 0.1. */
  weightDecay?: number;
  /** Moment storage. Default 'f32'. */
  momentDtype?: 'f32' | 'bf16';
}

/** AdamW over f32 master weights; moments in f32 or BF16. Skips parameters without a gradient. */
export class AdamW {
  readonly params: Tensor[];
  private readonly m: (Float32Array | Uint16Array)[];
  private readonly v: (Float32Array | Uint16Array)[];
  private t = 0;
  readonly opts: Required<AdamWOptions>;

  constructor(params: Tensor[], opts: AdamWOptions) {
    if (!(opts.lr > 0)) throw new Error(`AdamW: lr must be > 0, got ${opts.lr}`);
    this.opts = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, momentDtype: 'f32', ...opts };
    this.params = params;
    const alloc = (n: number): Float32Array | Uint16Array => (this.opts.momentDtype === 'bf16' ? new Uint16Array(n) : new Float32Array(n));
    this.m = params.map((p) => alloc(p.size));
    this.v = params.map((p) => alloc(p.size));
  }

  /** Bytes of optimizer state (both moments). */
  stateBytes(): number {
    let n = 0;
    for (const a of this.m) n += a.byteLength;
    for (const a of this.v) n += a.byteLength;
    return n;
  }

  /** One update with learning rate `lr` (default opts.lr); gradients are left in place. */
  step(lr = this.opts.lr): void {
    const { beta1, beta2, eps, weightDecay } = this.opts;
    this.t++;
    const c1 = 1 - beta1 ** this.t, c2 = 1 - beta2 ** this.t;
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i]!;
      const g = p.grad;
      if (!g) continue;
      const w = p.f32;
      const decay = p.rank >= 2 ? 1 - lr * weightDecay : 1;
      const ms = this.m[i]!, vs = this.v[i]!;
      const m = ms instanceof Float32Array ? ms : decodeBf16(ms);
      const v = vs instanceof Float32Array ? vs : decodeBf16(vs);
      for (let j = 0; j < w.length; j++) {
        const gj = g[j]!;
        const mj = beta1 * m[j]! + (1 - beta1) * gj;
        const vj = beta2 * v[j]! + (1 - beta2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        w[j] = w[j]! * decay - (lr * (mj / c1)) / (Math.sqrt(vj / c2) + eps);
      }
      if (ms instanceof Uint16Array) ms.set(encodeBf16(m));
      if (vs instanceof Uint16Array) vs.set(encodeBf16(v));
    }
  }
}
