/**
 * Text generation over the model with the MLA latent KV cache: prompt prefill in chunks (all
 * positions of a chunk in one batched forward), then decode steps on `RowDecoder` (rows straight
 * onto the kernels): one token per step, or, with MTP speculative decoding, a step that drafts the
 * next token with the MTP layer (from main hidden states already computed) and verifies it with
 * one 2-row main pass over [newest, draft]; a rejected draft is rolled back by setting the cache
 * length. Greedy: the draft is kept when it is the main model's argmax, and since a 2-row pass is
 * row-exact (model/decode.ts) the output is plain decoding's, token for token. Sampling: the
 * standard accept/resample rule (`acceptOrResample`), so tokens keep the model's distribution.
 *
 * A `PrefixCache` (radix tree, in memory) and a `PrefixStore` (e.g. the disk cache) supply cached
 * latent rows of the prompt's longest known prefix; the rest is computed and inserted back. With
 * speculative decoding the rows also carry the MTP layer's latents (`specRowsFromCache`).
 * `Generation` is stepwise so a server can yield to the event loop between tokens; `generate` runs
 * one to the end. Browser-safe.
 */
import { Tensor } from '../autograd/tensor.js';
import { noGrad } from '../autograd/tape.js';
import { forward, mtpForward, KVCache, type ModelParams, type AttnImpl } from '../model/deepseek.js';
import type { DeepSeekConfig } from '../model/config.js';
import { RowDecoder, f32RowsLinear, rowsLinearOf, type RowsLinear, type Segment } from '../model/decode.js';
import { Sampler, acceptOrResample, argmax, isGreedy, type SamplingOptions } from './sampling.js';
import { PrefixCache, prefixRowWidth, rowsFromCache, rowsToCache, specRowsFromCache, specRowsToCache } from './prefix-cache.js';

/** A loaded model. */
export interface Model {
  cfg: DeepSeekConfig; params: ModelParams;
  /** Inference linear override (ForwardOptions.linear), e.g. bf16 decode weights (bf16-node.ts). */
  linear?: (x: Tensor, w: Tensor) => Tensor;
  /** The same override for decode steps' rows (RowDecoder); default: derived from `linear`, else f32. */
  rowsLinear?: RowsLinear;
  /**
   * Speculative decoding's MTP draft passes (default: `rowsLinear`). Any weights are exact here:
   * the main model checks every draft, so cheaper draft weights (q8-node.ts withQ8Drafts) only
   * change how often a draft is accepted.
   */
  draftRowsLinear?: RowsLinear;
  /**
   * Most rows one decode pass may carry with each row computed exactly as it is alone, as far as
   * this model's linears go (e.g. Q8_0 weights serve only short inputs); default no limit. A
   * batching scheduler also applies the backend's own limit (scheduler.ts `rowExactLimit`).
   */
  decodeExactRows?: number;
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
  /**
   * Greedy speculative decoding on the engine: drafts per step, chaining the MTP layer (1 to
   * MAX_DRAFT_TOKENS), or 'auto' (the default): start at DEFAULT_DRAFT_TOKENS and, after each
   * engine call, draft one more while nearly every draft is kept and one fewer while the deepest
   * ones are mostly rejected. Draft k + 1 reads draft k's MTP state in place of the main model's
   * hidden state, which is not known yet; the main model verifies all K in one (K + 1)-row pass
   * and keeps the longest agreeing prefix, so the output is plain greedy's either way. Sampled
   * decoding and the server's steps draft one.
   */
  draftTokens?: number | 'auto';
  /**
   * Greedy speculative decoding on the engine: each draft attends over at most its last this many
   * positions (default DRAFT_WINDOW; 0: the whole context). A cheaper draft; the output is plain
   * greedy's either way.
   */
  draftWindow?: number;
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
  /**
   * Where the KV cache's memory comes from (e.g. a block pool's lease, src/infer/kv-blocks.ts):
   * `ensure(cache, tokens)` returns a cache holding at least `tokens` positions (the same one, or a
   * larger copy). Default: one cache of the worst case (prompt + max tokens + 2) allocated at once.
   */
  kv?: KvSource | null;
  /** Called for each new token; return true to stop (finish reason 'stop'). */
  onToken?: (id: number) => boolean | void;
}

/** Supplies a sequence's latent cache and grows it (src/infer/kv-blocks.ts implements it with blocks). */
export interface KvSource {
  /** A batch-1 absorb cache (with `extraLayers` MTP layers) holding at least `tokens` positions; `cache` (may be null) is the current one, whose rows are kept. */
  ensure(cache: KVCache | null, tokens: number, extraLayers: number): KVCache;
}

/** Greedy speculative steps per engine call (Generation.specLoop). */
export const SPEC_LOOP_STEPS = 8;
/** Most chained MTP drafts per greedy speculative step (the native engine's kMaxDrafts). */
export const MAX_DRAFT_TOKENS = 4;
/**
 * Positions a draft of the engine's greedy loop attends over (GenerateOptions.draftWindow). On the
 * default model's held-out text the MTP draft equals the main model's next token at 56.9% of
 * positions with this window and 56.8% with the whole context (bench/draft-agreement.ts), and a
 * draft costs less at long contexts.
 */
export const DRAFT_WINDOW = 64;
/** Chained MTP drafts per greedy speculative step on the engine to start with ('auto', GenerateOptions.draftTokens). */
export const DEFAULT_DRAFT_TOKENS = 3;

/** Cache positions a generation may need at most (prompt, new tokens, and a speculative step's 2 rows). */
export function kvTokensNeeded(cfg: DeepSeekConfig, promptLength: number, maxTokens: number): number {
  return promptLength + Math.min(maxTokens, cfg.maxPositionEmbeddings - promptLength) + 2;
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
  /** Replaced by a larger copy when a `kv` source grows it. */
  private cache: KVCache;
  /** Decode steps (absorb cache): rows straight onto the kernels; null for the naive cache. */
  private readonly decoder: RowDecoder | null;
  /** Speculative drafts (the MTP layer): the decoder, or one with the model's draft weights. */
  private readonly drafter: RowDecoder | null;
  private readonly sampler: Sampler;
  private readonly maxNew: number;
  /** Ids sampled from: [0, vocab). */
  private readonly vocab: number;
  private readonly spec: boolean;
  private readonly greedy: boolean;
  private readonly stopIds: Set<number>;
  /** specLoop's reused arrays. */
  private loopState: { state: Float64Array; next: Int32Array; out: Int32Array; stops: Int32Array } | null = null;
  /** Chained drafts per step of the engine's greedy loop (opts.draftTokens; adapted when `adaptDrafts`). */
  private drafts: number;
  private readonly adaptDrafts: boolean;
  private readonly draftWindow: number;
  /** Whole sequence so far (prompt + generated). */
  private readonly seq: number[];
  /** Logits row predicting the first new token (from the prefill). */
  private last: Float32Array | null = null;
  /** Speculative: main hidden states (after the final norm) of positions [mtpLen, cache.length), not yet fed to the MTP layer. */
  private pending: Float32Array;
  private pendingRows = 0;
  private mtpLen = 0;
  /** Speculative sampling: the target and draft distributions. */
  private pDist: Float64Array | null = null;
  private qDist: Float64Array | null = null;
  private prefilled = false;
  /** Speculative prompt on the engine (main rows keeping their hidden states, fill-only MTP rows) instead of forward. */
  private readonly specEnginePrefill: boolean;
  /** Chunked prefill state: the next prompt position to compute, where computing began, MTP hidden rows. */
  private prefillPos = -1;
  private prefillFrom = 0;
  private prefillHidden: Float32Array | null = null;
  /**
   * Prompt rows go through the decoder's native engine (`prefillRows`) instead of `forward`: the
   * model's decode weights are its f32 weights (no inference linear), the decoder runs on the
   * engine, and the generation is not speculative (its MTP prefill needs forward's hidden states).
   * Engine rows are row-exact, so a prompt's rows and first token are bit-identical however the
   * prompt is chunked and whatever other rows share the pass (a scheduler batches prefills this way).
   */
  readonly rowPrefill: boolean;

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
    const attn = opts.attn ?? 'absorb';
    // Speculative decoding runs on the absorbed latent cache (its verify step is a 2-row decode pass).
    this.spec = (opts.speculative ?? false) && model.params.mtp.length > 0 && attn === 'absorb';
    this.sampler = new Sampler(opts);
    this.greedy = isGreedy(opts);
    this.stopIds = new Set(opts.stopTokenIds ?? []);
    this.seq = prompt.slice();
    const drafts = opts.draftTokens ?? 'auto';
    if (drafts !== 'auto' && (!Number.isInteger(drafts) || drafts < 1 || drafts > MAX_DRAFT_TOKENS)) {
      throw new RangeError(`draftTokens must be 'auto' or an integer from 1 to ${MAX_DRAFT_TOKENS} (got ${drafts})`);
    }
    this.adaptDrafts = drafts === 'auto';
    this.draftWindow = opts.draftWindow ?? DRAFT_WINDOW;
    if (!Number.isInteger(this.draftWindow) || this.draftWindow < 0) throw new RangeError(`draftWindow must be a non-negative integer (got ${opts.draftWindow})`);
    this.drafts = drafts === 'auto' ? DEFAULT_DRAFT_TOKENS : drafts;
    this.pending = new Float32Array(this.spec ? (MAX_DRAFT_TOKENS + 1) * cfg.hiddenSize : 0);
    if (opts.kv && attn !== 'absorb') throw new RangeError('a kv source needs the absorbed latent cache (attn: absorb)');
    this.cache = opts.kv ? opts.kv.ensure(null, prompt.length + (this.spec ? 2 : 1), this.spec ? 1 : 0) : new KVCache(cfg, 1, prompt.length + this.maxNew + 2, attn, this.spec ? 1 : 0);
    this.decoder = attn === 'absorb' ? new RowDecoder(model.params, cfg, { linear: model.rowsLinear ?? (model.linear ? rowsLinearOf(model.linear) : f32RowsLinear) }) : null;
    this.drafter = this.spec && model.draftRowsLinear ? new RowDecoder(model.params, cfg, { linear: model.draftRowsLinear }) : this.decoder;
    this.rowPrefill = this.decoder !== null && !this.spec && !model.linear && !model.rowsLinear && this.decoder.usesEngine(1);
    // A speculative prompt (f32 main weights) runs on the engine too: main passes that keep every
    // row's hidden state, then the drafter's fill-only MTP passes (its cache rows, as decoding's).
    this.specEnginePrefill = this.spec && this.decoder !== null && !model.linear && !model.rowsLinear && this.decoder.usesEngine(1) && this.drafter!.usesEngine(1);
    const width = prefixRowWidth(cfg, this.spec ? 1 : 0);
    if (opts.prefixCache && opts.prefixCache.rowWidth !== width) {
      throw new RangeError(`prefix cache rows are ${opts.prefixCache.rowWidth} floats but this model's ${this.spec ? 'speculative ' : ''}rows are ${width} (a cache built for another model${this.spec ? ', or without speculative decoding' : ''}?)`);
    }
    if (this.maxNew === 0) this.done = true;
  }

  /** Prefix rows of [from, to) as the caches store them (speculative rows carry the MTP latents). */
  private rowsAt = (from: number, to: number): Float32Array => (this.spec ? specRowsFromCache(this.cache, from, to, 1) : rowsFromCache(this.cache, from, to));

  /** Grows the cache (when it comes from a `kv` source) to hold `tokens` positions. */
  private ensureCache(tokens: number): void {
    if (this.opts.kv && tokens > this.cache.capacity) this.cache = this.opts.kv.ensure(this.cache, tokens, this.spec ? 1 : 0);
  }

  /** Takes the prompt's longest cached prefix (prefix cache, then store) into the cache; returns its length. */
  private prefillStart(): number {
    const { cache, prompt, opts } = this;
    const P = prompt.length;
    const usable = cache.mode === 'absorb';
    const toCache = (start: number, rows: Float32Array): void => (this.spec ? specRowsToCache(this.cache, start, rows, 1) : rowsToCache(this.cache, start, rows));
    let hit = 0;
    if (usable && opts.prefixCache) {
      // Rows are copied out at once, so the pin ends here (a chunked prefill may span engine steps).
      const handle = opts.prefixCache.match(prompt, P - 1);
      try {
        this.ensureCache(handle.length + 1);
        if (handle.length > 0) toCache(0, handle.rows);
        hit = handle.length;
      } finally { opts.prefixCache.release(handle); }
    }
    if (usable && opts.prefixStore) {
      const got = opts.prefixStore.lookup(prompt, P - 1, hit);
      if (got && got.length > hit) {
        this.ensureCache(got.length + 1);
        toCache(hit, got.rows);
        this.storeTokens = got.length - hit;
        hit = got.length;
      }
    }
    // Speculative: the MTP layer needs the main hidden state of the last cached position, which
    // the rows do not hold: that one position is recomputed (its MTP predecessor row is cached).
    if (this.spec && hit > 0) { hit--; if (this.storeTokens > 0) this.storeTokens--; }
    this.cachedTokens = hit;
    this.cache.length = hit;
    this.prefillHidden = this.spec ? new Float32Array((P - hit) * this.cfg.hiddenSize) : null;
    return hit;
  }

  /** True until the prompt is prefilled and the first new token sampled. */
  get prefilling(): boolean { return !this.prefilled && !this.done; }

  /**
   * Prefill work: whole chunks of `prefillChunk` prompt positions (counted from the cached
   * prefix, so chunk boundaries never depend on the budget) until at least `budget` positions
   * were computed or the prompt is done; the first call takes the cached prefix. After the last
   * chunk the prompt goes into the caches and the first new token is sampled. Returns the number
   * of positions computed. No-op (0) once prefilled or done.
   */
  prefillSome(budget = Infinity): number {
    if (this.prefilled || this.done) return 0;
    if (this.rowPrefill) return this.prefillSomeRows(budget);
    return noGrad(() => {
      const t0 = now();
      const { cfg, prompt, opts } = this;
      const P = prompt.length, H = cfg.hiddenSize;
      if (this.prefillPos < 0) this.prefillPos = this.prefillFrom = this.prefillStart();
      const chunk = Math.max(1, opts.prefillChunk ?? 256);
      const step = this.specEnginePrefill ? Math.min(chunk, this.decoder!.engineRows()) : chunk;
      let done = 0;
      while (this.prefillPos < P && done < Math.max(1, budget)) {
        const s = this.prefillPos, e = Math.min(P, s + step);
        this.ensureCache(e + (this.spec ? 2 : 1));
        if (this.specEnginePrefill) {
          const f = this.decoder!.main(prompt.slice(s, e), [{ cache: this.cache, start: s, rows: e - s }], e === P ? e - s - 1 : e - s);
          if (e === P) this.last = f.logits.slice(0, cfg.vocabSize);
          this.prefillHidden?.set(f.hidden.subarray(0, (e - s) * H), (s - this.prefillFrom) * H);
          this.cache.length = e;
        } else {
          const f = forward(this.model.params, cfg, Tensor.ints(prompt.slice(s, e), [1, e - s]), { cache: this.cache, startPos: s, lastLogits: true });
          if (e === P) this.last = f.logits.f32.slice(); // [1, 1, V]: only the last position's logits are computed
          this.prefillHidden?.set(f.hidden.f32, (s - this.prefillFrom) * H);
        }
        this.prefillPos = e;
        done += e - s;
      }
      if (this.prefillPos === P) {
        const usable = this.cache.mode === 'absorb';
        if (this.prefillHidden) this.prefillMtp(this.prefillHidden, this.prefillFrom, chunk);
        this.prefillHidden = null;
        if (usable && opts.prefixCache) opts.prefixCache.insert(prompt, this.rowsAt);
        if (usable && opts.prefixStore) opts.prefixStore.save(prompt, this.rowsAt);
        this.prefilled = true;
      }
      this.prefillMs += now() - t0;
      if (this.prefilled) {
        const t1 = now();
        this.emit(this.sampler.sample(this.last!, 0, this.vocab));
        this.last = null;
        this.decodeMs += now() - t1;
      }
      return done;
    });
  }

  /** `prefillSome` on the engine: chunks of `prefillChunk` rows (at most the engine's rows per pass), each one pass. */
  private prefillSomeRows(budget: number): number {
    const chunk = Math.min(this.decoder!.engineRows(), Math.max(1, this.opts.prefillChunk ?? 256));
    let done = 0;
    while (this.prefilling && done < Math.max(1, budget)) {
      const t0 = now();
      const r = this.prefillRows(chunk)!;
      const n = r.seg.rows;
      const logits = this.decoder!.main(r.tokens, [r.seg], r.last ? n - 1 : n).logits;
      this.prefillMs += now() - t0;
      this.takePrefillRows(n, r.last ? logits : null, 0);
      done += n;
    }
    return done;
  }

  /**
   * The next prompt rows to compute on the engine (`rowPrefill` only): up to `max` positions from
   * where the prefill stands (the first call takes the cached prefix), as one segment of this
   * sequence's cache (grown first). `last`: they end the prompt, so the pass must give the logits
   * of the segment's last row. Null when there is nothing to prefill. Hand the rows' pass to
   * `takePrefillRows`.
   */
  prefillRows(max: number): { tokens: number[]; seg: Segment; last: boolean } | null {
    if (!this.rowPrefill) throw new Error('Generation.prefillRows: this generation prefills with forward (no engine, an inference linear, or speculative)');
    if (!this.prefilling) return null;
    if (this.prefillPos < 0) this.prefillPos = this.prefillFrom = this.prefillStart();
    const P = this.prompt.length, s = this.prefillPos, e = Math.min(P, s + Math.max(1, Math.floor(max)));
    this.ensureCache(e + 1);
    return { tokens: this.prompt.slice(s, e), seg: { cache: this.cache, start: s, rows: e - s }, last: e === P };
  }

  /**
   * Consumes a pass over the `n` rows `prefillRows` gave: they join the cache; when they ended the
   * prompt, the prompt goes into the prefix cache / store and the first new token is sampled from
   * the last row's logits (at `offset` in `logits`).
   */
  takePrefillRows(n: number, logits: Float32Array | null, offset: number): void {
    const P = this.prompt.length;
    if (!(n >= 1 && this.prefillPos + n <= P)) throw new RangeError(`Generation.takePrefillRows: ${n} rows at position ${this.prefillPos} of a ${P}-token prompt`);
    this.prefillPos += n;
    this.cache.length = this.prefillPos;
    if (this.prefillPos < P) return;
    if (!logits) throw new Error('Generation.takePrefillRows: the last prompt row needs its logits');
    const { opts, prompt } = this;
    if (opts.prefixCache) opts.prefixCache.insert(prompt, this.rowsAt);
    if (opts.prefixStore) opts.prefixStore.save(prompt, this.rowsAt);
    this.prefilled = true;
    const t1 = now();
    this.emit(this.sampler.sample(logits, offset, this.vocab));
    this.decodeMs += now() - t1;
  }

  /** MTP rows of prompt positions [from, P−1) (position i reads token i+1); position P−1 waits for the first new token. */
  private prefillMtp(hidden: Float32Array, from: number, chunk: number): void {
    const { cfg, prompt } = this;
    const cache = this.cache;
    const P = prompt.length, H = cfg.hiddenSize;
    const step = this.specEnginePrefill ? Math.min(chunk, this.drafter!.engineRows()) : chunk;
    for (let s = from; s < P - 1; s += step) {
      const e = Math.min(P - 1, s + step);
      if (this.specEnginePrefill) {
        // Fill rows; the last row of each pass also runs through (every engine takes at least one such row).
        this.drafter!.mtp(0, hidden.subarray((s - from) * H, (e - from) * H), prompt.slice(s + 1, e + 1), [{ cache, start: s, rows: e - s }], e - s - 1);
        continue;
      }
      mtpForward(this.model.params, cfg, 0, new Tensor(hidden.slice((s - from) * H, (e - from) * H), [1, e - s, H]),
        Tensor.ints(prompt.slice(s + 1, e + 1), [1, e - s]), { cache, startPos: s });
    }
    this.mtpLen = P - 1;
    this.pending.set(hidden.subarray((P - 1 - from) * H, (P - from) * H));
    this.pendingRows = 1;
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
    if (!this.prefilled) { this.prefillSome(); return; }
    noGrad(() => {
      const t0 = now();
      if (this.spec) this.specStep(); else this.plainStep();
      this.decodeMs += now() - t0;
    });
  }

  /** Stops early (e.g. the client went away). */
  cancel(): void {
    if (!this.done) { this.done = true; this.finishReason = 'cancelled'; }
  }

  /** True when the next step is one plain decode row (prefilled, not done, not speculative, absorb cache): a scheduler may batch it. */
  get batchable(): boolean { return this.prefilled && !this.done && !this.spec && this.decoder !== null; }

  /**
   * The next plain decode row: the newest token and the one-row segment of this sequence's cache
   * it fills (the cache grows first when it comes from a `kv` source). Feed it through a
   * `RowDecoder` pass (alone or with other sequences' rows), then hand its logits to `takeLogits`.
   */
  decodeRow(): { token: number; seg: Segment } {
    if (!this.batchable) throw new Error('Generation.decodeRow: not at a plain decode step (prefilling, done, speculative or naive cache)');
    const n = this.cache.length;
    this.ensureCache(n + 1);
    return { token: this.seq[n]!, seg: { cache: this.cache, start: n, rows: 1 } };
  }

  /** Consumes the logits of the row `decodeRow` gave (at `offset` in `logits`): the row joins the cache and the next token is sampled. */
  takeLogits(logits: Float32Array, offset: number): void {
    this.cache.length++;
    this.emit(this.sampler.sample(logits, offset, this.vocab));
  }

  private plainStep(): void {
    if (this.decoder) {
      const r = this.decodeRow();
      this.takeLogits(this.decoder.main([r.token], [r.seg]).logits, 0);
      return;
    }
    const { cfg, cache } = this;
    const n = cache.length, x = this.seq[n]!;
    const lin = this.model.linear ? { linear: this.model.linear } : {};
    const logits = forward(this.model.params, cfg, Tensor.ints([x], [1, 1]), { cache, startPos: n, ...lin }).logits.f32;
    this.emit(this.sampler.sample(logits, 0, this.vocab));
  }

  /**
   * One speculative step. Main cache holds positions [0, n); seq[n] = x is the newest token
   * (emitted, not fed); `pending` holds main hidden states of [mtpLen, n). The MTP layer at
   * position i reads (hidden_i, token_{i+1}) and predicts token_{i+2}, so its last pending row
   * (n−1, x) drafts token n+1. One 2-row main pass over [x, draft] at n, n+1 verifies it; a
   * rejected draft's cache row at n+1 is dropped by setting the length (it is overwritten later).
   */
  private specStep(): void {
    if (this.greedy && this.specLoop()) return;
    const { cfg } = this;
    this.ensureCache(this.cache.length + 2);
    const cache = this.cache;
    const dec = this.decoder!;
    const H = cfg.hiddenSize, V = cfg.vocabSize;
    const n = cache.length, x = this.seq[n]!, m = this.pendingRows;
    const mtpSeg = { cache, start: this.mtpLen, rows: m }, mainSeg = { cache, start: n, rows: 2 };
    const nextTokens = this.seq.slice(this.mtpLen + 1, n + 1);
    // Greedy on the engine: draft and verify in one call (the verify's rows one per thread).
    const fused = this.greedy ? dec.specStep(this.drafter!, this.pending, nextTokens, mtpSeg, x, mainSeg, this.vocab) : null;
    if (fused) {
      this.mtpLen = n;
      this.pending.set(fused.hidden);
      this.proposed++;
      this.finishSpec(n, fused.next0 === fused.draft, fused.next0, () => fused.next1);
      return;
    }
    // Draft: the MTP layer over the pending rows; only the last row's logits are needed.
    const mt = this.drafter!.mtp(0, this.pending.subarray(0, m * H), nextTokens, [mtpSeg], m - 1);
    let draft: number;
    if (this.greedy) draft = argmax(mt.logits, 0, this.vocab);
    else {
      this.qDist ??= new Float64Array(this.vocab);
      this.pDist ??= new Float64Array(this.vocab);
      this.sampler.probs(mt.logits, 0, this.vocab, this.qDist);
      draft = this.sampler.sampleFrom(this.qDist, this.vocab);
    }
    // Verify: positions n (token x) and n+1 (the draft) in one pass.
    const f = dec.main([x, draft], [mainSeg]);
    this.mtpLen = n;
    const L = f.logits;
    this.pending.set(f.hidden);
    this.proposed++;
    let next: number, ok: boolean;
    if (this.greedy) {
      next = argmax(L, 0, this.vocab);
      ok = next === draft;
    } else {
      this.sampler.probs(L, 0, this.vocab, this.pDist!);
      ({ id: next, accepted: ok } = acceptOrResample(this.pDist!, this.qDist!, draft, this.vocab, this.sampler));
    }
    this.finishSpec(n, ok, next, () => this.sampler.sample(L, V, this.vocab));
  }

  /**
   * Greedy speculative steps on the engine, several per call (`SPEC_LOOP_STEPS`, fewer near the
   * end of the budget or of the cache; one with a shared KV pool, `opts.kv`: the server's steps
   * stay one at a time, interleaved with other sequences), each chaining `draftTokens` drafts, with
   * the bookkeeping in the engine. Tokens are emitted here in order, so a stop (stop id, onToken,
   * length) ends the generation at the same token; rows computed past it are never read. False
   * when the engine cannot run it (then one step runs as usual).
   */
  private specLoop(): boolean {
    const n = this.cache.length, m = this.pendingRows;
    const budget = this.maxNew - this.tokens.length;
    // No draft past the budget (the last token needs none): rows stay below prompt + max tokens.
    const K = Math.max(1, Math.min(this.drafts, budget - 1));
    // With a shared KV pool (the server) one step per call, interleaved with the other sequences,
    // its rows reserved first; else up to SPEC_LOOP_STEPS in the cache sized at the start.
    if (this.opts.kv) this.ensureCache(n + K + 1);
    const cache = this.cache;
    const steps = this.opts.kv ? (cache.capacity >= n + K + 1 ? 1 : 0) : Math.min(SPEC_LOOP_STEPS, Math.ceil(budget / (K + 1)), Math.floor((cache.capacity - n) / (K + 1)));
    if (steps < 1) return false;
    this.loopState ??= { state: new Float64Array(6), next: new Int32Array(MAX_DRAFT_TOKENS + 1), out: new Int32Array((MAX_DRAFT_TOKENS + 1) * SPEC_LOOP_STEPS), stops: Int32Array.from(this.stopIds) };
    const L = this.loopState;
    L.state.set([this.seq[n]!, n, this.mtpLen, m, 0, 0]);
    for (let i = 0; i < m; i++) L.next[i] = this.seq[this.mtpLen + 1 + i]!;
    const count = this.decoder!.specLoop(this.drafter!, this.pending, L.next, L.state, cache, steps, budget, L.stops, this.vocab, L.out, K, { draftWindow: this.draftWindow });
    if (count === null) return false;
    this.proposed += L.state[4]!;
    this.accepted += L.state[5]!;
    if (this.adaptDrafts && K === this.drafts && L.state[4]! > 0) {
      // Mean drafts kept per step: deepen while nearly all are kept, shorten while the deepest
      // ones are mostly rejected (each draft costs an MTP pass and a verify row).
      const kept = L.state[5]! / (L.state[4]! / K);
      if (kept >= K - 0.25 && K < MAX_DRAFT_TOKENS) this.drafts = K + 1;
      else if (kept <= K - 1.25 && K > 1) this.drafts = K - 1;
    }
    cache.length = L.state[1]!;
    this.mtpLen = L.state[2]!;
    this.pendingRows = L.state[3]!;
    for (let i = 0; i < count; i++) if (this.emit(L.out[i]!)) break;
    return true;
  }

  /** After a verify pass at n: keep the draft's row (ok) or drop it, emit `next`, then the bonus token. */
  private finishSpec(n: number, ok: boolean, next: number, bonus: () => number): void {
    if (!ok) {
      this.cache.length = n + 1;
      this.pendingRows = 1;
      this.emit(next);
      return;
    }
    this.accepted++;
    this.cache.length = n + 2;
    this.pendingRows = 2;
    if (this.emit(next)) return;
    this.emit(bonus());
  }

  /** Drafts per step the engine's greedy speculative loop runs next (adapted under draftTokens 'auto'). */
  get draftTokens(): number { return this.drafts; }

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
