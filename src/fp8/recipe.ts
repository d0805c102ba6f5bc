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

/**
 * Ablations of the fp8 recipe, each one switch away from it (the report separates these choices):
 * which backward GEMMs run in FP8, the optimizer-moment format, and recomputation.
 */
export const ABLATIONS = {
  'fp8:fwd-only': { dgrad: 'bf16', wgrad: 'bf16', what: 'FP8 forward only: Dgrad and Wgrad in BF16 (x saved as BF16)' },
  'fp8:dgrad-bf16': { dgrad: 'bf16', what: 'activation gradients (Dgrad) in BF16, Fprop and Wgrad in FP8' },
  'fp8:wgrad-bf16': { wgrad: 'bf16', what: 'weight gradients (Wgrad) in BF16 (x saved as BF16), Fprop and Dgrad in FP8' },
  'fp8:f32-moments': { momentDtype: 'f32', what: 'AdamW moments in f32 instead of BF16' },
  'fp8:no-recompute': { recompute: false, what: 'norm and MLA up-projection outputs stored, not recomputed' },
  'fp8:accum-14bit': { accum: 1, what: 'GEMM partial sums kept to ~14 bits (H800 tensor cores) within each 128-K block, promoted to FP32 every 128' },
  'fp8:no-promotion': { accum: 2, what: 'GEMM sums kept to ~14 bits over the whole K, never promoted to FP32' },
} as const satisfies Record<string, { dgrad?: 'bf16'; wgrad?: 'bf16'; momentDtype?: 'f32'; recompute?: false; accum?: 1 | 2; what: string }>;
/** A recipe or one of its ablations (`fp8:…`). */
export type Variant = Recipe | keyof typeof ABLATIONS;
type AblationSpec = { dgrad?: 'bf16'; wgrad?: 'bf16'; momentDtype?: 'f32'; recompute?: false; accum?: 1 | 2; what: string };
const ablation = (v: Variant): AblationSpec | null => (v in ABLATIONS ? (ABLATIONS as Record<string, AblationSpec>)[v]! : null);

/** Throws an error naming the accepted values unless `s` is a recipe or an ablation. */
export function parseVariant(s: string): Variant {
  if ((RECIPES as readonly string[]).includes(s) || s in ABLATIONS) return s as Variant;
  throw new Error(`unknown precision recipe '${s}' (use ${RECIPES.join(', ')}, or an ablation: ${Object.keys(ABLATIONS).join(', ')})`);
}

/** The recipe an ablation modifies (the recipe itself otherwise). */
export function baseRecipe(v: Variant): Recipe { return ablation(v) ? 'fp8' : (v as Recipe); }

/** What a recipe switches besides the projection linear. */
export interface RecipeSettings {
  /** Recompute RMSNorm and MLA up-projection outputs in backward. */
  recompute: boolean;
  /** Storage of the AdamW moments. */
  momentDtype: 'f32' | 'bf16';
}

/** Settings of a recipe (see the file comment). */
export function recipeSettings(recipe: Variant): RecipeSettings {
  const base: RecipeSettings = baseRecipe(recipe) === 'fp8' ? { recompute: true, momentDtype: 'bf16' } : { recompute: false, momentDtype: 'f32' };
  const a = ablation(recipe);
  return { recompute: a?.recompute ?? base.recompute, momentDtype: a?.momentDtype ?? base.momentDtype };
}

/** One honest line for logs (the fp8 line names the GEMM the active backend runs: see fp8Linear). */
export function describeRecipe(recipe: Variant): string {
  const a = ablation(recipe);
  if (a) return `${recipe}: the fp8 recipe with one switch changed: ${a.what}`;
  switch (recipe as Recipe) {
    case 'fp32':
      return 'fp32: f32 GEMMs (FP32 accumulate); memory: activations saved as f32, AdamW moments f32';
    case 'bf16':
      return 'bf16: projection operands rounded to BF16, GEMM emulated on CPU in f32 (FP32 accumulate); memory: projection inputs saved as BF16, AdamW moments f32';
    case 'fp8':
      return `fp8: E4M3 1x128/128x128 scaled GEMM emulated on CPU (${resolveFp8Gemm() === 'native'
        ? 'native kernels: quantisers in C++, GEMM reads the codes, decoded exactly to BF16 for AVX-512 BF16 dot products' : 'TS kernels: codes decoded to f32, MatMul kernel'}; FP32 accumulate, 128-K promotion; weights quantised once per step); ` +
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
export function makeProjLinear(recipe: Variant): (x: Tensor, w: Tensor) => Tensor {
  const a = ablation(recipe);
  if (a) {
    const o = { dgrad: a.dgrad, wgrad: a.wgrad, accum: a.accum };
    return (x, w) => fp8Linear(x, w, o);
  }
  switch (recipe as Recipe) {
    case 'fp32': return fp32Linear;
    case 'bf16': return bf16Linear;
    case 'fp8': return (x, w) => fp8Linear(x, w);
    default: throw new Error(`makeProjLinear: unknown recipe '${String(recipe)}' (use ${RECIPES.join(', ')})`);
  }
}

