/**
 * Text generation over the model with the MLA latent KV cache: prompt prefill in chunks (all
 * positions of a chunk in one batched forward), then one token per step, or two per step with MTP
 * speculative decoding (the MTP head drafts the token after next; one main-model forward over
 * [next, draft] verifies it). Tokens are chosen by `Sampler`; the draft is accepted only when the
 * main model's own choice equals it, so speculative output is identical to plain decoding under
 * greedy sampling (and under seeded sampling: the same draws happen in the same order).
 *
 * A `PrefixCache` (radix tree, in memory) and a `PrefixStore` (e.g. the disk cache) supply cached
 * latent rows of the prompt's longest known prefix; the rest is computed and inserted back.
 * `Generation` is stepwise so a server can yield to the event loop between tokens; `generate` runs
 * one to the end. Browser-safe.
 */
import { Tensor } from '../autograd/tensor.js';
import { noGrad } from '../autograd/tape.js';
import { forward, mtpForward, KVCache, type ModelParams, type AttnImpl } from '../model/deepseek.js';
import type { DeepSeekConfig } from '../model/config.js';
import { Sampler, argmax, type SamplingOptions } from './sampling.js';
import { PrefixCache, rowsFromCache, rowsToCache, latentRowWidth } from './prefix-cache.js';

/** A loaded model. */
export interface Model {
  cfg: DeepSeekConfig; params: ModelParams;
  /** Inference linear override (ForwardOptions.linear), e.g. bf16 decode weights (bf16-node.ts). */
  linear?: (x: Tensor, w: Tensor) => Tensor;
}

/** A second-level store of prefix rows (the disk cache implements it). Synchronous by design. */
export interface PrefixStore {
  /** Rows of the longest stored prefix of tokens[0, maxLen) that extends past `have` tokens; rows cover [have, length). */
  lookup(tokens: readonly number[], maxLen: number, have: number): { length: number; rows: Float32Array } | null;
  /** Offers tokens[0, n) with rowsAt(from, to) giving the rows of [from, to). */
  save(tokens: readonly number[], rowsAt: (from: number, to: number) => Float32Array): void;
}

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens (default 16); also capped by the model's context length. */
  maxTokens?: number;
  /** Ids that end generation (the id itself is emitted); typically the EOS id. */
  stopTokenIds?: readonly number[];
  /** Use MTP speculative decoding (needs a model with MTP layers; else plain decoding). */
  speculative?: boolean;
  /** Attention form (default absorb: the latent cache; prefix caching needs absorb). */
  attn?: AttnImpl;
  prefixCache?: PrefixCache | null;
  prefixStore?: PrefixStore | null;
  /**
   * Sample only ids below this (the tokenizer's size when the model's vocabulary is padded past
   * it, so no id without text is ever produced). Default: the model's vocab size.
   */
  vocabLimit?: number;
  /** Prompt positions per prefill forward (default 256). */
  prefillChunk?: number;
  /** Called for each new token; return true to stop (finish reason 'stop'). */
  onToken?: (id: number) => boolean | void;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerateResult {
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  /** Prompt tokens served from the prefix cache or store (not recomputed). */
  cachedTokens: number;
  /** Of cachedTokens, those read from the PrefixStore. */
  storeTokens: number;
  /** Speculative decoding: drafts proposed and accepted (null when not speculative). */
  speculative: { proposed: number; accepted: number; acceptanceRate: number } | null;
  prefillMs: number;
  decodeMs: number;
}

/** Checks token ids against the vocabulary; throws a RangeError naming the bad one. */
export function checkTokens(cfg: DeepSeekConfig, tokens: readonly number[], what = 'prompt'): void {
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= cfg.vocabSize) throw new RangeError(`${what}: token ${i} is ${t}, outside the vocabulary [0, ${cfg.vocabSize})`);
  }
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** One generation, advanced by `step()` until `done`. */
export class Generation {
  readonly tokens: number[] = [];
  done = false;
  finishReason: FinishReason = 'length';
  cachedTokens = 0;
  storeTokens = 0;
  proposed = 0;
  accepted = 0;
  prefillMs = 0;
  decodeMs = 0;
  private readonly cfg: DeepSeekConfig;
  private readonly cache: KVCache;
  /** The model's inference linear for decode steps (prefill keeps f32 GEMMs), as forward options. */
  private lin(): { linear?: (x: Tensor, w: Tensor) => Tensor } { return this.model.linear ? { linear: this.model.linear } : {}; }
  private readonly sampler: Sampler;
  private readonly maxNew: number;
  /** Ids sampled from: [0, vocab). */
  private readonly vocab: number;
  private readonly spec: boolean;
  private readonly stopIds: Set<number>;
  /** Whole sequence so far (prompt + generated). */
  private readonly seq: number[];
  /** Logits row predicting the next token (plain mode). */
  private last: Float32Array | null = null;
  /** Speculative: hidden states of main positions not yet fed to the MTP layer, and that count's start. */
  private pendingHidden: Float32Array[] = [];
  private mtpLen = 0;
  private prefilled = false;

  constructor(private readonly model: Model, readonly prompt: readonly number[], private readonly opts: GenerateOptions = {}) {
    const cfg = (this.cfg = model.cfg);
    if (prompt.length === 0) throw new RangeError('prompt: at least one token is needed');
    checkTokens(cfg, prompt);
    const ctx = cfg.maxPositionEmbeddings;
    if (prompt.length >= ctx) throw new RangeError(`prompt: ${prompt.length} tokens leave no room in the model's context of ${ctx} tokens`);
    const want = opts.maxTokens ?? 16;
    if (!Number.isInteger(want) || want < 0) throw new RangeError(`max_tokens must be an integer >= 0, got ${want}`);
    this.maxNew = Math.min(want, ctx - prompt.length);
    this.vocab = Math.min(cfg.vocabSize, opts.vocabLimit ?? cfg.vocabSize);
    if (!(this.vocab > 0)) throw new RangeError(`vocabLimit must be > 0, got ${opts.vocabLimit}`);
    this.spec = (opts.speculative ?? false) && model.params.mtp.length > 0;
    this.sampler = new Sampler(opts);
    this.stopIds = new Set(opts.stopTokenIds ?? []);
    this.seq = prompt.slice();
    const attn = opts.attn ?? 'absorb';
    this.cache = new KVCache(cfg, 1, prompt.length + this.maxNew + 2, attn, this.spec ? 1 : 0);
    if (opts.prefixCache && opts.prefixCache.rowWidth !== latentRowWidth(cfg)) {
      throw new RangeError(`prefix cache rows are ${opts.prefixCache.rowWidth} floats but this model's latent rows are ${latentRowWidth(cfg)} (a cache built for another model?)`);
    }
    if (this.maxNew === 0) this.done = true;
  }

  /** Prefills the prompt (using cached prefixes); called by the first step. */
  private prefill(): void {
    const t0 = now();
    const { cfg, cache, prompt, opts } = this;
    const P = prompt.length;
    const usable = cache.mode === 'absorb';
    let hit = 0;
    let handle = null;
    // Speculative decoding needs hidden states of every prompt position for the MTP layer, which
    // the latent rows do not hold: it recomputes the prompt instead of using cached prefixes.
    if (usable && !this.spec && opts.prefixCache) {
      handle = opts.prefixCache.match(prompt, P - 1);
      if (handle.length > 0) rowsToCache(cache, 0, handle.rows);
      hit = handle.length;
    }
    try {
      if (usable && !this.spec && opts.prefixStore) {
        const got = opts.prefixStore.lookup(prompt, P - 1, hit);
        if (got && got.length > hit) {
          rowsToCache(cache, hit, got.rows);
          this.storeTokens = got.length - hit;
          hit = got.length;
        }
      }
      this.cachedTokens = hit;
      cache.length = hit;
      const chunk = Math.max(1, opts.prefillChunk ?? 256);
      for (let s = hit; s < P; s += chunk) {
        const e = Math.min(P, s + chunk);
        const f = forward(this.model.params, cfg, Tensor.ints(prompt.slice(s, e), [1, e - s]), { cache, startPos: s });
        if (e === P) this.last = f.logits.f32.slice((e - s - 1) * cfg.vocabSize);
        if (this.spec) for (let i = 0; i < e - s; i++) this.pendingHidden.push(f.hidden.f32.slice(i * cfg.hiddenSize, (i + 1) * cfg.hiddenSize));
      }
      if (usable && opts.prefixCache) opts.prefixCache.insert(prompt, (a, b) => rowsFromCache(cache, a, b));
      if (usable && opts.prefixStore) opts.prefixStore.save(prompt, (a, b) => rowsFromCache(cache, a, b));
    } finally {
      if (handle) opts.prefixCache!.release(handle);
    }
    this.prefillMs = now() - t0;
  }

  /** Records one new token; returns true when generation must end. */
  private emit(id: number): boolean {
    this.tokens.push(id);
    this.seq.push(id);
    if (this.opts.onToken?.(id) === true || this.stopIds.has(id)) { this.finishReason = 'stop'; return (this.done = true); }
    if (this.tokens.length >= this.maxNew) { this.finishReason = 'length'; return (this.done = true); }
    return false;
  }

  /** Advances by one token (two when a speculative draft is accepted). No-op once done. */
  step(): void {
    if (this.done) return;
    noGrad(() => {
      if (!this.prefilled) {
        this.prefilled = true;
        this.prefill();
        const t0 = now();
        this.emit(this.sampler.sample(this.last!, 0, this.vocab));
        this.decodeMs += now() - t0;
        return;
      }
      const t0 = now();
      if (this.spec) this.specStep(); else this.plainStep();
      this.decodeMs += now() - t0;
    });
  }

  /** Stops early (e.g. the client went away). */
  cancel(): void {
    if (!this.done) { this.done = true; this.finishReason = 'cancelled'; }
  }

  private plainStep(): void {
    const { cfg, cache } = this;
    const x = this.seq[this.seq.length - 1]!;
    const f = forward(this.model.params, cfg, Tensor.ints([x], [1, 1]), { cache, startPos: cache.length, ...this.lin() });
    this.emit(this.sampler.sample(f.logits.f32, 0, this.vocab));
  }

  /**
   * Main cache holds positions [0, n); seq[n] is the newest token (emitted, not fed). The MTP layer
   * at position i reads (hidden_i, token_{i+1}) and predicts token_{i+2}.
   */
  private specStep(): void {
    const { cfg, cache, model } = this;
    const H = cfg.hiddenSize, V = cfg.vocabSize;
    const n = cache.length;
    const x = this.seq[n]!;
    // Draft: feed MTP positions [mtpLen, n) in one forward; the last row predicts seq[n+1].
    const m = this.pendingHidden.length;
    const h = new Float32Array(m * H);
    this.pendingHidden.forEach((row, i) => h.set(row, i * H));
    const mt = mtpForward(model.params, cfg, 0, new Tensor(h, [1, m, H]), Tensor.ints(this.seq.slice(this.mtpLen + 1, n + 1), [1, m]), { cache, startPos: this.mtpLen, ...this.lin() });
    this.mtpLen = n;
    this.pendingHidden = [];
    const draft = argmax(mt.logits.f32, (m - 1) * V, this.vocab);
    // Verify: positions n (token x) and n+1 (the draft).
    const f = forward(model.params, cfg, Tensor.ints([x, draft], [1, 2]), { cache, startPos: n, ...this.lin() });
    const L = f.logits.f32, hid = f.hidden.f32;
    this.proposed++;
    const next = this.sampler.sample(L, 0, this.vocab);
    this.pendingHidden.push(hid.slice(0, H));
    if (next !== draft) {
      cache.length = n + 1; // the draft's row at n+1 is stale and will be overwritten
      this.emit(next);
      return;
    }
    this.accepted++;
    if (this.emit(next)) { cache.length = n + 1; return; }
    this.pendingHidden.push(hid.slice(H, 2 * H));
    this.emit(this.sampler.sample(L, V, this.vocab));
  }

  /** Summary of the generation so far. */
  result(): GenerateResult {
    return {
      tokens: this.tokens.slice(), finishReason: this.finishReason, promptTokens: this.prompt.length,
      cachedTokens: this.cachedTokens, storeTokens: this.storeTokens,
      speculative: this.spec ? { proposed: this.proposed, accepted: this.accepted, acceptanceRate: this.proposed ? this.accepted / this.proposed : 0 } : null,
      prefillMs: this.prefillMs, decodeMs: this.decodeMs,
    };
  }
}

/** Runs a generation to the end. */
export function generate(model: Model, prompt: readonly number[], opts: GenerateOptions = {}): GenerateResult {
  const g = new Generation(model, prompt, opts);
  while (!g.done) g.step();
  return g.result();
}

/** Logits of every position [T, V] rows: one batched forward, or one token at a time through the cache. */
export function allLogits(model: Model, tokens: readonly number[], opts: { attn?: AttnImpl; incremental?: boolean } = {}): number[][] {
  const { cfg, params } = model;
  checkTokens(cfg, tokens, 'tokens');
  if (tokens.length > cfg.maxPositionEmbeddings) throw new RangeError(`tokens: ${tokens.length} exceed the model's context of ${cfg.maxPositionEmbeddings}`);
  const attn = opts.attn ?? 'absorb';
  const V = cfg.vocabSize, T = tokens.length;
  return noGrad(() => {
    let flat: Float32Array;
    if (opts.incremental) {
      const cache = new KVCache(cfg, 1, T, attn);
      flat = new Float32Array(T * V);
      for (let i = 0; i < T; i++) flat.set(forward(params, cfg, Tensor.ints([tokens[i]!], [1, 1]), { attn, cache, startPos: i }).logits.f32, i * V);
    } else flat = forward(params, cfg, Tensor.ints(tokens, [1, T]), { attn }).logits.f32;
    return Array.from({ length: T }, (_, i) => Array.from(flat.subarray(i * V, (i + 1) * V)));
  });
}
