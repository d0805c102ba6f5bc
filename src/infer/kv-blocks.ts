/**
 * Latent KV-cache memory in fixed-size blocks, shared by the running sequences and the prefix
 * cache: the block manager of a continuous-batching server (vLLM's idea, sized for this engine).
 *
 * Contract:
 * - The pool has `totalBlocks` blocks of `blockTokens` positions; a block is the bytes of that many
 *   latent rows of a sequence cache (every main layer, plus the MTP layers a speculative server
 *   keeps). Nothing in the pool is allocated before a sequence needs it.
 * - `lease(tokens)` admits a sequence: it reserves the blocks of the sequence's worst case (prompt
 *   + max tokens + 2) or returns null while other leases' reservations leave too few (the caller
 *   waits, then answers 503). A request larger than the whole pool can never fit:
 *   `fits(tokens)` says so up front (the server answers 400).
 * - Reserved blocks are allocated as the sequence grows (`KvLease.ensure`, whole blocks, at least
 *   a quarter more each time, never past the reservation), so a growth never fails and no
 *   out-of-memory can come from the cache.
 * - The prefix cache lives in the blocks no sequence holds (at most its own budget): when a
 *   sequence grows, least-recently-used prefix entries are evicted first, and when a lease is
 *   released the prefix cache may grow again. Allocated + prefix blocks never pass the total.
 * - `release()` returns a lease's blocks at once (finish, cancel, error); it is idempotent.
 * - Layout: a sequence's blocks form one contiguous range of rows, because RowDecoder's attention
 *   reads a sequence's latent rows as one range (the segment API); growing moves the rows into a
 *   larger range (amortised: the range grows geometrically). A prefix-cache hit copies rows into
 *   the sequence (the tree keeps its own rows), as before. Browser-safe.
 */
import { KVCache } from '../model/deepseek.js';
import type { DeepSeekConfig } from '../model/config.js';
import type { KvSource } from './generate.js';
import type { PrefixCache } from './prefix-cache.js';

export interface KvPoolOptions {
  cfg: DeepSeekConfig;
  /** Bytes of latent cache for running sequences and the prefix cache together. */
  totalBytes: number;
  /** Positions per block (default 16). */
  blockTokens?: number;
  /** MTP cache layers each sequence keeps besides the main layers (1 with speculative decoding). */
  extraLayers?: number;
}

/** Pool occupancy, in blocks (and the bytes of one block). */
export interface KvPoolStats {
  blockTokens: number; blockBytes: number; totalBlocks: number;
  /** Worst-case blocks promised to running sequences. */
  reservedBlocks: number;
  /** Blocks running sequences hold now. */
  allocatedBlocks: number;
  /** Blocks the prefix cache's rows take (its bytes rounded up to blocks). */
  prefixBlocks: number;
  freeBlocks: number;
  leases: number;
}

export class KvBlockPool {
  readonly blockTokens: number;
  readonly blockBytes: number;
  readonly totalBlocks: number;
  readonly extraLayers: number;
  private reserved = 0;
  private allocated = 0;
  private readonly live = new Set<KvLease>();
  private prefix: PrefixCache | null = null;
  private prefixMax = 0;

  constructor(readonly o: KvPoolOptions) {
    const cfg = o.cfg;
    this.blockTokens = o.blockTokens ?? 16;
    this.extraLayers = o.extraLayers ?? 0;
    if (!(Number.isInteger(this.blockTokens) && this.blockTokens >= 1 && this.blockTokens <= 4096)) throw new RangeError(`kv pool: blockTokens must be an integer in [1, 4096], got ${o.blockTokens}`);
    const rowBytes = 4 * (cfg.numHiddenLayers + this.extraLayers) * (cfg.kvLoraRank + cfg.qkRopeHeadDim);
    this.blockBytes = rowBytes * this.blockTokens;
    if (!(o.totalBytes >= this.blockBytes)) throw new RangeError(`kv pool: ${o.totalBytes} bytes is less than one block (${this.blockBytes} bytes = ${this.blockTokens} tokens); raise the KV budget`);
    this.totalBlocks = Math.floor(o.totalBytes / this.blockBytes);
  }

  /** Blocks that hold `tokens` positions. */
  blocksFor(tokens: number): number { return Math.ceil(tokens / this.blockTokens); }

  /** True when a sequence needing `tokens` positions fits in the pool at all (with nothing else running). */
  fits(tokens: number): boolean { return this.blocksFor(tokens) <= this.totalBlocks; }

  /**
   * Lets a prefix cache use the blocks sequences do not hold, up to `maxBytes`; its budget follows
   * every allocation from now on.
   */
  attachPrefixCache(cache: PrefixCache, maxBytes: number): void {
    this.prefix = cache;
    this.prefixMax = maxBytes;
    this.rebalance();
  }

  /** True when `blocks` more blocks can be reserved now. */
  canReserve(blocks: number): boolean { return this.reserved + blocks <= this.totalBlocks; }

  /** Reserves the worst case of a sequence of at most `tokens` positions; null while the pool is fully promised. */
  lease(tokens: number): KvLease | null {
    const need = this.blocksFor(tokens);
    if (!this.fits(tokens) || this.reserved + need > this.totalBlocks) return null;
    this.reserved += need;
    const l = new KvLease(this, need);
    this.live.add(l);
    return l;
  }

  stats(): KvPoolStats {
    const prefixBlocks = this.prefix ? Math.ceil(this.prefix.bytes / this.blockBytes) : 0;
    return {
      blockTokens: this.blockTokens, blockBytes: this.blockBytes, totalBlocks: this.totalBlocks, reservedBlocks: this.reserved,
      allocatedBlocks: this.allocated, prefixBlocks, freeBlocks: Math.max(0, this.totalBlocks - this.allocated - prefixBlocks), leases: this.live.size,
    };
  }

  /** @internal A lease's allocation changed by `delta` blocks. */
  moved(delta: number): void {
    this.allocated += delta;
    this.rebalance();
  }

  /** @internal A lease ends. */
  ended(l: KvLease, reserved: number, allocated: number): void {
    if (!this.live.delete(l)) return;
    this.reserved -= reserved;
    this.moved(-allocated);
  }

  /** The prefix cache gets what sequences do not hold (evicting when that shrank). */
  private rebalance(): void {
    if (this.prefix) this.prefix.resize(Math.min(this.prefixMax, (this.totalBlocks - this.allocated) * this.blockBytes));
  }
}

/** One sequence's share of the pool: its reservation and the cache grown within it. */
export class KvLease implements KvSource {
  private blocks = 0;
  private ended = false;

  constructor(private readonly pool: KvBlockPool, readonly reservedBlocks: number) {}

  /** Blocks allocated now. */
  get allocatedBlocks(): number { return this.blocks; }

  /** A cache of at least `tokens` positions: `cache` itself when it is large enough, else a larger copy of it. */
  ensure(cache: KVCache | null, tokens: number, extraLayers: number): KVCache {
    if (this.ended) throw new Error('kv lease: used after release');
    const p = this.pool;
    if (cache && cache.capacity >= tokens) return cache;
    if (extraLayers !== p.extraLayers) throw new Error(`kv lease: the pool's blocks hold ${p.extraLayers} MTP layers, a cache with ${extraLayers} was asked for`);
    const need = p.blocksFor(tokens);
    if (need > this.reservedBlocks) throw new Error(`kv lease: ${tokens} positions need ${need} blocks, over the ${this.reservedBlocks} reserved for this sequence`);
    // Geometric growth (a quarter more, at least one block) keeps the copies amortised O(1) per token.
    const blocks = Math.min(this.reservedBlocks, Math.max(need, this.blocks + Math.max(1, this.blocks >> 2)));
    const next = new KVCache(p.o.cfg, 1, blocks * p.blockTokens, 'absorb', extraLayers);
    p.moved(blocks - this.blocks);
    this.blocks = blocks;
    if (cache) {
      for (let l = 0; l < next.layers.length; l++) next.layers[l]!.a.set(cache.layers[l]!.a);
      next.length = cache.length;
    }
    return next;
  }

  /** Returns every block (idempotent). */
  release(): void {
    if (this.ended) return;
    this.ended = true;
    this.pool.ended(this, this.reservedBlocks, this.blocks);
    this.blocks = 0;
  }
}
