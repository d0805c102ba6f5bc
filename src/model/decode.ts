/**
 * The decode forward: a few token rows at once through the main model or an MTP layer, with the
 * absorbed latent cache, straight onto the backend kernels (no autograd, no Tensor per op, reused
 * scratch). One plain decode step is 1 row; a speculative verify step is 2 rows of one sequence
 * (the newest token and the draft) in one pass: every projection, expert and head reads its
 * weights once for both rows. Rows are grouped in `Segment`s, each a run of consecutive positions
 * of one sequence's cache, so rows of several sequences can share a pass (continuous batching).
 *
 * Contract:
 * - The same arithmetic as `forward` / `mtpForward` with the absorbed cache (SPEC §5.6), on the
 *   same kernels; logits agree to float32 rounding.
 * - A row's result never depends on the other rows of the pass: with kernels whose few-row
 *   products are row-exact (the native backend, gemv.cc) it is bit-identical to decoding that row
 *   alone, so a 2-row verify step reproduces plain decoding exactly.
 * - Each row's latent `[ĉ | k_pe]` is written at its position in its segment's cache layer; the
 *   caller owns `cache.length` (rolling back a rejected draft is setting the length).
 * - Results are views into scratch buffers, valid until the next call.
 * Browser-safe.
 */
import { Tensor } from '../autograd/tensor.js';
import { getBackend, hasKernel, kernel, optionalKernel } from '../backend/registry.js';
import * as op from '../ops/index.js';
import { ropeInvFreq, softmaxScale, yarnMscale, type DeepSeekConfig } from './config.js';
import { selectExperts, type KVCache, type LayerParams, type MlaParams, type MlpParams, type ModelParams, type MoeParams } from './deepseek.js';
import { ENGINE_MAX_ROWS, decodeEngine, f32EngineWeights, type EngineWeights } from './decode-engine.js';

/**
 * out[rows, outF] = x[rows, inF] · Wᵀ for W [outF, inF]; x and out may be longer than needed.
 * `engine` says which weight arrays the native decode engine may read in its place (none: the
 * engine is not used with this linear).
 */
export interface RowsLinear {
  (x: Float32Array, rows: number, w: Tensor, out: Float32Array): void;
  engine?: EngineWeights;
}

/** The f32 rows linear: one MatMul kernel call. */
export const f32RowsLinear: RowsLinear = Object.assign((x: Float32Array, rows: number, w: Tensor, out: Float32Array): void => {
  const [outF, inF] = w.shape as [number, number];
  kernel('MatMul')({ a: x, b: w.f32, c: out, batch: 1, m: rows, n: outF, k: inF, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
}, { engine: f32EngineWeights });

/** A Tensor-level linear (e.g. an inference override) as a rows linear. */
export function rowsLinearOf(linear: (x: Tensor, w: Tensor) => Tensor): RowsLinear {
  return (x, rows, w, out) => {
    const inF = w.shape[1]!;
    out.set(linear(new Tensor(x.subarray(0, rows * inF), [rows, inF]), w).f32);
  };
}

/** A run of `rows` consecutive positions from `start` of one sequence's cache. */
export interface Segment { cache: KVCache; start: number; rows: number }

/** The output of a pass: hidden rows [R, H] and logits [R − from, V] of rows from..R-1. */
export interface RowsResult { hidden: Float32Array; logits: Float32Array }

export class RowDecoder {
  private readonly lin: RowsLinear;
  private readonly scratch = new Map<string, Float32Array>();
  private readonly iscratch = new Map<string, Int32Array>();
  /** cos/sin of positions [0, ropeDone), `half` per position (ropeAt). */
  private ropeCos = new Float32Array(0);
  private ropeSin = new Float32Array(0);
  private ropeDone = 0;
  private readonly invFreq: Float32Array;
  private readonly ropeFactor: number;
  private readonly useEngine: boolean;
  /** The engine for these weights (undefined: not looked up yet; null: none) and the backend it belongs to. */
  private engine: object | null | undefined;
  private engineBackend = '';
  private tok = new Int32Array(8);

  /** `engine: false` keeps every pass on the TypeScript path (tests compare the two). */
  constructor(readonly params: ModelParams, readonly cfg: DeepSeekConfig, opts: { linear?: RowsLinear; engine?: boolean } = {}) {
    this.lin = opts.linear ?? f32RowsLinear;
    this.invFreq = Float32Array.from(ropeInvFreq(cfg));
    const y = cfg.ropeScaling;
    this.ropeFactor = y ? yarnMscale(y.factor, y.mscale) / yarnMscale(y.factor, y.mscaleAllDim) : 1;
    this.useEngine = opts.engine ?? true;
  }

  /** True when a pass of R rows runs on the backend's decode engine (native or webgpu; row-exact for any row count and segment shape). */
  usesEngine(R: number): boolean { return this.engineFor(R) !== null; }

  /** Most rows a pass may carry on the decode engine (0: no engine here: a backend without one, or a linear without engine weights). */
  engineRows(): number { return this.engineFor(1) ? Math.min(this.lin.engine!.maxRows, ENGINE_MAX_ROWS) : 0; }

  /** The decode engine for a pass of R rows, when the backend has one and the linear allows it. */
  private engineFor(R: number): object | null {
    const ew = this.lin.engine;
    if (!this.useEngine || !ew || R > Math.min(ew.maxRows, ENGINE_MAX_ROWS) || !hasKernel('DecodeEngineMain')) return null;
    const backend = getBackend().name;
    if (this.engine === undefined || this.engineBackend !== backend) { this.engine = decodeEngine(this.params, this.cfg, ew); this.engineBackend = backend; }
    return this.engine;
  }

  /** Engine arguments: token ids, segments, their caches of layers [l0, l0 + nl), rope tables per row. */
  private engineArgs(ids: ArrayLike<number>, segs: readonly Segment[], l0: number, nl: number): { tok: Int32Array; seg: Int32Array; caches: Float32Array[]; cos: Float32Array; sin: Float32Array } {
    const R = ids.length, half = this.cfg.qkRopeHeadDim / 2;
    if (this.tok.length < R) this.tok = new Int32Array(2 * R);
    const tok = this.tok.subarray(0, R);
    for (let i = 0; i < R; i++) tok[i] = ids[i]!;
    const seg = new Int32Array(2 * segs.length), caches: Float32Array[] = [];
    const cos = this.buf('cos', R * half), sin = this.buf('sin', R * half);
    let r = 0;
    segs.forEach((s, i) => {
      seg[2 * i] = s.start; seg[2 * i + 1] = s.rows;
      for (let l = 0; l < nl; l++) caches.push(s.cache.layers[l0 + l]!.a);
      for (let j = 0; j < s.rows; j++, r++) this.ropeAt(s.start + j, cos, sin, r * half);
    });
    return { tok, seg, caches, cos, sin };
  }

  /** A scratch Int32Array of exactly n ints (a view of a buffer kept per name). */
  private ints(name: string, n: number): Int32Array {
    let b = this.iscratch.get(name);
    if (!b || b.length < n) { b = new Int32Array(Math.max(n, 2 * (b?.length ?? 0))); this.iscratch.set(name, b); }
    return b.length === n ? b : b.subarray(0, n);
  }

  /** A scratch array of exactly n floats (a view of a buffer kept per name). */
  private buf(name: string, n: number): Float32Array {
    let b = this.scratch.get(name);
    if (!b || b.length < n) { b = new Float32Array(Math.max(n, 2 * (b?.length ?? 0))); this.scratch.set(name, b); }
    return b.length === n ? b : b.subarray(0, n);
  }

  /** Main model over tokens (one per row, rows ordered as the segments); logits of rows from..R-1. */
  main(tokens: ArrayLike<number>, segs: readonly Segment[], from = 0): RowsResult {
    const { cfg, params: p } = this;
    const R = checkRows(segs, tokens.length, cfg.numHiddenLayers);
    const H = cfg.hiddenSize;
    const eng = this.engineFor(R);
    if (eng) {
      const a = this.engineArgs(tokens, segs, 0, p.layers.length);
      const hidden = this.buf('hidden', R * H), logits = this.buf('logits', (R - from) * cfg.vocabSize);
      kernel('DecodeEngineMain')(eng, a.tok, a.seg, a.caches, a.cos, a.sin, from, hidden, logits);
      return { hidden, logits };
    }
    const h = this.buf('h', R * H);
    embedRows(p.embed, tokens, h);
    for (let l = 0; l < p.layers.length; l++) this.block(h, R, p.layers[l]!, l, segs);
    const hidden = this.buf('hidden', R * H);
    kernel('RMSNorm')(h, p.norm.f32, hidden, R, H, cfg.rmsNormEps);
    return { hidden, logits: this.head(hidden, R, from, p.head) };
  }

  /**
   * One greedy speculative step in one engine call, when the backend has `DecodeEngineSpec` and
   * both decoders run on the engine (else null: call `mtp` then `main`). `draft` (this decoder, or
   * one with cheaper MTP weights) runs MTP depth 0 over the rows of `mtpSeg` (hiddenIn, nextTokens;
   * only the last row drafts: the argmax of its logits over [0, vocab)); then this model verifies
   * [token, draft] at mainSeg.start, +1 (mainSeg.rows must be 2). Same results as those two calls;
   * next0, next1 are the argmaxes of the two verify rows over [0, vocab) (as sampling.ts argmax).
   */
  specStep(draft: RowDecoder, hiddenIn: Float32Array, nextTokens: ArrayLike<number>, mtpSeg: Segment, token: number, mainSeg: Segment, vocab: number):
    { draft: number; next0: number; next1: number; hidden: Float32Array; logits: Float32Array; mtpLogits: Float32Array } | null {
    const { cfg, params: p } = this;
    const m = nextTokens.length;
    if (!hasKernel('DecodeEngineSpec') || p.mtp.length === 0 || draft.params.mtp.length === 0 || mainSeg.rows !== 2) return null;
    const eng = this.engineFor(2), deng = draft.engineFor(m);
    if (!eng || !deng) return null;
    checkRows([mtpSeg], m, cfg.numHiddenLayers + 1);
    checkRows([mainSeg], 2, cfg.numHiddenLayers);
    const H = cfg.hiddenSize, V = cfg.vocabSize, half = cfg.qkRopeHeadDim / 2, L = p.layers.length;
    const next = this.ints('specNext', m);
    for (let i = 0; i < m; i++) next[i] = nextTokens[i]!;
    const mcos = this.buf('specMcos', m * half), msin = this.buf('specMsin', m * half);
    for (let i = 0; i < m; i++) this.ropeAt(mtpSeg.start + i, mcos, msin, i * half);
    const cos = this.buf('specCos', 2 * half), sin = this.buf('specSin', 2 * half);
    this.ropeAt(mainSeg.start, cos, sin, 0);
    this.ropeAt(mainSeg.start + 1, cos, sin, half);
    const mainCaches: Float32Array[] = [];
    for (let l = 0; l < L; l++) mainCaches.push(mainSeg.cache.layers[l]!.a);
    const hidden = this.buf('hidden', 2 * H), logits = this.buf('logits', 2 * V), mtpLogits = this.buf('specMtpLogits', V);
    const picks = this.ints('specPicks', 3);
    kernel('DecodeEngineSpec')(eng, deng, hiddenIn.subarray(0, m * H), next, Int32Array.of(mtpSeg.start, m), [mtpSeg.cache.layers[cfg.numHiddenLayers]!.a],
      mcos, msin, token, Int32Array.of(mainSeg.start, 2), mainCaches, cos, sin, vocab, hidden, logits, mtpLogits, picks);
    return { draft: picks[0]!, next0: picks[1]!, next1: picks[2]!, hidden, logits, mtpLogits };
  }

  /**
   * Up to `steps` greedy speculative steps in one engine call (DecodeEngineSpecLoop), each
   * drafting `drafts` tokens by chaining the MTP layer (1: `specStep`'s step) and fed to the next as
   * Generation does: state = [token, n, mtpStart, m, proposed, accepted] and the m pending MTP rows
   * (hin [m, H], next [m]; room for drafts + 1) are read and updated; the emitted tokens go to `out`
   * (stopping after `budget` tokens or at a token in `stops`); returns how many. The cache must
   * hold positions below n + (drafts + 1)·steps. Null when the engine cannot run it. Options:
   * `draftWindow` (> 0: drafts attend over at most their last that many MTP cache rows), `trace`
   * (tests, diagnostics: receives each step's drafts), `exactHead` (draft with the MTP head itself
   * rather than the engine's int8 copy).
   */
  specLoop(draft: RowDecoder, hin: Float32Array, next: Int32Array, state: Float64Array, cache: KVCache, steps: number, budget: number, stops: Int32Array,
    vocab: number, out: Int32Array, drafts = 1, opts: { draftWindow?: number; trace?: Int32Array; exactHead?: boolean } = {}): number | null {
    const { cfg, params: p } = this;
    if (!hasKernel('DecodeEngineSpecLoop') || p.mtp.length === 0 || draft.params.mtp.length === 0) return null;
    const eng = this.engineFor(drafts + 1), deng = draft.engineFor(Math.max(drafts + 1, state[3]!));
    if (!eng || !deng) return null;
    const L = p.layers.length, reach = state[1]! + (drafts + 1) * steps;
    this.ropeTo(reach);
    const mainCaches: Float32Array[] = [];
    for (let l = 0; l < L; l++) mainCaches.push(cache.layers[l]!.a);
    const half = cfg.qkRopeHeadDim / 2;
    return kernel('DecodeEngineSpecLoop')(eng, deng, hin, next, state, mainCaches, cache.layers[cfg.numHiddenLayers]!.a,
      this.ropeCos.subarray(0, this.ropeDone * half), this.ropeSin.subarray(0, this.ropeDone * half), vocab, steps, budget, stops, out, drafts,
      opts.trace ?? null, opts.exactHead ?? false, opts.draftWindow ?? 0);
  }

  /**
   * MTP depth d over rows i = (hidden h_i after the final norm, token t_{i+1}): logits of rows
   * from..R-1 predict t_{i+2}. Rows before `from` only write their latent cache rows (all a draft
   * needs of them: their outputs feed nothing), so they skip attention, MoE and head; `from` > 0
   * needs a single segment. Its cache is layer numHiddenLayers + d of each segment's cache.
   * `window` > 0 (native engine only; drafts): each row attends over at most its last `window` rows.
   */
  mtp(depth: number, hiddenIn: Float32Array, nextTokens: ArrayLike<number>, segs: readonly Segment[], from = 0, window = 0): RowsResult {
    const { cfg, params: p } = this;
    const m = p.mtp[depth];
    if (!m) throw new Error(`RowDecoder.mtp: the model has ${p.mtp.length} MTP layers, depth ${depth} requested`);
    const layer = cfg.numHiddenLayers + depth;
    const R = checkRows(segs, nextTokens.length, layer + 1);
    const H = cfg.hiddenSize, eps = cfg.rmsNormEps;
    if (from > 0 && segs.length !== 1) throw new Error('RowDecoder.mtp: rows that only fill the cache (from > 0) need a single segment');
    const eng = this.engineFor(R);
    if (window > 0 && (!eng || getBackend().name !== 'native')) throw new Error('RowDecoder.mtp: an attention window needs the native decode engine');
    if (eng) {
      const a = this.engineArgs(nextTokens, segs, layer, 1);
      const hidden = this.buf('mtphidden', (R - from) * H), logits = this.buf('logits', (R - from) * cfg.vocabSize);
      kernel('DecodeEngineMtp')(eng, depth, hiddenIn, a.tok, a.seg, a.caches, a.cos, a.sin, from, hidden, logits, ...(window > 0 ? [window] : []));
      return { hidden, logits };
    }
    const norm = kernel('RMSNorm');
    // [RMSNorm(embed(t_{i+1})) | RMSNorm(h_i)] · eh_projᵀ (embedding first, SPEC §10).
    const e = this.buf('e', R * H), hn = this.buf('hn', R * H), cat = this.buf('cat', R * 2 * H);
    embedRows(m.embed, nextTokens, e);
    norm(e, m.enorm.f32, e, R, H, eps);
    norm(hiddenIn, m.hnorm.f32, hn, R, H, eps);
    for (let r = 0; r < R; r++) { cat.set(e.subarray(r * H, (r + 1) * H), 2 * r * H); cat.set(hn.subarray(r * H, (r + 1) * H), (2 * r + 1) * H); }
    const h = this.buf('h', R * H);
    this.lin(cat, R, m.ehProj, h);
    this.block(h, R, m.layer, layer, segs, from);
    const out = h.subarray(from * H), n = R - from;
    const normed = this.buf('hidden', n * H);
    norm(out, m.headNorm.f32, normed, n, H, eps);
    return { hidden: out, logits: this.head(normed, n, 0, m.head) };
  }

  private head(x: Float32Array, R: number, from: number, w: Tensor): Float32Array {
    const H = this.cfg.hiddenSize, n = R - from;
    const out = this.buf('logits', n * this.cfg.vocabSize);
    if (n > 0) this.lin(x.subarray(from * H, R * H), n, w, out);
    return out;
  }

  /** One decoder block in place on h [R, H]; rows before `from` only write their latent cache rows. */
  private block(h: Float32Array, R: number, l: LayerParams, layer: number, segs: readonly Segment[], from = 0): void {
    const cfg = this.cfg, H = cfg.hiddenSize, n = (R - from) * H, o = from * H;
    const x = this.buf('x', R * H);
    kernel('RMSNorm')(h, l.attnNorm.f32, x, R, H, cfg.rmsNormEps);
    const a = this.mla(x, R, l.attn, layer, segs, from);
    for (let i = 0; i < n; i++) h[o + i] = h[o + i]! + a[i]!;
    const hq = h.subarray(o), xq = x.subarray(0, n);
    kernel('RMSNorm')(hq, l.ffnNorm.f32, xq, R - from, H, cfg.rmsNormEps);
    const f = l.moe ? this.moe(xq, R - from, l.moe) : this.swiglu(xq, R - from, l.mlp!, 'ffn');
    for (let i = 0; i < n; i++) h[o + i] = h[o + i]! + f[i]!;
  }

  /**
   * Absorbed MLA over x [R, H]: writes all rows' latents to the cache, returns the o_proj output
   * [R − from, H] of rows from..R-1 (their queries attend; earlier rows only fill the cache).
   */
  private mla(x: Float32Array, R: number, a: MlaParams, layer: number, segs: readonly Segment[], from: number): Float32Array {
    const cfg = this.cfg, eps = cfg.rmsNormEps;
    const nh = cfg.numAttentionHeads, dn = cfg.qkNopeHeadDim, dr = cfg.qkRopeHeadDim, dv = cfg.vHeadDim, rkv = cfg.kvLoraRank;
    const dq = dn + dr, D = rkv + dr, half = dr / 2;
    const norm = kernel('RMSNorm'), mm = kernel('MatMul');
    const kv = this.buf('kv', R * D);
    this.lin(x, R, a.kvAProj, kv);
    // Latent rows into the cache: ĉ = RMSNorm(c), k_pe roped at the row's position.
    const cos = this.buf('cos', R * half), sin = this.buf('sin', R * half);
    let r = 0;
    for (const s of segs) {
      const buf = s.cache.layers[layer]!.a;
      for (let i = 0; i < s.rows; i++, r++) {
        const pos = s.start + i, o = pos * D;
        this.ropeAt(pos, cos, sin, r * half);
        norm(kv.subarray(r * D, r * D + rkv), a.kvANorm.f32, buf.subarray(o, o + rkv), 1, rkv, eps);
        rotate(kv, r * D + rkv, buf, o + rkv, cos, sin, r * half, half);
      }
    }
    // Queries of rows from..R-1 (Rq of them).
    const Rq = R - from, xq = x.subarray(from * cfg.hiddenSize, R * cfg.hiddenSize);
    const q = this.buf('q', Rq * nh * dq);
    if (a.qProj) this.lin(xq, Rq, a.qProj, q);
    else {
      const qa = this.buf('qa', Rq * cfg.qLoraRank!);
      this.lin(xq, Rq, a.qAProj!, qa);
      norm(qa, a.qANorm!.f32, qa, Rq, cfg.qLoraRank!, eps);
      this.lin(qa, Rq, a.qBProj!, q);
    }
    // q_abs[h] = q_nope[h] · W_UK[h] (W_UK read in place from kv_b_proj), head-major rows.
    const W = a.kvBProj.f32, blk = (dn + dv) * rkv;
    const qn = this.buf('qn', nh * Rq * dn), qAbs = this.buf('qAbs', nh * Rq * rkv);
    for (let h = 0; h < nh; h++) for (let r2 = 0; r2 < Rq; r2++) qn.set(q.subarray((r2 * nh + h) * dq, (r2 * nh + h) * dq + dn), (h * Rq + r2) * dn);
    mm({ a: qn, b: W, c: qAbs, batch: nh, m: Rq, n: rkv, k: dn, transA: false, transB: false, strideA: Rq * dn, strideB: blk, strideC: Rq * rkv, accumulate: false });
    // Attention queries [Rq, nh, rkv + dr] = [q_abs | rope(q_pe)].
    const qa = this.buf('qatt', Rq * nh * D);
    for (let r2 = 0; r2 < Rq; r2++) for (let h = 0; h < nh; h++) {
      const o = (r2 * nh + h) * D;
      qa.set(qAbs.subarray((h * Rq + r2) * rkv, (h * Rq + r2 + 1) * rkv), o);
      rotate(q, (r2 * nh + h) * dq + dn, qa, o + rkv, cos, sin, (from + r2) * half, half);
    }
    const oLat = this.buf('olat', Rq * nh * rkv);
    this.attend(qa, oLat, layer, from === 0 ? segs : [{ cache: segs[0]!.cache, start: segs[0]!.start + from, rows: Rq }]);
    // o[h] = o_lat[h] · W_UV[h]ᵀ (W_UV[h] starts dn rows into block h), head-major rows.
    const ol = this.buf('olhm', nh * Rq * rkv), oh = this.buf('ohm', nh * Rq * dv), o = this.buf('o', Rq * nh * dv);
    for (let h = 0; h < nh; h++) for (let r2 = 0; r2 < Rq; r2++) ol.set(oLat.subarray((r2 * nh + h) * rkv, (r2 * nh + h + 1) * rkv), (h * Rq + r2) * rkv);
    mm({ a: ol, b: W.subarray(dn * rkv), c: oh, batch: nh, m: Rq, n: dv, k: rkv, transA: false, transB: true, strideA: Rq * rkv, strideB: blk, strideC: Rq * dv, accumulate: false });
    for (let h = 0; h < nh; h++) for (let r2 = 0; r2 < Rq; r2++) o.set(oh.subarray((h * Rq + r2) * dv, (h * Rq + r2 + 1) * dv), (r2 * nh + h) * dv);
    const out = this.buf('attn', Rq * cfg.hiddenSize);
    this.lin(o, Rq, a.oProj, out);
    return out;
  }

  /** Latent attention of each segment's rows over its cache rows [0, start + rows). */
  private attend(q: Float32Array, out: Float32Array, layer: number, segs: readonly Segment[]): void {
    const cfg = this.cfg, nh = cfg.numAttentionHeads, rkv = cfg.kvLoraRank, D = rkv + cfg.qkRopeHeadDim;
    const scale = softmaxScale(cfg), fused = optionalKernel('AttentionForward');
    let r = 0;
    for (const s of segs) {
      const S = s.start + s.rows, T = s.rows;
      const qs = q.subarray(r * nh * D, (r + T) * nh * D), os = out.subarray(r * nh * rkv, (r + T) * nh * rkv);
      const keys = s.cache.layers[layer]!.a.subarray(0, S * D);
      if (fused) fused(qs, keys, keys, os, { B: 1, T, S, H: nh, KH: 1, Dk: D, Dv: rkv, ldk: D, ldv: D, scale });
      else os.set(op.latentAttention(new Tensor(qs, [1, T, nh, D]), new Tensor(keys, [1, S, 1, D]), rkv, scale).f32);
      r += T;
    }
  }

  /** SwiGLU over x [R, H] into the scratch named `name`. */
  private swiglu(x: Float32Array, R: number, m: MlpParams, name: string): Float32Array {
    const I = m.gate.shape[0]!;
    const g = this.buf('g', R * I), u = this.buf('u', R * I), out = this.buf(name, R * this.cfg.hiddenSize);
    this.lin(x, R, m.gate, g);
    this.lin(x, R, m.up, u);
    kernel('SiluMul')(g, u, g);
    this.lin(g, R, m.down, out);
    return out;
  }

  /** DeepSeekMoE over x [R, H]: shared expert plus the routed experts, each over its rows only. */
  private moe(x: Float32Array, R: number, m: MoeParams): Float32Array {
    const cfg = this.cfg, H = cfg.hiddenSize, E = cfg.nRoutedExperts, k = cfg.numExpertsPerTok;
    const scores = this.buf('scores', R * E);
    // The router stays f32 (never the inference linear), as in forward.
    f32RowsLinear(x, R, m.router, scores);
    if (cfg.scoringFunc === 'sigmoid') for (let i = 0; i < R * E; i++) scores[i] = 1 / (1 + Math.exp(-scores[i]!));
    else kernel('Softmax')(scores, scores, R, E);
    const ids = selectExperts(cfg, scores, m.bias ? m.bias.f32 : null, R);
    // Gate weights from the unbiased scores, rounded to f32 at each op as forward's ops do.
    const w = this.buf('gatew', R * k);
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let j = 0; j < k; j++) { w[r * k + j] = scores[r * E + ids[r * k + j]!]!; s = Math.fround(s + w[r * k + j]!); }
      const normalise = cfg.scoringFunc === 'sigmoid' ? true : cfg.normTopkProb;
      for (let j = 0; j < k; j++) {
        const v = normalise && k > 1 ? Math.fround(w[r * k + j]! / s) : w[r * k + j]!;
        w[r * k + j] = Math.fround(v * cfg.routedScalingFactor);
      }
    }
    const out = this.buf('moe', R * H);
    if (m.shared) out.set(this.swiglu(x, R, m.shared, 'shared'));
    else out.fill(0);
    // Experts in ascending id, so each row adds its experts in the order forward's combine does.
    const rows = new Int32Array(R), scales = this.buf('scales', R), xe = this.buf('xe', R * H);
    const axpy = kernel('RowsAxpy');
    for (let e = 0; e < E; e++) {
      let c = 0;
      for (let r = 0; r < R; r++) for (let j = 0; j < k; j++) if (ids[r * k + j] === e) { rows[c] = r; scales[c++] = w[r * k + j]!; }
      if (c === 0) continue;
      for (let i = 0; i < c; i++) xe.set(x.subarray(rows[i]! * H, (rows[i]! + 1) * H), i * H);
      const y = this.swiglu(xe, c, m.experts[e]!, 'expert');
      axpy(out, rows, y, null, scales, c, H);
    }
    return out;
  }

  /** cos/sin of position pos into tables at offset off (as ropeTables computes them; kept per position once computed). */
  private ropeAt(pos: number, cos: Float32Array, sin: Float32Array, off: number): void {
    const half = this.invFreq.length;
    this.ropeTo(pos);
    cos.set(this.ropeCos.subarray(pos * half, (pos + 1) * half), off);
    sin.set(this.ropeSin.subarray(pos * half, (pos + 1) * half), off);
  }

  /** Extends the kept rope tables to position pos. */
  private ropeTo(pos: number): void {
    const inv = this.invFreq, af = this.ropeFactor, half = inv.length;
    if (pos >= this.ropeDone) {
      if ((pos + 1) * half > this.ropeCos.length) {
        const n = Math.max((pos + 1) * half, 2 * this.ropeCos.length, 64 * half);
        const c = new Float32Array(n), s = new Float32Array(n);
        c.set(this.ropeCos.subarray(0, this.ropeDone * half)); s.set(this.ropeSin.subarray(0, this.ropeDone * half));
        this.ropeCos = c; this.ropeSin = s;
      }
      for (let p = this.ropeDone; p <= pos; p++) {
        for (let i = 0; i < half; i++) {
          const a = Math.fround(p * inv[i]!);
          this.ropeCos[p * half + i] = Math.cos(a) * af;
          this.ropeSin[p * half + i] = Math.sin(a) * af;
        }
      }
      this.ropeDone = pos + 1;
    }
  }
}

/** dst[do + 2i, +1] = rotation of src[so + 2i, +1] by (cos, sin)[to + i] for i < half (op.rope's pairs). */
function rotate(src: Float32Array, so: number, dst: Float32Array, d0: number, cos: Float32Array, sin: Float32Array, to: number, half: number): void {
  for (let i = 0; i < half; i++) {
    const c = cos[to + i]!, s = sin[to + i]!, x0 = src[so + 2 * i]!, x1 = src[so + 2 * i + 1]!;
    dst[d0 + 2 * i] = x0 * c - x1 * s;
    dst[d0 + 2 * i + 1] = x0 * s + x1 * c;
  }
}

function embedRows(table: Tensor, ids: ArrayLike<number>, out: Float32Array): void {
  const [V, H] = table.shape as [number, number];
  const T = table.f32;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`decode: token id ${id} out of range [0, ${V})`);
    out.set(T.subarray(id * H, (id + 1) * H), i * H);
  }
}

/** Total rows of the segments (must equal `want`); each segment's cache must hold `layers` layers and its positions. */
function checkRows(segs: readonly Segment[], want: number, layers: number): number {
  let R = 0;
  for (const s of segs) {
    if (s.cache.mode !== 'absorb' || s.cache.batch !== 1) throw new Error(`decode: needs a batch-1 absorb cache, got ${s.cache.mode} batch ${s.cache.batch}`);
    if (s.cache.layers.length < layers) throw new Error(`decode: cache has ${s.cache.layers.length} layers, ${layers} needed (MTP layers are extra cache layers)`);
    if (!(Number.isInteger(s.start) && s.start >= 0 && s.rows >= 1 && s.start + s.rows <= s.cache.capacity)) throw new Error(`KV cache full: ${s.start + s.rows} tokens > capacity ${s.cache.capacity}`);
    R += s.rows;
  }
  if (R !== want || R === 0) throw new Error(`decode: ${want} tokens for segments of ${R} rows`);
  return R;
}
