/**
 * DeepSeek-V3 in one file (nanoGPT-style), matching DeepSeek's official inference code
 * (../shared/reference/SPEC.md): RMSNorm, RoPE on interleaved pairs with YaRN, Multi-head Latent
 * Attention (naive and absorbed forms, optional q_lora), the sigmoid gate with correction bias and
 * group-limited top-k, DeepSeekMoE with shared experts, dense first layers, and the MTP module.
 * Parameters are a plain object tree of Tensors (`ModelParams`); `paramEntries` maps it to and from
 * Hugging Face tensor names. Everything runs through the autograd ops, so the same code trains
 * (full sequences) and serves (KV-cached decoding under noGrad).
 */
import { Tensor } from '../autograd/tensor.js';
import { noGrad, needsGrad, isGradEnabled, recompute as recomputeFn } from '../autograd/tape.js';
import { kernel } from '../backend/registry.js';
import { recycleF32 } from '../backend/alloc.js';
import * as op from '../ops/index.js';
import { type DeepSeekConfig, isMoeLayer, ropeInvFreq, softmaxScale, yarnMscale } from './config.js';
import { checkAllocation } from './size.js';

// ---------------------------------------------------------------------------------------------
// Parameters

export interface MlpParams { gate: Tensor; up: Tensor; down: Tensor }
export interface MlaParams {
  qProj: Tensor | null; qAProj: Tensor | null; qANorm: Tensor | null; qBProj: Tensor | null;
  kvAProj: Tensor; kvANorm: Tensor; kvBProj: Tensor; oProj: Tensor;
}
export interface MoeParams {
  router: Tensor;
  /** e_score_correction_bias [E]: used only for selection, never trained by gradient. */
  bias: Tensor | null;
  experts: MlpParams[];
  shared: MlpParams | null;
}
export interface LayerParams { attnNorm: Tensor; attn: MlaParams; ffnNorm: Tensor; mlp: MlpParams | null; moe: MoeParams | null }
export interface MtpParams { embed: Tensor; enorm: Tensor; hnorm: Tensor; ehProj: Tensor; layer: LayerParams; headNorm: Tensor; head: Tensor }
export interface ModelParams { embed: Tensor; layers: LayerParams[]; norm: Tensor; head: Tensor; mtp: MtpParams[] }

/** Every parameter with its Hugging Face name (MTP copies of embed/head included). */
export function paramEntries(p: ModelParams, cfg: DeepSeekConfig): Array<[string, Tensor]> {
  const out: Array<[string, Tensor]> = [['model.embed_tokens.weight', p.embed]];
  const layer = (pre: string, l: LayerParams): void => {
    out.push([`${pre}.input_layernorm.weight`, l.attnNorm], [`${pre}.post_attention_layernorm.weight`, l.ffnNorm]);
    const a = l.attn, sa = `${pre}.self_attn`;
    if (a.qProj) out.push([`${sa}.q_proj.weight`, a.qProj]);
    else out.push([`${sa}.q_a_proj.weight`, a.qAProj!], [`${sa}.q_a_layernorm.weight`, a.qANorm!], [`${sa}.q_b_proj.weight`, a.qBProj!]);
    out.push([`${sa}.kv_a_proj_with_mqa.weight`, a.kvAProj], [`${sa}.kv_a_layernorm.weight`, a.kvANorm],
      [`${sa}.kv_b_proj.weight`, a.kvBProj], [`${sa}.o_proj.weight`, a.oProj]);
    const mlp = (q: string, m: MlpParams): void => { out.push([`${q}.gate_proj.weight`, m.gate], [`${q}.up_proj.weight`, m.up], [`${q}.down_proj.weight`, m.down]); };
    if (l.mlp) mlp(`${pre}.mlp`, l.mlp);
    if (l.moe) {
      out.push([`${pre}.mlp.gate.weight`, l.moe.router]);
      if (l.moe.bias) out.push([`${pre}.mlp.gate.e_score_correction_bias`, l.moe.bias]);
      l.moe.experts.forEach((e, i) => mlp(`${pre}.mlp.experts.${i}`, e));
      if (l.moe.shared) mlp(`${pre}.mlp.shared_experts`, l.moe.shared);
    }
  };
  p.layers.forEach((l, i) => layer(`model.layers.${i}`, l));
  p.mtp.forEach((m, d) => {
    const pre = `model.layers.${cfg.numHiddenLayers + d}`;
    out.push([`${pre}.embed_tokens.weight`, m.embed], [`${pre}.enorm.weight`, m.enorm], [`${pre}.hnorm.weight`, m.hnorm],
      [`${pre}.eh_proj.weight`, m.ehProj], [`${pre}.shared_head.norm.weight`, m.headNorm], [`${pre}.shared_head.head.weight`, m.head]);
    layer(pre, m.layer);
  });
  out.push(['model.norm.weight', p.norm], ['lm_head.weight', p.head]);
  return out;
}

/** Unique trainable tensors (MTP embed/head shared with the main model count once; gate biases excluded). */
export function trainableParams(p: ModelParams, cfg: DeepSeekConfig): Tensor[] {
  const seen = new Set<Tensor>();
  for (const [name, t] of paramEntries(p, cfg)) if (!name.endsWith('e_score_correction_bias')) seen.add(t);
  return [...seen];
}

/** Deterministic Gaussian initialiser (Box–Muller over a 32-bit mix). */
export function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const u = (): number => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296; };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/**
 * Builds parameters with the shapes `cfg` implies. `init`: 'normal' (std 0.02, residual outputs
 * scaled by 1/sqrt(2L) as GPT-2 does; norms 1) or 'zeros' (for loading).
 */
export function initParams(cfg: DeepSeekConfig, opts: { seed?: number; init?: 'normal' | 'zeros' } = {}): ModelParams {
  checkAllocation(cfg, { limitBytes: Infinity, bytesPerElement: 4, what: 'config', purpose: 'allocating', fix: 'use smaller dimensions' });
  const g = gaussian(opts.seed ?? 1234);
  const zero = opts.init === 'zeros';
  const resid = 0.02 / Math.sqrt(2 * (cfg.numHiddenLayers + cfg.numNextnPredictLayers));
  const mat = (rows: number, cols: number, std = 0.02): Tensor => {
    const d = new Float32Array(rows * cols);
    if (!zero) for (let i = 0; i < d.length; i++) d[i] = g() * std;
    return new Tensor(d, [rows, cols]).param();
  };
  const ones = (n: number): Tensor => new Tensor(new Float32Array(n).fill(1), [n]).param();
  const H = cfg.hiddenSize, nh = cfg.numAttentionHeads, dq = cfg.qkNopeHeadDim + cfg.qkRopeHeadDim;
  const mlp = (w: number): MlpParams => ({ gate: mat(w, H), up: mat(w, H), down: mat(H, w, resid) });
  const layer = (i: number): LayerParams => {
    const q = cfg.qLoraRank;
    const attn: MlaParams = {
      qProj: q === null ? mat(nh * dq, H) : null,
      qAProj: q === null ? null : mat(q, H), qANorm: q === null ? null : ones(q), qBProj: q === null ? null : mat(nh * dq, q),
      kvAProj: mat(cfg.kvLoraRank + cfg.qkRopeHeadDim, H), kvANorm: ones(cfg.kvLoraRank),
      kvBProj: mat(nh * (cfg.qkNopeHeadDim + cfg.vHeadDim), cfg.kvLoraRank), oProj: mat(H, nh * cfg.vHeadDim, resid),
    };
    const moe = isMoeLayer(cfg, i);
    return {
      attnNorm: ones(H), attn, ffnNorm: ones(H),
      mlp: moe ? null : mlp(cfg.intermediateSize),
      moe: moe ? {
        router: mat(cfg.nRoutedExperts, H, 0.006),
        bias: cfg.topkMethod === 'noaux_tc' ? new Tensor(new Float32Array(cfg.nRoutedExperts), [cfg.nRoutedExperts]) : null,
        experts: Array.from({ length: cfg.nRoutedExperts }, () => mlp(cfg.moeIntermediateSize)),
        shared: cfg.nSharedExperts > 0 ? mlp(cfg.nSharedExperts * cfg.moeIntermediateSize) : null,
      } : null,
    };
  };
  const embed = mat(cfg.vocabSize, H, zero ? 0 : 1);
  const head = mat(cfg.vocabSize, H);
  const layers = Array.from({ length: cfg.numHiddenLayers }, (_, i) => layer(i));
  const mtp = Array.from({ length: cfg.numNextnPredictLayers }, (_, d) => ({
    embed, head, enorm: ones(H), hnorm: ones(H), ehProj: mat(H, 2 * H), headNorm: ones(H), layer: layer(cfg.numHiddenLayers + d),
  }));
  return { embed, layers, norm: ones(H), head, mtp };
}

// ---------------------------------------------------------------------------------------------
// RoPE tables

/** cos/sin [T, dr/2] for positions start..start+T-1 (YaRN and HF's cos/sin attention factor included). */
export function ropeTables(cfg: DeepSeekConfig, start: number, T: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(cfg);
  const half = inv.length;
  const y = cfg.ropeScaling;
  const af = y ? yarnMscale(y.factor, y.mscale) / yarnMscale(y.factor, y.mscaleAllDim) : 1;
  const cos = new Float32Array(T * half), sin = new Float32Array(T * half);
  for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) {
    // Angle in float32 like the official polar table (p·θ_i computed from float32 θ).
    const a = Math.fround((start + t) * inv[i]!);
    cos[t * half + i] = Math.cos(a) * af;
    sin[t * half + i] = Math.sin(a) * af;
  }
  return { cos, sin };
}

// ---------------------------------------------------------------------------------------------
// KV cache (inference)

/**
 * Per-layer cache for incremental decoding. Absorb: the normalised latent ĉ (kvLoraRank) and the
 * roped k_pe (qkRopeHeadDim) per token — what MLA is for. Naive: full per-head k and v.
 */
export class KVCache {
  readonly layers: { a: Float32Array; b: Float32Array }[];
  length = 0;
  constructor(readonly cfg: DeepSeekConfig, readonly batch: number, readonly capacity: number, readonly mode: 'absorb' | 'naive', extraLayers = 0) {
    const nh = cfg.numAttentionHeads, dq = cfg.qkNopeHeadDim + cfg.qkRopeHeadDim;
    // Absorb keeps [ĉ | k_pe] together in `a`; naive keeps k in `a` and v in `b`.
    const [da, db] = mode === 'absorb' ? [cfg.kvLoraRank + cfg.qkRopeHeadDim, 0] : [nh * dq, nh * cfg.vHeadDim];
    this.layers = Array.from({ length: cfg.numHiddenLayers + extraLayers }, () => ({
      a: new Float32Array(batch * capacity * da), b: new Float32Array(batch * capacity * db),
    }));
  }
  /** Values cached per token per layer (absorb: kvLoraRank + qkRopeHeadDim). */
  valuesPerToken(): number {
    const c = this.cfg;
    return this.mode === 'absorb' ? c.kvLoraRank + c.qkRopeHeadDim : c.numAttentionHeads * (c.qkNopeHeadDim + c.qkRopeHeadDim + c.vHeadDim);
  }
  /** Appends rows [B, T, D] at `start` and returns [B, start+T, 1|H, D'] views as tensors. */
  append(layer: number, which: 'a' | 'b', x: Tensor, start: number, heads: number): Tensor {
    const buf = this.layers[layer]![which];
    const [B, T] = x.shape as [number, number];
    const D = x.size / (B * T);
    if (start + T > this.capacity) throw new Error(`KV cache full: ${start + T} tokens > capacity ${this.capacity}`);
    const X = x.f32;
    const S = start + T;
    for (let b = 0; b < B; b++) buf.set(X.subarray(b * T * D, (b + 1) * T * D), (b * this.capacity + start) * D);
    // Batch 1: the first S rows are contiguous — a view, no copy (rows already cached never change).
    if (B === 1) return new Tensor(buf.subarray(0, S * D), [1, S, heads, D / heads]);
    const out = new Float32Array(B * S * D);
    for (let b = 0; b < B; b++) out.set(buf.subarray(b * this.capacity * D, (b * this.capacity + S) * D), b * S * D);
    return new Tensor(out, [B, S, heads, D / heads]);
  }
}

// ---------------------------------------------------------------------------------------------
// Blocks

export type AttnImpl = 'naive' | 'absorb';

export interface ForwardOptions {
  /** Position of the first token (needs a cache when > 0). */
  startPos?: number;
  attn?: AttnImpl;
  cache?: KVCache | null;
  /** Recompute RMSNorm and MLA up-projections in backward instead of storing them. */
  recompute?: boolean;
  /** Record per-layer routing (expert ids) for tests, balancing and MaxVio; 'scores' also keeps
   *  each layer's gate scores [N, E] (for tests that recompute the selection independently). */
  collectRouting?: boolean | 'scores';
  /** Sequence-wise balance loss weight α (report §2.1.2); 0 = off. */
  balanceAlpha?: number;
  /**
   * The linear used for the FP8-eligible projections (MLA, dense MLP, experts); the embedding,
   * router, output head, norms and attention core always stay in f32 (DeepSeek-V3 recipe).
   * Default: f32 `op.linear`. The fp8 module supplies the FP8 one.
   */
  projLinear?: (x: Tensor, w: Tensor) => Tensor;
  /**
   * Inference override for every other x·Wᵀ too: projections (unless projLinear is set), the MTP
   * input projection and the output heads; the router stays f32 `op.linear`. Used to decode
   * with bf16 weights (src/infer/bf16-node.ts). Not for training.
   */
  linear?: (x: Tensor, w: Tensor) => Tensor;
  /** Output head on the last position only: logits [B, 1, V] (a generation prefill needs no more). */
  lastLogits?: boolean;
}

export interface RoutingRecord {
  layer: number; ids: Int32Array; weights: Float32Array; tokens: number; k: number;
  /** Gate scores [tokens, E] before the bias (only with `collectRouting: 'scores'`). */
  scores?: Float32Array;
}

interface Ctx {
  cfg: DeepSeekConfig; B: number; T: number; start: number; cos: Float32Array; sin: Float32Array;
  impl: AttnImpl; cache: KVCache | null; recompute: boolean; routing: RoutingRecord[] | null; routingScores: boolean;
  balanceAlpha: number; balance: Tensor[];
  lin: (x: Tensor, w: Tensor) => Tensor;
}

function norm(ctx: Ctx, x: Tensor, w: Tensor): Tensor {
  const eps = ctx.cfg.rmsNormEps;
  return ctx.recompute ? recomputeFn((t) => op.rmsNorm(t, w, eps), x) : op.rmsNorm(x, w, eps);
}

function swiglu(ctx: Ctx, x: Tensor, m: MlpParams): Tensor {
  return ctx.lin(op.siluMul(ctx.lin(x, m.gate), ctx.lin(x, m.up)), m.down);
}

/** Multi-head Latent Attention over x [B, T, H]; layer index selects the cache slot. */
function mla(ctx: Ctx, x: Tensor, a: MlaParams, layerIdx: number): Tensor {
  const { cfg, B, T } = ctx;
  const nh = cfg.numAttentionHeads, dn = cfg.qkNopeHeadDim, dr = cfg.qkRopeHeadDim, dv = cfg.vHeadDim, rkv = cfg.kvLoraRank;
  const up = (t: Tensor, w: Tensor): Tensor => (ctx.recompute ? recomputeFn((u) => ctx.lin(u, w), t) : ctx.lin(t, w));
  const q = a.qProj ? ctx.lin(x, a.qProj) : up(norm(ctx, ctx.lin(x, a.qAProj!), a.qANorm!), a.qBProj!);
  const [c, kPe0] = op.split(ctx.lin(x, a.kvAProj), [rkv, dr], 2) as [Tensor, Tensor];
  const cHat = norm(ctx, c, a.kvANorm);
  const kPe = op.rope(op.reshape(kPe0, [B, T, 1, dr]), ctx.cos, ctx.sin);
  const scale = softmaxScale(cfg);
  let o: Tensor;
  if (ctx.impl === 'naive') {
    // [q_nope | rope(q_pe)] in one op; keys [k_nope | k_pe repeated per head] in one copy.
    const qAll = op.rope(op.reshape(q, [B, T, nh, dn + dr]), ctx.cos, ctx.sin, dn);
    const kv = op.reshape(up(cHat, a.kvBProj), [B, T, nh, dn + dv]);
    const v = op.slice(kv, 3, dn, dn + dv);
    let k = op.concatHeads(kv, kPe, dn);
    let vv = v;
    if (ctx.cache) {
      k = ctx.cache.append(layerIdx, 'a', op.reshape(k, [B, T, nh * (dn + dr)]), ctx.start, nh);
      vv = ctx.cache.append(layerIdx, 'b', op.reshape(v, [B, T, nh * dv]), ctx.start, nh);
    }
    o = op.causalAttention(qAll, k, vv, scale);
  } else {
    const [qNope, qPe0] = op.split(op.reshape(q, [B, T, nh, dn + dr]), [dn, dr], 3) as [Tensor, Tensor];
    const qPe = op.rope(qPe0, ctx.cos, ctx.sin);
    // Absorb W_UK into the query and W_UV into the output (SPEC §5.6).
    if (B * T === 1 && !needsGrad(qNope, a.kvBProj)) return ctx.lin(op.reshape(absorbDecodeStep(ctx, a, layerIdx, qNope, qPe, cHat, kPe), [B, T, nh * dv]), a.oProj);
    const wkv = op.reshape(a.kvBProj, [nh, dn + dv, rkv]);
    const [wUK, wUV] = op.split(wkv, [dn, dv], 1) as [Tensor, Tensor];
    const qh = op.permute(op.reshape(qNope, [B * T, nh, dn]), [1, 0, 2]); // [nh, BT, dn]
    const qAbs = op.reshape(op.permute(op.matmul(qh, wUK), [1, 0, 2]), [B, T, nh, rkv]);
    let keys = op.concat([op.reshape(cHat, [B, T, 1, rkv]), kPe], 3); // [B, T, 1, rkv+dr]
    if (ctx.cache) {
      keys = ctx.cache.append(layerIdx, 'a', op.reshape(keys, [B, T, rkv + dr]), ctx.start, 1);
    }
    const oLat = op.latentAttention(op.concat([qAbs, qPe], 3), keys, rkv, scale); // [B, T, nh, rkv]; values = keys[..., :rkv]
    const ol = op.permute(op.reshape(oLat, [B * T, nh, rkv]), [1, 0, 2]); // [nh, BT, rkv]
    o = op.permute(op.matmul(ol, wUV, { transB: true }), [1, 0, 2]); // [BT, nh, dv]
  }
  return ctx.lin(op.reshape(o, [B, T, nh * dv]), a.oProj);
}

/**
 * One decode token of absorbed MLA without recording: W_UK and W_UV are read in place as strided
 * blocks of kv_b_proj (no per-token split copies of the weight), and with one token the [1, nh, ·]
 * rows are already head-major (no permutes). Same arithmetic as the general absorbed path.
 */
function absorbDecodeStep(ctx: Ctx, a: MlaParams, layerIdx: number, qNope: Tensor, qPe: Tensor, cHat: Tensor, kPe: Tensor): Tensor {
  const cfg = ctx.cfg;
  const nh = cfg.numAttentionHeads, dn = cfg.qkNopeHeadDim, dv = cfg.vHeadDim, rkv = cfg.kvLoraRank, dr = cfg.qkRopeHeadDim;
  const W = a.kvBProj.f32, blk = (dn + dv) * rkv;
  const mm = kernel('MatMul');
  // q_abs[h] = q_nope[h] · W_UK[h]   ([1, dn] · [dn, rkv] per head)
  const qAbs = new Float32Array(nh * rkv);
  mm({ a: qNope.f32, b: W, c: qAbs, batch: nh, m: 1, n: rkv, k: dn, transA: false, transB: false, strideA: dn, strideB: blk, strideC: rkv, accumulate: false });
  let keys = op.concat([op.reshape(cHat, [1, 1, 1, rkv]), kPe], 3);
  if (ctx.cache) keys = ctx.cache.append(layerIdx, 'a', op.reshape(keys, [1, 1, rkv + dr]), ctx.start, 1);
  const q = op.concat([new Tensor(qAbs, [1, 1, nh, rkv]), op.reshape(qPe, [1, 1, nh, dr])], 3);
  const oLat = op.latentAttention(q, keys, rkv, softmaxScale(cfg)); // [1, 1, nh, rkv]
  // o[h] = o_lat[h] · W_UV[h]ᵀ   ([1, rkv] · [rkv, dv] per head; W_UV[h] starts dn rows into block h)
  const o = new Float32Array(nh * dv);
  mm({ a: oLat.f32, b: W.subarray(dn * rkv), c: o, batch: nh, m: 1, n: dv, k: rkv, transA: false, transB: true, strideA: rkv, strideB: blk, strideC: dv, accumulate: false });
  return new Tensor(o, [1, 1, nh, dv]);
}

/** Group-limited top-k selection (no gradient): returns expert ids [N, k]. */
export function selectExperts(cfg: DeepSeekConfig, scores: Float32Array, bias: Float32Array | null, N: number): Int32Array {
  const E = cfg.nRoutedExperts, k = cfg.numExpertsPerTok, G = cfg.nGroup, Gk = cfg.topkGroup, per = E / G;
  const ids = new Int32Array(N * k);
  const b = new Float64Array(E), gs = new Float64Array(G), keep = new Uint8Array(G);
  const limited = cfg.topkMethod !== 'greedy' && G > 1 && Gk < G;
  for (let n = 0; n < N; n++) {
    for (let e = 0; e < E; e++) b[e] = scores[n * E + e]! + (bias ? bias[e]! : 0);
    if (limited) {
      for (let g = 0; g < G; g++) {
        let m1 = -Infinity, m2 = -Infinity;
        for (let j = 0; j < per; j++) {
          const v = b[g * per + j]!;
          if (v > m1) { m2 = m1; m1 = v; } else if (v > m2) m2 = v;
        }
        // V3 (bias present): sum of the top two; V2 and bias-free: group max (SPEC §7.5).
        gs[g] = bias ? m1 + m2 : m1;
      }
      keep.fill(0);
      for (let r = 0; r < Gk; r++) {
        let best = -1;
        for (let g = 0; g < G; g++) if (!keep[g] && (best < 0 || gs[g]! > gs[best]!)) best = g;
        keep[best] = 1;
      }
      for (let g = 0; g < G; g++) if (!keep[g]) for (let j = 0; j < per; j++) b[g * per + j] = -Infinity;
    }
    // Top-k by repeated arg-max (k is small); a chosen expert is set to −∞.
    for (let r = 0; r < k; r++) {
      let best = 0;
      for (let e = 1; e < E; e++) if (b[e]! > b[best]!) best = e;
      ids[n * k + r] = best;
      b[best] = -Infinity;
    }
  }
  return ids;
}

/** DeepSeekMoE over x [N, H]: routed experts by gate weights plus the shared expert. */
function moe(ctx: Ctx, x: Tensor, m: MoeParams, layerIdx: number): Tensor {
  const cfg = ctx.cfg;
  const [N, H] = x.shape as [number, number];
  const E = cfg.nRoutedExperts, k = cfg.numExpertsPerTok;
  const logits = op.linear(x, m.router);
  const scores = cfg.scoringFunc === 'sigmoid' ? op.sigmoid(logits) : op.softmax(logits);
  const ids = selectExperts(cfg, scores.f32, m.bias ? m.bias.f32 : null, N);
  const idsT = new Tensor(ids, [N, k], 'i32');
  let w = op.gather(scores, idsT); // [N, k] from UNBIASED scores
  const normalise = cfg.scoringFunc === 'sigmoid' ? true : cfg.normTopkProb;
  if (normalise && k > 1) w = op.div(w, op.sum(w, 1, true));
  w = op.mulScalar(w, cfg.routedScalingFactor);
  if (ctx.routing) ctx.routing.push({ layer: layerIdx, ids, weights: w.f32.slice(), tokens: N, k, ...(ctx.routingScores ? { scores: scores.f32.slice() } : {}) });
  if (ctx.balanceAlpha > 0 && cfg.scoringFunc === 'sigmoid') ctx.balance.push(balanceLoss(ctx, scores, ids));
  // All experts in one op: the grouped native kernel for f32 projections, else composed per expert.
  return ctx.lin === op.linear ? op.moeFfn(x, m.experts, m.shared, ids, k, w) : op.moeFfnComposed(x, m.experts, m.shared, ids, k, w, ctx.lin);
}

/** Complementary sequence-wise balance loss α·Σ_i f_i·P_i per sequence, averaged over the batch. */
function balanceLoss(ctx: Ctx, scores: Tensor, ids: Int32Array): Tensor {
  const { B, T, cfg } = ctx;
  const E = cfg.nRoutedExperts, k = cfg.numExpertsPerTok;
  const sN = op.div(scores, op.sum(scores, 1, true)); // s'_{i,t}
  const P = op.mean(op.reshape(sN, [B, T, E]), 1); // [B, E]
  const f = new Float32Array(B * E);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) for (let j = 0; j < k; j++) f[b * E + ids[(b * T + t) * k + j]!]! += E / (k * T);
  return op.mulScalar(op.mean(op.sum(op.mul(P, new Tensor(f, [B, E])), 1)), ctx.balanceAlpha);
}

function block(ctx: Ctx, h: Tensor, l: LayerParams, layerIdx: number): Tensor {
  const { B, T, cfg } = ctx;
  // Inference with the f32 products (no tape): the residual stream is summed in place and each
  // sublayer's input and output go back to the allocation pool once added (a prefill then reuses
  // its buffers). The caches copy what they keep; same values as the taped path.
  const inference = !isGradEnabled() && ctx.lin === op.linear;
  const residual = (h: Tensor, y: Tensor, x: Tensor): Tensor => {
    if (!inference) return op.add(h, y);
    op.addInPlace(h, y);
    recycleF32(y.f32); recycleF32(x.f32);
    return h;
  };
  const xa = norm(ctx, h, l.attnNorm);
  h = residual(h, mla(ctx, xa, l.attn, layerIdx), xa);
  const x = norm(ctx, h, l.ffnNorm);
  const f = l.moe ? op.reshape(moe(ctx, op.reshape(x, [B * T, cfg.hiddenSize]), l.moe, layerIdx), [B, T, cfg.hiddenSize]) : swiglu(ctx, x, l.mlp!);
  return residual(h, f, x);
}

export interface ForwardResult {
  /** [B, T, V] logits of every position ([B, 1, V] with `lastLogits`). */
  logits: Tensor;
  /** Main model's last hidden state after the final norm [B, T, H] (MTP input). */
  hidden: Tensor;
  routing: RoutingRecord[];
  /** Sum of the sequence-wise balance losses (null when α = 0). */
  balanceLoss: Tensor | null;
}

function makeCtx(cfg: DeepSeekConfig, B: number, T: number, opts: ForwardOptions): Ctx {
  const start = opts.startPos ?? 0;
  if (start > 0 && !opts.cache) throw new Error('forward: startPos > 0 needs a KV cache');
  // Training defaults to the naive form (cheaper per token with no cache); decoding to the cache's form.
  const impl = opts.attn ?? (opts.cache ? opts.cache.mode : 'naive');
  if (opts.cache && opts.cache.mode !== impl) throw new Error(`forward: cache was built for '${opts.cache.mode}' attention, not '${impl}'`);
  const { cos, sin } = ropeTables(cfg, start, T);
  return {
    cfg, B, T, start, cos, sin, impl, cache: opts.cache ?? null, recompute: opts.recompute ?? false,
    routing: opts.collectRouting ? [] : null, routingScores: opts.collectRouting === 'scores', balanceAlpha: opts.balanceAlpha ?? 0, balance: [],
    lin: opts.projLinear ?? opts.linear ?? op.linear,
  };
}

/** The main model up to the final norm (no output head): what `forward` and `lossFn` share. */
function forwardBody(p: ModelParams, cfg: DeepSeekConfig, tokens: Tensor, opts: ForwardOptions): Omit<ForwardResult, 'logits'> {
  if (tokens.rank !== 2) throw new Error(`forward: tokens must be [batch, seq], got [${tokens.shape.join(', ')}]`);
  const [B, T] = tokens.shape as [number, number];
  const ctx = makeCtx(cfg, B, T, opts);
  let h = op.embedding(p.embed, tokens);
  p.layers.forEach((l, i) => { h = block(ctx, h, l, i); });
  const hidden = norm(ctx, h, p.norm);
  if (ctx.cache) ctx.cache.length = ctx.start + T;
  const balance = ctx.balance.length ? ctx.balance.reduce((s, t) => op.add(s, t)) : null;
  return { hidden, routing: ctx.routing ?? [], balanceLoss: balance };
}

/** Main-model forward over tokens [B, T] (i32). */
export function forward(p: ModelParams, cfg: DeepSeekConfig, tokens: Tensor, opts: ForwardOptions = {}): ForwardResult {
  const body = forwardBody(p, cfg, tokens, opts);
  const T = tokens.shape[1]!;
  const h = opts.lastLogits && T > 1 ? op.slice(body.hidden, 1, T - 1, T) : body.hidden;
  return { logits: (opts.linear ?? op.linear)(h, p.head), ...body };
}

/** MTP depth d up to its head norm: `normed` feeds the head, `hidden` the next depth. */
function mtpBody(p: ModelParams, cfg: DeepSeekConfig, depth: number, h: Tensor, nextTokens: Tensor, opts: ForwardOptions): { normed: Tensor; hidden: Tensor; routing: RoutingRecord[]; head: Tensor } {
  const m = p.mtp[depth];
  if (!m) throw new Error(`mtpForward: the model has ${p.mtp.length} MTP layers, depth ${depth} requested`);
  const [B, T] = nextTokens.shape as [number, number];
  const ctx = makeCtx(cfg, B, T, opts);
  const e = norm(ctx, op.embedding(m.embed, nextTokens), m.enorm);
  const x = (opts.linear ?? op.linear)(op.concat([e, norm(ctx, h, m.hnorm)], 2), m.ehProj);
  const y = block(ctx, x, m.layer, cfg.numHiddenLayers + depth);
  return { normed: norm(ctx, y, m.headNorm), hidden: y, routing: ctx.routing ?? [], head: m.head };
}

/**
 * MTP depth d (0-based) over positions 0..T-2: input h (after final norm) [B, T', H] and the tokens
 * one ahead [B, T'] → logits [B, T', V] predicting the token d+2 ahead, plus the hidden state for
 * the next depth. Embedding first in the concat (checkpoint/serving convention, SPEC §10).
 */
export function mtpForward(p: ModelParams, cfg: DeepSeekConfig, depth: number, h: Tensor, nextTokens: Tensor, opts: ForwardOptions = {}): { logits: Tensor; hidden: Tensor; routing: RoutingRecord[] } {
  const b = mtpBody(p, cfg, depth, h, nextTokens, opts);
  return { logits: (opts.linear ?? op.linear)(b.normed, b.head), hidden: b.hidden, routing: b.routing };
}

export interface LossOptions extends ForwardOptions {
  /** MTP loss weight λ (report: 0.3 then 0.1); 0 skips the MTP forward. */
  mtpWeight?: number;
}
export interface LossResult { loss: Tensor; mainLoss: number; mtpLoss: number | null; balanceLoss: number | null; routing: RoutingRecord[] }

/**
 * Training loss: CE(main) + λ/D·Σ CE(MTP depth) + balance. inputs/targets [B, T]. The heads and
 * their cross-entropies are fused (`op.linearCrossEntropy`): the [B·T, V] logits are never stored.
 */
export function lossFn(p: ModelParams, cfg: DeepSeekConfig, inputs: Tensor, targets: Tensor, opts: LossOptions = {}): LossResult {
  const [B, T] = inputs.shape as [number, number];
  const f = forwardBody(p, cfg, inputs, opts);
  const Hd = cfg.hiddenSize;
  const main = op.linearCrossEntropy(op.reshape(f.hidden, [B * T, Hd]), p.head, targets);
  let loss = main;
  let mtpLoss: number | null = null;
  const lambda = opts.mtpWeight ?? 0;
  const routing = f.routing;
  if (lambda > 0 && p.mtp.length > 0) {
    let h = f.hidden;
    const D = p.mtp.length;
    let sum: Tensor | null = null;
    const I = inputs.i32, Y = targets.i32;
    for (let d = 0; d < D && T - 1 - d > 0; d++) {
      const Tm = T - 1 - d;
      // Depth d at position i sees token i+d+1 and predicts i+d+2 (= targets[i+d+1]).
      const next = new Int32Array(B * Tm), tgt = new Int32Array(B * Tm);
      for (let b = 0; b < B; b++) for (let i = 0; i < Tm; i++) { next[b * Tm + i] = I[b * T + i + d + 1]!; tgt[b * Tm + i] = Y[b * T + i + d + 1]!; }
      const hIn = op.slice(h, 1, 0, Tm);
      const r = mtpBody(p, cfg, d, hIn, new Tensor(next, [B, Tm], 'i32'), { ...opts, collectRouting: opts.collectRouting ?? false });
      routing.push(...r.routing);
      const ce = op.linearCrossEntropy(op.reshape(r.normed, [B * Tm, Hd]), r.head, new Tensor(tgt, [B * Tm], 'i32'));
      sum = sum ? op.add(sum, ce) : ce;
      h = r.hidden;
    }
    if (sum) {
      mtpLoss = sum.item() / D;
      loss = op.add(loss, op.mulScalar(sum, lambda / D));
    }
  }
  if (f.balanceLoss) loss = op.add(loss, f.balanceLoss);
  return { loss, mainLoss: main.item(), mtpLoss, balanceLoss: f.balanceLoss ? f.balanceLoss.item() : null, routing };
}

/** Greedy continuation with the absorb KV cache: prefill, then one token per step. */
export function greedyGenerate(p: ModelParams, cfg: DeepSeekConfig, prompt: number[], maxNew: number, opts: { attn?: AttnImpl; eosId?: number | null } = {}): number[] {
  return noGrad(() => {
    const cache = new KVCache(cfg, 1, prompt.length + maxNew, opts.attn ?? 'absorb');
    let logits = forward(p, cfg, Tensor.ints(prompt, [1, prompt.length]), { cache, lastLogits: true }).logits;
    const out: number[] = [];
    for (let i = 0; i < maxNew; i++) {
      const V = cfg.vocabSize;
      const L = logits.f32, off = L.length - V;
      let best = 0;
      for (let j = 1; j < V; j++) if (L[off + j]! > L[off + best]!) best = j;
      out.push(best);
      if (opts.eosId !== undefined && opts.eosId !== null && best === opts.eosId) break;
      if (i + 1 < maxNew) logits = forward(p, cfg, Tensor.ints([best], [1, 1]), { cache, startPos: cache.length }).logits;
    }
    return out;
  });
}
