/**
 * A dense Llama-style decoder (the benchmark's `dense-10m` baseline, ANCHORS.md): pre-norm blocks
 * of standard multi-head attention (RoPE on interleaved pairs — the same `op.rope` as DeepSeek,
 * applied to the whole head) and a SwiGLU MLP, RMSNorm, untied embedding and output head.
 * Parameters are a plain object tree of Tensors; `denseParamEntries` gives their Hugging Face
 * Llama names. Everything runs through the autograd ops, so the same code trains (full sequences)
 * and decodes (batch 1 with `DenseKVCache`, under noGrad). Browser-safe.
 */
import { Tensor } from '../autograd/tensor.js';
import { isGradEnabled } from '../autograd/tape.js';
import { recycleF32 } from '../backend/alloc.js';
import * as op from '../ops/index.js';
import { gaussian, type MlpParams } from './deepseek.js';

/** Architecture of a dense model. Every field is required; presets are in `denseConfigs`. */
export interface DenseConfig {
  vocabSize: number;
  /** Model width d. */
  hiddenSize: number;
  numHiddenLayers: number;
  /** Query = key = value heads (standard MHA); head dim = hiddenSize / numAttentionHeads. */
  numAttentionHeads: number;
  /** SwiGLU inner width. */
  intermediateSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** Longest context the model is meant for (metadata; caches are sized by their caller). */
  maxPositionEmbeddings: number;
}

/** Named dense configs: `dense-10m` is ANCHORS.md's Llama-style benchmark model; `dense-tiny` is for tests. */
export const denseConfigs: Record<string, DenseConfig> = {
  'dense-10m': { vocabSize: 8192, hiddenSize: 256, numHiddenLayers: 6, numAttentionHeads: 8, intermediateSize: 1024, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 2048 },
  'dense-tiny': { vocabSize: 48, hiddenSize: 16, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 24, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 64 },
};

/** Per-head width; throws when the width does not split evenly into heads of even size. */
export function denseHeadDim(cfg: DenseConfig): number {
  const hd = cfg.hiddenSize / cfg.numAttentionHeads;
  if (!Number.isInteger(hd) || hd % 2 !== 0) throw new Error(`dense: hiddenSize ${cfg.hiddenSize} / ${cfg.numAttentionHeads} heads must be an even integer (RoPE rotates pairs)`);
  return hd;
}

export interface DenseAttnParams { qProj: Tensor; kProj: Tensor; vProj: Tensor; oProj: Tensor }
export interface DenseLayerParams { attnNorm: Tensor; attn: DenseAttnParams; ffnNorm: Tensor; mlp: MlpParams }
export interface DenseParams { embed: Tensor; layers: DenseLayerParams[]; norm: Tensor; head: Tensor }

/**
 * Parameters with the shapes `cfg` implies: std 0.02 normal (embedding std 1, residual outputs
 * o_proj/down_proj scaled by 1/sqrt(2L) like `initParams`), norms 1; `init: 'zeros'` for loading.
 */
export function initDenseParams(cfg: DenseConfig, opts: { seed?: number; init?: 'normal' | 'zeros' } = {}): DenseParams {
  denseHeadDim(cfg);
  const g = gaussian(opts.seed ?? 1234);
  const zero = opts.init === 'zeros';
  const resid = 0.02 / Math.sqrt(2 * cfg.numHiddenLayers);
  const mat = (rows: number, cols: number, std = 0.02): Tensor => {
    const d = new Float32Array(rows * cols);
    if (!zero) for (let i = 0; i < d.length; i++) d[i] = g() * std;
    return new Tensor(d, [rows, cols]).param();
  };
  const ones = (n: number): Tensor => new Tensor(new Float32Array(n).fill(1), [n]).param();
  const H = cfg.hiddenSize, F = cfg.intermediateSize;
  const layers = Array.from({ length: cfg.numHiddenLayers }, (): DenseLayerParams => ({
    attnNorm: ones(H), ffnNorm: ones(H),
    attn: { qProj: mat(H, H), kProj: mat(H, H), vProj: mat(H, H), oProj: mat(H, H, resid) },
    mlp: { gate: mat(F, H), up: mat(F, H), down: mat(H, F, resid) },
  }));
  const embed = mat(cfg.vocabSize, H, 1);
  return { embed, layers, norm: ones(H), head: mat(cfg.vocabSize, H) };
}

/** Every parameter with its Hugging Face Llama name, in checkpoint order. */
export function denseParamEntries(p: DenseParams): Array<[string, Tensor]> {
  const out: Array<[string, Tensor]> = [['model.embed_tokens.weight', p.embed]];
  p.layers.forEach((l, i) => {
    const pre = `model.layers.${i}`;
    out.push(
      [`${pre}.input_layernorm.weight`, l.attnNorm], [`${pre}.post_attention_layernorm.weight`, l.ffnNorm],
      [`${pre}.self_attn.q_proj.weight`, l.attn.qProj], [`${pre}.self_attn.k_proj.weight`, l.attn.kProj],
      [`${pre}.self_attn.v_proj.weight`, l.attn.vProj], [`${pre}.self_attn.o_proj.weight`, l.attn.oProj],
      [`${pre}.mlp.gate_proj.weight`, l.mlp.gate], [`${pre}.mlp.up_proj.weight`, l.mlp.up], [`${pre}.mlp.down_proj.weight`, l.mlp.down],
    );
  });
  out.push(['model.norm.weight', p.norm], ['lm_head.weight', p.head]);
  return out;
}

/** All parameters (every one is trained). */
export function denseTrainableParams(p: DenseParams): Tensor[] {
  return denseParamEntries(p).map(([, t]) => t);
}

/**
 * Hugging Face style config.json for a dense model. `rope_interleaved: true` marks the rotary
 * layout (pairs 2i, 2i+1, as DeepSeek) — HF Llama's own code rotates halves instead.
 */
export function denseHFConfig(cfg: DenseConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: cfg.vocabSize, hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize, num_hidden_layers: cfg.numHiddenLayers, num_attention_heads: cfg.numAttentionHeads,
    num_key_value_heads: cfg.numAttentionHeads, head_dim: denseHeadDim(cfg), hidden_act: 'silu', rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta, rope_interleaved: true, max_position_embeddings: cfg.maxPositionEmbeddings,
    tie_word_embeddings: false, torch_dtype: 'float32',
  };
}

/** cos/sin [T, headDim/2] for positions start..start+T-1 (angle rounded to f32 as `ropeTables` does). */
export function denseRopeTables(cfg: DenseConfig, start: number, T: number): { cos: Float32Array; sin: Float32Array } {
  const hd = denseHeadDim(cfg), half = hd / 2;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / hd);
  const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) {
    const a = Math.fround((start + t) * inv[i]!);
    cos[t * half + i] = Math.cos(a);
    sin[t * half + i] = Math.sin(a);
  }
  return { cos, sin };
}

/**
 * Batch-1 K/V cache for incremental decoding: per layer, K and V preallocated head-major
 * [heads][capacity][headDim], so each head's history is one contiguous block that attention reads
 * in place (a token-major layout made attention copy every head's K/V out on every step).
 * `length` is the number of cached positions (set by `denseForward`).
 */
export class DenseKVCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  length = 0;
  constructor(readonly cfg: DenseConfig, readonly capacity: number) {
    const n = capacity * cfg.hiddenSize;
    this.k = Array.from({ length: cfg.numHiddenLayers }, () => new Float32Array(n));
    this.v = Array.from({ length: cfg.numHiddenLayers }, () => new Float32Array(n));
  }
  /** Values cached per token per layer (K and V). */
  valuesPerToken(): number { return 2 * this.cfg.hiddenSize; }
  /**
   * Stores k, v [1, T, heads, headDim] at positions start.. and returns causal attention of
   * q [1, T, heads, headDim] over positions 0..start+T-1, as [1, T, heads, headDim].
   */
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor, start: number, scale: number): Tensor {
    const [B, T, nh, hd] = k.shape as [number, number, number, number];
    if (B !== 1) throw new Error(`DenseKVCache: batch ${B} given; the cache serves batch 1 (run sequences one at a time)`);
    const S = start + T, cap = this.capacity;
    if (S > cap) throw new Error(`DenseKVCache full: ${S} tokens > capacity ${cap} (build a larger cache)`);
    const kb = this.k[layer]!, vb = this.v[layer]!, K = k.f32, V = v.f32;
    for (let t = 0; t < T; t++) for (let h = 0; h < nh; h++) {
      const src = (t * nh + h) * hd, dst = (h * cap + start + t) * hd;
      kb.set(K.subarray(src, src + hd), dst);
      vb.set(V.subarray(src, src + hd), dst);
    }
    // One head at a time over views of its contiguous history (rows already cached never change).
    const outs: Tensor[] = [];
    for (let h = 0; h < nh; h++) {
      const kh = new Tensor(kb.subarray(h * cap * hd, (h * cap + S) * hd), [1, S, 1, hd]);
      const vh = new Tensor(vb.subarray(h * cap * hd, (h * cap + S) * hd), [1, S, 1, hd]);
      outs.push(op.causalAttention(op.slice(q, 2, h, h + 1), kh, vh, scale));
    }
    return op.concat(outs, 2);
  }
}

export interface DenseForwardOptions {
  /** Position of the first token (needs a cache when > 0). */
  startPos?: number;
  cache?: DenseKVCache | null;
  /** Inference override for every x·Wᵀ (e.g. bf16 decode weights, src/infer/bf16-node.ts). */
  linear?: (x: Tensor, w: Tensor) => Tensor;
  /** Output head on the last position only: logits [B, 1, V] (a generation prefill needs no more). */
  lastLogits?: boolean;
}

/** tokens [B, T] (i32) → logits [B, T, V] ([B, 1, V] with lastLogits). With a cache, appends this chunk's K/V at startPos. */
export function denseForward(p: DenseParams, cfg: DenseConfig, tokens: Tensor, opts: DenseForwardOptions = {}): Tensor {
  const hidden = denseHidden(p, cfg, tokens, opts), T = tokens.shape[1]!;
  if (!(opts.lastLogits && T > 1)) return (opts.linear ?? op.linear)(hidden, p.head);
  const last = op.slice(hidden, 1, T - 1, T);
  if (!isGradEnabled() && !opts.linear) recycleF32(hidden.f32); // dead: the slice is a copy
  return (opts.linear ?? op.linear)(last, p.head);
}

/** The model up to the final norm: [B, T, H] (what the head and the fused loss read). */
function denseHidden(p: DenseParams, cfg: DenseConfig, tokens: Tensor, opts: DenseForwardOptions): Tensor {
  if (tokens.rank !== 2) throw new Error(`denseForward: tokens must be [batch, seq], got [${tokens.shape.join(', ')}]`);
  const [B, T] = tokens.shape as [number, number];
  const start = opts.startPos ?? 0, cache = opts.cache ?? null;
  if (start > 0 && !cache) throw new Error('denseForward: startPos > 0 needs a DenseKVCache');
  const nh = cfg.numAttentionHeads, hd = denseHeadDim(cfg), H = cfg.hiddenSize, eps = cfg.rmsNormEps;
  const { cos, sin } = denseRopeTables(cfg, start, T);
  const scale = 1 / Math.sqrt(hd);
  const lin = opts.linear ?? op.linear;
  // Inference (no tape, our own products): each intermediate goes back to the allocation pool
  // once dead, and residual sums are made in place, so a prefill after the first reuses its
  // buffers (no GC, no first-touch page faults). Same values as the taped path, bit for bit.
  const inference = !isGradEnabled() && !opts.linear;
  const dead = (...ts: Tensor[]): void => { if (inference) for (const t of ts) recycleF32(t.f32); };
  const residual = (h: Tensor, y: Tensor): Tensor => {
    if (!inference) return op.add(h, y);
    op.addInPlace(h, y);
    dead(y);
    return h;
  };
  let h = op.embedding(p.embed, tokens);
  p.layers.forEach((l, i) => {
    const x = op.rmsNorm(h, l.attnNorm, eps);
    const heads = (w: Tensor): Tensor => op.reshape(lin(x, w), [B, T, nh, hd]);
    const q0 = heads(l.attn.qProj), k0 = heads(l.attn.kProj), v = heads(l.attn.vProj);
    dead(x);
    const q = op.rope(q0, cos, sin), k = op.rope(k0, cos, sin);
    dead(q0, k0);
    const o = cache ? cache.attend(i, q, k, v, start, scale) : op.causalAttention(q, k, v, scale);
    dead(q, k, v);
    h = residual(h, lin(op.reshape(o, [B, T, H]), l.attn.oProj));
    dead(o);
    const y = op.rmsNorm(h, l.ffnNorm, eps);
    const gate = lin(y, l.mlp.gate), up = lin(y, l.mlp.up);
    dead(y);
    const act = op.siluMul(gate, up);
    dead(gate, up);
    h = residual(h, lin(act, l.mlp.down));
    dead(act);
  });
  if (cache) cache.length = start + T;
  const out = op.rmsNorm(h, p.norm, eps);
  dead(h);
  return out;
}

/** Next-token cross-entropy: inputs [B, T], targets [B·T] (or [B, T]) → {loss tensor, its value}. */
export function denseLossFn(p: DenseParams, cfg: DenseConfig, inputs: Tensor, targets: Tensor): { loss: Tensor; mainLoss: number } {
  const [B, T] = inputs.shape as [number, number];
  // Head and cross-entropy fused: the [B·T, V] logits are never stored.
  const loss = op.linearCrossEntropy(op.reshape(denseHidden(p, cfg, inputs, {}), [B * T, cfg.hiddenSize]), p.head, targets);
  return { loss, mainLoss: loss.item() };
}
