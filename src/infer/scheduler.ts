/**
 * Continuous batching: many generations advance together, one engine step at a time, every
 * running sequence's next token computed in ONE batched decode pass (one row per sequence through
 * every projection, expert and the head; each row attends over its own latent cache).
 *
 * Contract:
 * - `submit` queues a sequence (first come, first served). Each `step()`:
 *   1. waiting sequences past their deadline fail with `KvFullError` (the server's 503);
 *   2. admission: while fewer than `maxBatch` run and the pool can lease the head's worst case
 *      (prompt + max tokens), the head starts; a head that does not fit holds the ones behind it,
 *      so a large request is never starved;
 *   3. prefill: running sequences still prefilling compute whole chunks, oldest first, until
 *      `prefillTokens` prompt positions were computed this step (chunked prefill: a long prompt
 *      takes several steps, and the running streams get a decode step between its chunks);
 *   4. decode: every running sequence at a plain decode step gives one row to a single
 *      `RowDecoder` pass; speculative sequences take their own (2-row) steps;
 *   5. sequences that finished retire at once, returning their blocks and batch slot.
 * - `cancel` takes a sequence out at once, waiting or running: its slot and blocks are free
 *   before the next step.
 * - Same answers: prefill is the Generation's own (chunk boundaries fixed from the cached prefix)
 *   and the decode pass computes each row as that row alone (the native few-row products and the
 *   wasm/ts kernels sum a row's products in the same order whatever the row count; tested), so a
 *   sequence's tokens do not depend on what else runs.
 * - Prefix cache and store hits are per sequence, exactly as `Generation` takes them.
 * Browser-safe.
 */
import { Generation, kvTokensNeeded, type GenerateOptions, type GenerateResult, type Model, type PrefixStore } from './generate.js';
import { RowDecoder, f32RowsLinear, rowsLinearOf, type Segment } from '../model/decode.js';
import type { KvBlockPool, KvLease } from './kv-blocks.js';
import type { PrefixCache } from './prefix-cache.js';

export interface SchedulerOptions {
  /** Most sequences running at once (default 16). */
  maxBatch?: number;
  /** KV memory in blocks; null: each sequence allocates its worst case itself (no admission control by memory). */
  pool?: KvBlockPool | null;
  /** Prompt positions prefilled per engine step before the decode pass (default 256: one chunk). */
  prefillTokens?: number;
  /** Positions per prefill forward (default 256, as Generation). */
  prefillChunk?: number;
  prefixCache?: PrefixCache | null;
  prefixStore?: PrefixStore | null;
  speculative?: boolean;
}

/** Per-sequence options: Generation's sampling and stopping ones (caches and speculation are the scheduler's). */
export type SequenceOptions = Omit<GenerateOptions, 'prefixCache' | 'prefixStore' | 'kv' | 'speculative' | 'prefillChunk' | 'attn'>;

/** A request that waited longer than its deadline for KV blocks. */
export class KvFullError extends Error {
  constructor(readonly waitedMs: number, readonly neededBlocks: number) {
    super(`KV cache full: no room for ${neededBlocks} blocks after waiting ${Math.round(waitedMs)} ms`);
  }
}

export type SequenceState = 'waiting' | 'running' | 'done';

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** One request in the scheduler. `finished` settles when it ends (result, or KvFullError / an engine error). */
export class Sequence {
  state: SequenceState = 'waiting';
  gen: Generation | null = null;
  lease: KvLease | null = null;
  readonly submittedAt = now();
  readonly finished: Promise<GenerateResult>;
  /** Called when the sequence is admitted (before its prefill). */
  onStart: (() => void) | null = null;
  private settle!: (r: GenerateResult) => void;
  private fail!: (e: unknown) => void;
  /** Tokens already counted in the scheduler's totals. */
  counted = 0;

  constructor(readonly prompt: readonly number[], readonly opts: SequenceOptions, readonly tokensNeeded: number, readonly deadline: number) {
    this.finished = new Promise<GenerateResult>((res, rej) => { this.settle = res; this.fail = rej; });
    this.finished.catch(() => undefined); // a caller that never awaits does not leave an unhandled rejection
  }

  /** Tokens generated so far. */
  get tokens(): number { return this.gen?.tokens.length ?? 0; }
  get cancelled(): boolean { return this.state === 'done' && this.gen?.finishReason === 'cancelled'; }

  /** @internal */
  end(error: unknown = null): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.lease?.release();
    this.lease = null;
    if (error !== null) this.fail(error);
    else if (this.gen) this.settle(this.gen.result());
    else this.settle({ tokens: [], finishReason: 'cancelled', promptTokens: this.prompt.length, cachedTokens: 0, storeTokens: 0, speculative: null, prefillMs: 0, decodeMs: 0 });
  }
}

/** Engine counters (monotonic totals and the last step's shape). */
export interface SchedulerStats {
  running: number; waiting: number; maxBatch: number;
  /** Rows in the last decode pass (0 when the last step had none), and the most in one pass so far. */
  lastBatch: number; peakBatch: number;
  steps: number; decodePasses: number; decodeRows: number;
  generatedTokens: number; prefillTokens: number;
  admitted: number; finished: number; cancelled: number; rejected: number;
}

export class Scheduler {
  readonly maxBatch: number;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly decoder: RowDecoder;
  private readonly prefillTokens: number;
  private readonly counters = { steps: 0, decodePasses: 0, decodeRows: 0, generatedTokens: 0, prefillTokens: 0, admitted: 0, finished: 0, cancelled: 0, rejected: 0, lastBatch: 0, peakBatch: 0 };

  constructor(readonly model: Model, readonly o: SchedulerOptions = {}) {
    this.maxBatch = o.maxBatch ?? 16;
    if (!(Number.isInteger(this.maxBatch) && this.maxBatch >= 1 && this.maxBatch <= 4096)) throw new RangeError(`maxBatch must be an integer in [1, 4096], got ${o.maxBatch}`);
    this.prefillTokens = Math.max(1, o.prefillTokens ?? 256);
    this.decoder = new RowDecoder(model.params, model.cfg, { linear: model.rowsLinear ?? (model.linear ? rowsLinearOf(model.linear) : f32RowsLinear) });
  }

  /** Cache positions a request may need (what admission reserves). */
  tokensNeeded(promptLength: number, maxTokens: number): number { return kvTokensNeeded(this.model.cfg, promptLength, maxTokens); }

  /**
   * Queues a generation. `waitMs`: how long it may wait for KV blocks before failing with
   * KvFullError (default: no limit). Throws RangeError when its worst case exceeds the whole pool.
   */
  submit(prompt: readonly number[], opts: SequenceOptions, waitMs = Infinity): Sequence {
    const need = this.tokensNeeded(prompt.length, opts.maxTokens ?? 16);
    if (this.o.pool && !this.o.pool.fits(need)) throw new RangeError(`a request of ${need} cache positions needs ${this.o.pool.blocksFor(need)} KV blocks; the pool has ${this.o.pool.totalBlocks}`);
    const s = new Sequence(prompt, opts, need, now() + waitMs);
    this.waiting.push(s);
    return s;
  }

  /** Ends a sequence now (waiting or running): its batch slot and KV blocks are free at once. */
  cancel(s: Sequence): void {
    if (s.state === 'done') return;
    const q = s.state === 'waiting' ? this.waiting : this.running;
    const i = q.indexOf(s);
    if (i >= 0) q.splice(i, 1);
    s.gen?.cancel();
    this.counters.cancelled++;
    s.end();
  }

  /** True while anything waits or runs. */
  get busy(): boolean { return this.waiting.length > 0 || this.running.length > 0; }

  /** Sequences waiting or running, oldest first (running ones first). */
  live(): Sequence[] { return [...this.running, ...this.waiting]; }

  stats(): SchedulerStats {
    const c = this.counters;
    return {
      running: this.running.length, waiting: this.waiting.length, maxBatch: this.maxBatch, lastBatch: c.lastBatch, peakBatch: c.peakBatch,
      steps: c.steps, decodePasses: c.decodePasses, decodeRows: c.decodeRows, generatedTokens: c.generatedTokens, prefillTokens: c.prefillTokens,
      admitted: c.admitted, finished: c.finished, cancelled: c.cancelled, rejected: c.rejected,
    };
  }

  /** One engine step (see the contract). Errors end the sequences they hit; the engine goes on. */
  step(): void {
    this.counters.steps++;
    this.expire();
    this.admit();
    this.prefill();
    this.decode();
    this.retire();
  }

  private expire(): void {
    const t = now();
    for (let i = 0; i < this.waiting.length; i++) {
      const s = this.waiting[i]!;
      if (t < s.deadline) continue;
      this.waiting.splice(i--, 1);
      this.counters.rejected++;
      s.end(new KvFullError(t - s.submittedAt, this.o.pool?.blocksFor(s.tokensNeeded) ?? 0));
    }
  }

  private admit(): void {
    while (this.waiting.length > 0 && this.running.length < this.maxBatch) {
      const s = this.waiting[0]!;
      let lease: KvLease | null = null;
      if (this.o.pool) {
        lease = this.o.pool.lease(s.tokensNeeded);
        if (!lease) return; // first come, first served: the head waits for blocks, the rest behind it
      }
      this.waiting.shift();
      s.lease = lease;
      try {
        s.gen = new Generation(this.model, s.prompt, {
          ...s.opts, prefixCache: this.o.prefixCache ?? null, prefixStore: this.o.prefixStore ?? null,
          speculative: this.o.speculative ?? false, prefillChunk: this.o.prefillChunk ?? 256, kv: lease,
        });
      } catch (e) { s.end(e); continue; }
      s.state = 'running';
      this.running.push(s);
      this.counters.admitted++;
      s.onStart?.();
    }
  }

  private prefill(): void {
    let budget = this.prefillTokens;
    for (const s of this.running) {
      if (budget <= 0) break;
      const g = s.gen!;
      if (!g.prefilling || s.state !== 'running') continue;
      try {
        const n = g.prefillSome(budget);
        budget -= n;
        this.counters.prefillTokens += n;
      } catch (e) { this.failRunning(s, e); }
    }
  }

  private decode(): void {
    const rows: Sequence[] = [];
    const tokens: number[] = [];
    const segs: Segment[] = [];
    for (const s of this.running) {
      const g = s.gen!;
      if (s.state !== 'running' || g.done || g.prefilling) continue;
      if (!g.batchable) {
        try { g.step(); } catch (e) { this.failRunning(s, e); } // speculative: its own 2-row verify step
        continue;
      }
      try {
        const r = g.decodeRow();
        rows.push(s); tokens.push(r.token); segs.push(r.seg);
      } catch (e) { this.failRunning(s, e); }
    }
    this.counters.lastBatch = rows.length;
    this.counters.peakBatch = Math.max(this.counters.peakBatch, rows.length);
    if (rows.length === 0) return;
    let logits: Float32Array;
    try {
      logits = this.decoder.main(tokens, segs).logits;
    } catch (e) {
      for (const s of rows) this.failRunning(s, e);
      return;
    }
    this.counters.decodePasses++;
    this.counters.decodeRows += rows.length;
    const V = this.model.cfg.vocabSize;
    for (let i = 0; i < rows.length; i++) {
      try { rows[i]!.gen!.takeLogits(logits, i * V); } catch (e) { this.failRunning(rows[i]!, e); }
    }
  }

  private retire(): void {
    for (let i = 0; i < this.running.length; i++) {
      const s = this.running[i]!;
      this.counters.generatedTokens += s.tokens - s.counted;
      s.counted = s.tokens;
      if (!s.gen!.done && s.state === 'running') continue;
      this.running.splice(i--, 1);
      if (s.state !== 'done') {
        if (s.gen!.finishReason === 'cancelled') this.counters.cancelled++;
        else this.counters.finished++;
        s.end();
      }
    }
  }

  private failRunning(s: Sequence, e: unknown): void {
    s.gen?.cancel();
    s.end(e);
  }
}
