/**
 * Engine metrics for `/health` (JSON) and `/metrics` (Prometheus text exposition format 0.0.4, as
 * vLLM and llama.cpp's server offer them): batch size, queue length, tokens/s and cache use.
 *
 * Contract:
 * - `TokenRate` turns a monotonic token counter into tokens/s over a sliding window (default 10 s,
 *   or since the first sample when younger); a server with nothing generated for a window reports 0.
 * - `prometheusText` renders every metric with `# HELP` and `# TYPE` lines; counters end in
 *   `_total`; label values are fixed strings (no request data ever becomes a label).
 */
import type { SchedulerStats } from '../infer/scheduler.js';
import type { KvPoolStats } from '../infer/kv-blocks.js';
import type { PrefixCacheStats } from '../infer/prefix-cache.js';

/** Tokens/s over a sliding window of a monotonic counter. */
export class TokenRate {
  private readonly samples: { t: number; n: number }[] = [];
  constructor(private readonly windowMs = 10_000) {}

  /** Records the counter's value at time t (ms); samples closer than 100 ms to the one before the last are merged. */
  note(t: number, n: number): void {
    const s = this.samples, k = s.length;
    if (k >= 2 && t - s[k - 2]!.t < 100) s[k - 1] = { t, n };
    else s.push({ t, n });
    // Keep one sample at or before the window's start as the anchor.
    while (s.length > 2 && t - s[1]!.t >= this.windowMs) s.shift();
  }

  /** Tokens/s from the window's anchor (or the first sample, when younger) to `n` at time t. */
  rate(t: number, n: number): number {
    const s = this.samples;
    let a = s[0];
    for (let i = 1; i < s.length && t - s[i]!.t >= this.windowMs; i++) a = s[i];
    if (!a || t - a.t < 1) return 0;
    return ((n - a.n) * 1000) / (t - a.t);
  }
}

/** A Prometheus histogram (cumulative buckets, sum, count) of seconds. */
export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly bounds: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }
  observe(x: number): void {
    for (let i = 0; i < this.bounds.length; i++) if (x <= this.bounds[i]!) this.counts[i]!++;
    this.sum += x;
    this.count++;
  }
}

/** Everything /metrics reports. */
export interface MetricsSnapshot {
  engine: SchedulerStats;
  tokensPerSecond: number;
  kv: KvPoolStats;
  prefix: PrefixCacheStats | null;
  requests: { completed: number; cancelled: number; errors: number };
  rejected: { queueFull: number; kvFull: number };
  /** Seconds from a request's arrival to its first token, and to its end. */
  ttft: Histogram; latency: Histogram;
}

/** Prometheus text format (one HELP/TYPE block per metric). */
export function prometheusText(m: MetricsSnapshot): string {
  const out: string[] = [];
  const metric = (name: string, type: 'gauge' | 'counter', help: string, values: Array<[string, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of values) out.push(`${name}${labels} ${Number.isFinite(v) ? v : 0}`);
  };
  const e = m.engine, kv = m.kv;
  metric('frugal_requests_running', 'gauge', 'Sequences in the running batch.', [['', e.running]]);
  metric('frugal_requests_waiting', 'gauge', 'Requests waiting for a batch slot or KV blocks.', [['', e.waiting]]);
  metric('frugal_batch_size', 'gauge', 'Rows decoded in the last engine step (0 when idle).', [['', e.lastBatch]]);
  metric('frugal_batch_size_peak', 'gauge', 'Most rows decoded in one engine step since start.', [['', e.peakBatch]]);
  metric('frugal_max_batch', 'gauge', 'Configured maximum batch (--max-batch).', [['', e.maxBatch]]);
  metric('frugal_decode_rows_per_pass', 'gauge', 'Most rows one decode pass carries on this backend (a larger batch takes several passes).', [['', Number.isFinite(e.rowsPerPass) ? e.rowsPerPass : e.maxBatch]]);
  metric('frugal_tokens_per_second', 'gauge', 'Generated tokens per second over the last 10 s.', [['', m.tokensPerSecond]]);
  metric('frugal_generation_tokens_total', 'counter', 'Tokens generated.', [['', e.generatedTokens]]);
  metric('frugal_prefill_tokens_total', 'counter', 'Prompt positions computed by prefill (cache hits excluded).', [['', e.prefillTokens]]);
  metric('frugal_engine_steps_total', 'counter', 'Engine steps.', [['', e.steps]]);
  metric('frugal_decode_passes_total', 'counter', 'Batched decode passes.', [['', e.decodePasses]]);
  metric('frugal_decode_rows_total', 'counter', 'Rows over all decode passes (rows / passes = mean batch).', [['', e.decodeRows]]);
  metric('frugal_requests_total', 'counter', 'Finished requests by outcome.', [
    ['{outcome="completed"}', m.requests.completed], ['{outcome="cancelled"}', m.requests.cancelled], ['{outcome="error"}', m.requests.errors]]);
  metric('frugal_requests_rejected_total', 'counter', 'Requests refused for capacity (429 queue_full, 503 kv_cache_full).', [
    ['{reason="queue_full"}', m.rejected.queueFull], ['{reason="kv_cache_full"}', m.rejected.kvFull]]);
  metric('frugal_kv_blocks_total', 'gauge', 'KV cache blocks in the pool.', [['', kv.totalBlocks]]);
  metric('frugal_kv_block_bytes', 'gauge', 'Bytes per KV block.', [['', kv.blockBytes]]);
  metric('frugal_kv_blocks', 'gauge', 'KV blocks by use: reserved (worst case of running requests), allocated (held by them), prefix (prefix cache), free.', [
    ['{state="reserved"}', kv.reservedBlocks], ['{state="allocated"}', kv.allocatedBlocks], ['{state="prefix"}', kv.prefixBlocks], ['{state="free"}', kv.freeBlocks]]);
  metric('frugal_kv_cache_usage_ratio', 'gauge', 'Share of KV blocks in use (allocated + prefix) / total.', [['', (kv.allocatedBlocks + kv.prefixBlocks) / kv.totalBlocks]]);
  const hist = (name: string, help: string, h: Histogram): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    h.bounds.forEach((b, i) => out.push(`${name}_bucket{le="${b}"} ${h.counts[i]}`));
    out.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
  };
  hist('frugal_time_to_first_token_seconds', 'Seconds from a request\'s arrival to its first generated token.', m.ttft);
  hist('frugal_request_latency_seconds', 'Seconds from a request\'s arrival to its last token.', m.latency);
  if (m.prefix) {
    metric('frugal_prefix_cache_bytes', 'gauge', 'Bytes of latent rows in the prefix cache.', [['', m.prefix.bytes]]);
    metric('frugal_prefix_cache_tokens', 'gauge', 'Tokens held by the prefix cache.', [['', m.prefix.tokens]]);
    metric('frugal_prefix_cache_lookups_total', 'counter', 'Prefix cache lookups.', [['', m.prefix.lookups]]);
    metric('frugal_prefix_cache_hit_tokens_total', 'counter', 'Prompt tokens served from the prefix cache.', [['', m.prefix.hitTokens]]);
    metric('frugal_prefix_cache_evictions_total', 'counter', 'Prefix cache entries evicted.', [['', m.prefix.evictions]]);
  }
  return out.join('\n') + '\n';
}
