/**
 * Continuous batching: many generations advance together, one engine step at a time, every
 * running sequence's next token computed in ONE batched decode pass (one row per sequence through
 * every projection, expert and the head; each row attends over its own latent cache).
 *
 * Contract:
 * - `submit` queues a sequence (first come, first served). Each `step()`:
 *   1. admission: while fewer than `maxBatch` run and the pool can lease the head's worst case
 *      (prompt + max tokens), the head starts; a head that does not fit holds the ones behind it,
 *      so a large request is never starved;
 *   2. while the head waits for KV blocks, waiting sequences past their deadline fail with
 *      `KvFullError` (the server's 503); waiting for a batch slot has no deadline;
 *   3. prefill: running sequences still prefilling compute whole chunks, oldest first, until
 *      `prefillTokens` prompt positions were computed this step (chunked prefill: a long prompt
 *      takes several steps, and the running streams get a decode step between its chunks);
 *      sequences that prefill on the native engine (`Generation.rowPrefill`) do it in step 4;
 *   4. decode: every running sequence at a plain decode step gives one row to a single
 *      `RowDecoder` pass, and engine prompt rows (up to `prefillTokens` a step, oldest prompt
 *      first) fill the rest of it: prefill and decode in one pass; speculative sequences take
 *      their own (2-row) steps;
 *   5. sequences that finished retire at once, returning their blocks and batch slot.
 * - `cancel` takes a sequence out at once, waiting or running: its slot and blocks are free
 *   before the next step.
 * - Same answers: forward prefill is the Generation's own (chunk boundaries fixed from the cached
 *   prefix); engine prompt rows are row-exact, so any chunking gives the same rows; and a pass
 *   carries at most `rowExactLimit` rows, the most for which the backend computes each row
 *   bit-identically to that row alone (the native engine: 4096; native without it: its few-row
 *   products, up to 8 rows; ts: any; wasm: 1, its GEMM tiles differ by row count); a larger batch
 *   is split into several passes. So a sequence's tokens do not depend on what else runs (tested
 *   per backend).
 * - Prefix cache and store hits are per sequence, exactly as `Generation` takes them.
 * Browser-safe.
 */
import { Generation, kvTokensNeeded, type GenerateOptions, type GenerateResult, type Model, type PrefixStore } from './generate.js';
import { RowDecoder, f32RowsLinear, rowsLinearOf, type Segment } from '../model/decode.js';
import { getBackend } from '../backend/registry.js';
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
  /** Most rows per decode pass (default: as many as stay row-exact, `rowExactLimit`). */
  rowsPerPass?: number;
}

/**
 * Most rows a RowDecoder pass may carry on this backend with every row's result bit-identical to
 * the row computed alone. `engineRows`: the decoder's native-engine rows per pass
 * (`RowDecoder.engineRows`, 4096 for f32 and bf16 weights; 0 without the engine): the engine's
 * few-row products sum every output in one fixed order whatever the row count, and its attention
 * and MoE are per row, so any pass it takes is row-exact. Without it: native 8 one-row segments
 * (the TypeScript path's f32 products of ≤ 8 rows are gemv.cc's few-row kernels; more go to the
 * GEMM, and so do multi-row segments' attention products, so those are not row-exact there), ts
 * any (plain loops), others 1 (wasm's GEMM tiles change the order with the row count).
 * src/infer/scheduler.test.ts checks it on every backend.
 */
export function rowExactLimit(backend: string, engineRows = 0): number {
  if (engineRows > 0) return engineRows;
  return backend === 'ts' ? Infinity : backend === 'native' ? 8 : 1;
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
  /** Rows decoded in the last step (0 when none, or when nothing runs now), and the most in one step so far. */
  lastBatch: number; peakBatch: number;
  /** Rows per decode pass now (a larger batch takes several passes). */
  rowsPerPass: number;
  steps: number; decodePasses: number; decodeRows: number;
  /** Decode passes that also carried prompt rows (engine prefill mixed with decoding). */
  mixedPasses: number;
  generatedTokens: number; prefillTokens: number;
  admitted: number; finished: number; cancelled: number; rejected: number;
}

export class Scheduler {
  readonly maxBatch: number;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly decoder: RowDecoder;
  private readonly prefillTokens: number;
  /** The current step's decode rows and the next one to decode (between `decodePass` calls). */
  private stepRows: { rows: Sequence[]; next: number; prefillBudget: number } | null = null;
  /** The last admission stopped because the head's blocks could not be reserved. */
  private memoryBlocked = false;
  private readonly counters = { steps: 0, decodePasses: 0, mixedPasses: 0, decodeRows: 0, generatedTokens: 0, prefillTokens: 0, admitted: 0, finished: 0, cancelled: 0, rejected: 0, lastBatch: 0, peakBatch: 0 };

  constructor(readonly model: Model, readonly o: SchedulerOptions = {}) {
    this.maxBatch = o.maxBatch ?? 16;
    if (!(Number.isInteger(this.maxBatch) && this.maxBatch >= 1 && this.maxBatch <= 4096)) throw new RangeError(`maxBatch must be an integer in [1, 4096], got ${o.maxBatch}`);
    this.prefillTokens = Math.max(1, o.prefillTokens ?? 256);
    this.decoder = new RowDecoder(model.params, model.cfg, { linear: model.rowsLinear ?? (model.linear ? rowsLinearOf(model.linear) : f32RowsLinear) });
  }

  /** Rows per decode pass: the option, the backend's row-exact limit and the model's, whichever is least. */
  rowsPerPass(): number {
    return Math.max(1, Math.min(this.o.rowsPerPass ?? Infinity, rowExactLimit(getBackend().name, this.decoder.engineRows()), this.model.decodeExactRows ?? Infinity));
  }

  /** Cache positions a request may need (what admission reserves). */
  tokensNeeded(promptLength: number, maxTokens: number): number { return kvTokensNeeded(this.model.cfg, promptLength, maxTokens); }

  /**
   * Queues a generation. `waitMs`: how long it may wait for KV blocks before failing with
   * KvFullError (default: no limit; 0: throws KvFullError at once unless its blocks can be
   * reserved now, after those of the requests waiting ahead). Throws RangeError when its worst
   * case exceeds the whole pool.
   */
  submit(prompt: readonly number[], opts: SequenceOptions, waitMs = Infinity): Sequence {
    const need = this.tokensNeeded(prompt.length, opts.maxTokens ?? 16);
    const pool = this.o.pool;
    if (pool && !pool.fits(need)) throw new RangeError(`a request of ${need} cache positions needs ${pool.blocksFor(need)} KV blocks; the pool has ${pool.totalBlocks}`);
    if (pool && waitMs <= 0) {
      const ahead = this.waiting.reduce((n, w) => n + pool.blocksFor(w.tokensNeeded), 0);
      if (!pool.canReserve(ahead + pool.blocksFor(need))) { this.counters.rejected++; throw new KvFullError(0, pool.blocksFor(need)); }
    }
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

  /** Requests waiting for admission. */
  get waitingCount(): number { return this.waiting.length; }

  /** True while anything waits or runs. */
  get busy(): boolean { return this.waiting.length > 0 || this.running.length > 0; }

  /** Sequences waiting or running, oldest first (running ones first). */
  live(): Sequence[] { return [...this.running, ...this.waiting]; }

  stats(): SchedulerStats {
    const c = this.counters;
    return {
      running: this.running.length, waiting: this.waiting.length, maxBatch: this.maxBatch, lastBatch: this.running.length ? c.lastBatch : 0, peakBatch: c.peakBatch, rowsPerPass: this.rowsPerPass(),
      steps: c.steps, decodePasses: c.decodePasses, mixedPasses: c.mixedPasses, decodeRows: c.decodeRows, generatedTokens: c.generatedTokens, prefillTokens: c.prefillTokens,
      admitted: c.admitted, finished: c.finished, cancelled: c.cancelled, rejected: c.rejected,
    };
  }

  /** One engine step (see the contract). Errors end the sequences they hit; the engine goes on. */
  step(): void {
    this.stepPrefill();
    this.stepDecode();
  }

  /**
   * The first half of a step: admission, deadlines, prefill. Returns the prompt positions computed
   * (a server may yield here when > 0, so new first tokens reach their clients before the decode
   * pass). `stepDecode` must follow before the next `stepPrefill`.
   */
  stepPrefill(): number {
    if (!this.stepRows) this.counters.steps++;
    this.admit();
    this.expire();
    const before = this.counters.prefillTokens;
    this.prefill();
    return this.counters.prefillTokens - before;
  }

  /** The second half of a step: the batched decode pass(es), then retiring finished sequences. */
  stepDecode(): void {
    while (!this.decodePass()) { /* every pass of the step */ }
  }

  private expire(): void {
    if (!this.memoryBlocked) return;
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
    this.memoryBlocked = false;
    while (this.waiting.length > 0 && this.running.length < this.maxBatch) {
      const s = this.waiting[0]!;
      let lease: KvLease | null = null;
      if (this.o.pool) {
        lease = this.o.pool.lease(s.tokensNeeded);
        // First come, first served: the head waits for blocks, and the rest behind it.
        if (!lease) { this.memoryBlocked = true; return; }
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
      if (!g.prefilling || s.state !== 'running' || g.rowPrefill) continue; // engine prompt rows ride in the decode pass
      try {
        const n = g.prefillSome(budget);
        budget -= n;
        this.counters.prefillTokens += n;
      } catch (e) { this.failRunning(s, e); }
    }
  }

  /**
   * One decode pass of the current step. The first call of a step takes the step's rows (every
   * running sequence at a plain decode step; speculative ones take their own steps here); each
   * call then decodes the next `rowsPerPass` of them (a row cancelled meanwhile is skipped).
   * Prompt rows of sequences that prefill on the engine (`Generation.rowPrefill`) fill the rest of
   * the pass, oldest sequence first, up to `prefillTokens` per step (chunked prefill mixed with
   * decoding, as vLLM and SGLang do): several prompts in one pass, and a prompt that ends in it
   * gets its first token at once. Rows needing no logits go first, so the head only runs for the
   * rest (`RowDecoder.main`'s `from`). Returns true once the step's rows are done and finished
   * sequences retired. A server may yield between passes and admit newcomers (`stepPrefill`).
   */
  decodePass(): boolean {
    if (!this.stepRows) {
      const rows: Sequence[] = [];
      for (const s of this.running) {
        const g = s.gen!;
        if (s.state !== 'running' || g.done || g.prefilling) continue;
        if (g.batchable) { rows.push(s); continue; }
        try { g.step(); } catch (e) { this.failRunning(s, e); } // speculative: its own 2-row verify step
      }
      this.counters.lastBatch = rows.length;
      this.counters.peakBatch = Math.max(this.counters.peakBatch, rows.length);
      this.stepRows = { rows, next: 0, prefillBudget: this.prefillTokens };
    }
    const st = this.stepRows, per = this.rowsPerPass(), V = this.model.cfg.vocabSize;
    // The pass: [prompt rows without logits | decode rows, prompt-ending rows] (the tail gets logits).
    const headTok: number[] = [], headSeg: Segment[] = [], tailTok: number[] = [], tailSeg: Segment[] = [];
    const decoding: Sequence[] = [];
    const prompts: Array<{ s: Sequence; n: number; at: number }> = [];
    while (st.next < st.rows.length && tailTok.length < per) {
      const s = st.rows[st.next++]!;
      if (s.state !== 'running' || !s.gen!.batchable) continue; // cancelled (or failed) since the step began
      try {
        const r = s.gen!.decodeRow();
        decoding.push(s); tailTok.push(r.token); tailSeg.push(r.seg);
      } catch (e) { this.failRunning(s, e); }
    }
    for (const s of this.running) {
      const room = Math.min(st.prefillBudget, per - headTok.length - tailTok.length);
      if (room <= 0) break;
      const g = s.gen!;
      if (s.state !== 'running' || !g.rowPrefill || !g.prefilling) continue;
      try {
        const r = g.prefillRows(room)!;
        const n = r.seg.rows, keep = r.last ? n - 1 : n;
        for (let i = 0; i < keep; i++) headTok.push(r.tokens[i]!);
        if (keep > 0) headSeg.push({ cache: r.seg.cache, start: r.seg.start, rows: keep });
        prompts.push({ s, n, at: r.last ? tailTok.length : -1 });
        if (r.last) { tailTok.push(r.tokens[n - 1]!); tailSeg.push({ cache: r.seg.cache, start: r.seg.start + n - 1, rows: 1 }); }
        st.prefillBudget -= n;
      } catch (e) { this.failRunning(s, e); }
    }
    if (headTok.length + tailTok.length > 0) {
      let logits: Float32Array | null = null;
      try {
        logits = this.decoder.main(headTok.concat(tailTok), headSeg.concat(tailSeg), headTok.length).logits;
      } catch (e) {
        for (const s of decoding) this.failRunning(s, e);
        for (const p of prompts) this.failRunning(p.s, e);
      }
      if (logits) {
        this.counters.decodePasses++;
        this.counters.decodeRows += decoding.length;
        if (decoding.length > 0 && prompts.length > 0) this.counters.mixedPasses++;
        // The logits are the decoder's scratch: every row takes its own before the next pass.
        for (const p of prompts) {
          try {
            p.s.gen!.takePrefillRows(p.n, p.at >= 0 ? logits : null, Math.max(0, p.at) * V);
            this.counters.prefillTokens += p.n;
          } catch (e) { this.failRunning(p.s, e); }
        }
        for (let i = 0; i < decoding.length; i++) {
          try { decoding[i]!.gen!.takeLogits(logits, i * V); } catch (e) { this.failRunning(decoding[i]!, e); }
        }
      }
    }
    if (st.next < st.rows.length) return false;
    this.stepRows = null;
    this.retire();
    return true;
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
