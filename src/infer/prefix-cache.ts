/**
 * Prefix cache across requests: a radix tree over token ids whose nodes hold, per token, one row of
 * cached state (for MLA absorb: the latent `[ĉ | k_pe]` of every layer, `rowWidth` floats). A new
 * request takes the longest cached prefix of its prompt instead of recomputing it.
 *
 * Contract:
 * - `match(tokens, maxLen)` returns the longest cached prefix (at most maxLen tokens) with its rows
 *   copied out, and pins every node on that path (reference count) until `release(handle)`.
 * - `insert(tokens, rowsAt)` adds the uncached suffix; edges split where prompts diverge.
 * - Memory is bounded by `budgetBytes`: least-recently-used leaves with no references are evicted
 *   (a pinned path is never evicted, so concurrent requests sharing a prefix are safe). `resize`
 *   changes the budget at run time (a shared KV block pool, src/infer/kv-blocks.ts).
 * - `rowsFromCache` / `rowsToCache` copy rows out of and into a model `KVCache`; the `spec*`
 *   pair adds the MTP layer's latents (shifted one position) for speculative decoding.
 * Browser-safe (no node imports).
 */
import type { KVCache } from '../model/deepseek.js';
import type { DeepSeekConfig } from '../model/config.js';

interface Node {
  /** Edge label: the token ids from the parent to this node. */
  edge: Int32Array;
  /** edge.length rows of rowWidth floats. */
  rows: Float32Array;
  children: Map<number, Node>;
  parent: Node | null;
  refs: number;
  lastUsed: number;
}

/** A matched prefix: its length, its rows ([length, rowWidth] flat), and the pin to release. */
export interface PrefixHandle {
  readonly length: number;
  readonly rows: Float32Array;
  readonly tokens: readonly number[];
  released: boolean;
}

/** Counters for monitoring. */
export interface PrefixCacheStats { bytes: number; nodes: number; tokens: number; evictions: number; hits: number; hitTokens: number; lookups: number }

/** Floats per token of the absorb latent over the main model's layers. */
export function latentRowWidth(cfg: DeepSeekConfig): number {
  return cfg.numHiddenLayers * (cfg.kvLoraRank + cfg.qkRopeHeadDim);
}

/** Copies positions [from, to) of batch row `b` of the first `layers` cache layers into [n, layers·D] rows. */
export function rowsFromCache(cache: KVCache, from: number, to: number, layers = cache.cfg.numHiddenLayers, b = 0): Float32Array {
  const D = cache.valuesPerToken();
  const W = layers * D, n = to - from;
  const out = new Float32Array(n * W);
  for (let l = 0; l < layers; l++) {
    const buf = cache.layers[l]!.a;
    for (let t = 0; t < n; t++) out.set(buf.subarray((b * cache.capacity + from + t) * D, (b * cache.capacity + from + t + 1) * D), t * W + l * D);
  }
  return out;
}

/** Writes rows [n, layers·D] into positions [start, start+n) of batch row `b` of the cache. */
export function rowsToCache(cache: KVCache, start: number, rows: Float32Array, layers = cache.cfg.numHiddenLayers, b = 0): void {
  const D = cache.valuesPerToken();
  const W = layers * D, n = rows.length / W;
  if (start + n > cache.capacity) throw new Error(`prefix cache: ${start + n} rows exceed the KV cache capacity ${cache.capacity}`);
  for (let l = 0; l < layers; l++) {
    const buf = cache.layers[l]!.a;
    for (let t = 0; t < n; t++) buf.set(rows.subarray(t * W + l * D, t * W + (l + 1) * D), (b * cache.capacity + start + t) * D);
  }
}

/**
 * Floats per token of a prefix-cache row: the main layers' latents, plus `mtpLayers` MTP layers'
 * latents for speculative decoding (`specRowsFromCache`).
 */
export function prefixRowWidth(cfg: DeepSeekConfig, mtpLayers = 0): number {
  return (cfg.numHiddenLayers + mtpLayers) * (cfg.kvLoraRank + cfg.qkRopeHeadDim);
}

/**
 * Rows for speculative decoding: row t holds the main layers' latents of position t and the next
 * `mtpLayers` cache layers' (MTP) latents of position t − 1 (zeros at t = 0). The MTP layer at
 * position i reads token i + 1, so shifted this way a prefix's rows depend on its own tokens only.
 */
export function specRowsFromCache(cache: KVCache, from: number, to: number, mtpLayers: number): Float32Array {
  const L = cache.cfg.numHiddenLayers, D = cache.valuesPerToken(), W = (L + mtpLayers) * D, n = to - from;
  const out = new Float32Array(n * W);
  for (let l = 0; l < L + mtpLayers; l++) {
    const buf = cache.layers[l]!.a, shift = l < L ? 0 : 1;
    for (let t = Math.max(0, shift - from); t < n; t++) out.set(buf.subarray((from + t - shift) * D, (from + t - shift + 1) * D), t * W + l * D);
  }
  return out;
}

/** Writes `specRowsFromCache` rows back: main latents to [start, start+n), MTP latents to [start−1, start+n−1). */
export function specRowsToCache(cache: KVCache, start: number, rows: Float32Array, mtpLayers: number): void {
  const L = cache.cfg.numHiddenLayers, D = cache.valuesPerToken(), W = (L + mtpLayers) * D, n = rows.length / W;
  if (start + n > cache.capacity) throw new Error(`prefix cache: ${start + n} rows exceed the KV cache capacity ${cache.capacity}`);
  for (let l = 0; l < L + mtpLayers; l++) {
    const buf = cache.layers[l]!.a, shift = l < L ? 0 : 1;
    for (let t = Math.max(0, shift - start); t < n; t++) buf.set(rows.subarray(t * W + l * D, t * W + (l + 1) * D), (start + t - shift) * D);
  }
}

/** Radix tree of cached prefixes with LRU eviction under a byte budget. */
export class PrefixCache {
  private readonly root: Node = { edge: new Int32Array(0), rows: new Float32Array(0), children: new Map(), parent: null, refs: 0, lastUsed: 0 };
  private readonly nodes = new Set<Node>();
  private tick = 0;
  private bytesUsed = 0;
  private counters = { evictions: 0, hits: 0, hitTokens: 0, lookups: 0 };
  /** Pinned paths of live handles as (node, tokens used) segments; kept right across splits. */
  private readonly pins = new Map<PrefixHandle, [Node, number][]>();

  /** rowWidth: floats per token; budgetBytes: the most bytes of rows kept (float32 = 4 bytes). */
  constructor(readonly rowWidth: number, public budgetBytes: number) {
    if (!(rowWidth > 0) || !Number.isInteger(rowWidth)) throw new RangeError(`prefix cache: rowWidth must be a positive integer, got ${rowWidth}`);
    if (!(budgetBytes >= 0)) throw new RangeError(`prefix cache: budget must be >= 0 bytes, got ${budgetBytes}`);
  }

  /** Longest cached prefix of tokens (at most maxLen), rows copied out; pinned until release. */
  match(tokens: readonly number[], maxLen = tokens.length): PrefixHandle {
    this.counters.lookups++;
    const W = this.rowWidth;
    const limit = Math.min(maxLen, tokens.length);
    const segs: [Node, number][] = [];
    let node = this.root, pos = 0;
    const now = ++this.tick;
    while (pos < limit) {
      const child = node.children.get(tokens[pos]!);
      if (!child) break;
      let k = 0;
      while (k < child.edge.length && pos + k < limit && child.edge[k] === tokens[pos + k]) k++;
      segs.push([child, k]);
      pos += k;
      if (k < child.edge.length) break;
      node = child;
    }
    const rows = new Float32Array(pos * W);
    let off = 0;
    for (const [n, k] of segs) {
      n.refs++;
      n.lastUsed = now;
      rows.set(n.rows.subarray(0, k * W), off);
      off += k * W;
    }
    if (pos > 0) { this.counters.hits++; this.counters.hitTokens += pos; }
    const h: PrefixHandle = { length: pos, rows, tokens: tokens.slice(0, pos), released: false };
    this.pins.set(h, segs);
    return h;
  }

  /** Unpins a handle's path (idempotent). */
  release(h: PrefixHandle): void {
    if (h.released) return;
    h.released = true;
    for (const [n] of this.pins.get(h) ?? []) n.refs--;
    this.pins.delete(h);
    this.evict();
  }

  /**
   * Caches tokens[0, n): rowsAt(from, to) must return the rows of positions [from, to) (called only
   * for the part not cached yet). Evicts afterwards to stay within budget.
   */
  insert(tokens: readonly number[], rowsAt: (from: number, to: number) => Float32Array): void {
    const W = this.rowWidth;
    let node = this.root, pos = 0;
    const now = ++this.tick;
    while (pos < tokens.length) {
      const child = node.children.get(tokens[pos]!);
      if (!child) {
        const rows = rowsAt(pos, tokens.length);
        if (rows.length !== (tokens.length - pos) * W) throw new Error(`prefix cache: rowsAt(${pos}, ${tokens.length}) gave ${rows.length} floats, expected ${(tokens.length - pos) * W}`);
        const leaf: Node = { edge: Int32Array.from(tokens.slice(pos)), rows: rows.slice(), children: new Map(), parent: node, refs: 0, lastUsed: now };
        node.children.set(tokens[pos]!, leaf);
        this.nodes.add(leaf);
        this.bytesUsed += leaf.rows.byteLength;
        break;
      }
      let k = 0;
      while (k < child.edge.length && pos + k < tokens.length && child.edge[k] === tokens[pos + k]) k++;
      if (k < child.edge.length) this.split(child, k);
      child.lastUsed = now;
      pos += k;
      node = child;
    }
    this.evict();
  }

  /**
   * Changes the byte budget (a shared memory pool lends the cache what running sequences do not
   * use) and evicts least-recently-used unpinned leaves down to it. Returns the bytes now held
   * (above the budget only while pinned paths need more).
   */
  resize(budgetBytes: number): number {
    if (!(budgetBytes >= 0)) throw new RangeError(`prefix cache: budget must be >= 0 bytes, got ${budgetBytes}`);
    this.budgetBytes = budgetBytes;
    this.evict();
    return this.bytesUsed;
  }

  /** Bytes of rows held now. */
  get bytes(): number { return this.bytesUsed; }

  /** Current counters. */
  stats(): PrefixCacheStats {
    let tokens = 0;
    for (const n of this.nodes) tokens += n.edge.length;
    return { bytes: this.bytesUsed, nodes: this.nodes.size, tokens, ...this.counters };
  }

  /** Tokens of every cached leaf path (for tests and debugging). */
  paths(): number[][] {
    const out: number[][] = [];
    const rec = (n: Node, acc: number[]): void => {
      const p = [...acc, ...n.edge];
      if (n.children.size === 0 && n !== this.root) out.push(p);
      for (const c of n.children.values()) rec(c, p);
    };
    rec(this.root, []);
    return out;
  }

  /** Keeps the first k tokens in `n`, moving the rest (and n's children) into a new child. */
  private split(n: Node, k: number): void {
    const W = this.rowWidth;
    const lower: Node = {
      edge: n.edge.slice(k), rows: n.rows.slice(k * W), children: n.children, parent: n, refs: 0, lastUsed: n.lastUsed,
    };
    // Handles that used more than k tokens of n now also pin the lower half.
    for (const segs of this.pins.values()) {
      const i = segs.findIndex(([s, used]) => s === n && used > k);
      if (i < 0) continue;
      const used = segs[i]![1];
      segs.splice(i, 1, [n, k], [lower, used - k]);
      lower.refs++;
    }
    for (const c of lower.children.values()) c.parent = lower;
    n.edge = n.edge.slice(0, k);
    n.rows = n.rows.slice(0, k * W);
    n.children = new Map([[lower.edge[0]!, lower]]);
    this.nodes.add(lower);
  }

  /** Drops least-recently-used unreferenced leaves until within budget. */
  private evict(): void {
    while (this.bytesUsed > this.budgetBytes) {
      let victim: Node | null = null;
      for (const n of this.nodes) if (n.children.size === 0 && n.refs === 0 && (!victim || n.lastUsed < victim.lastUsed)) victim = n;
      if (!victim) return; // everything left is pinned
      victim.parent!.children.delete(victim.edge[0]!);
      this.nodes.delete(victim);
      this.bytesUsed -= victim.rows.byteLength;
      this.counters.evictions++;
    }
  }
}
