/**
 * Token sampling for generation: greedy (argmax, lowest id on ties), or temperature + top-k +
 * top-p (nucleus) sampling from a seeded RNG, so a (seed, logits) pair always gives the same id.
 * Also `StopMatcher`, which finds stop sequences in streamed text and holds back a possible partial
 * match so no stop text ever reaches the client. Browser-safe.
 */

/** Sampling settings; `greedy` or `temperature: 0` means argmax. */
export interface SamplingOptions {
  greedy?: boolean;
  /** Softmax temperature (> 0); default 1. */
  temperature?: number;
  /** Keep only the k most likely ids (0 or undefined: all). */
  topK?: number;
  /** Keep the smallest set of ids whose probability reaches p (1 or undefined: all). */
  topP?: number;
  /** RNG seed (default: from Math.random). */
  seed?: number;
}

/** Mulberry32: a small, fast, seedable 32-bit PRNG returning floats in [0, 1). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value in logits[off, off+V) (first on ties). */
export function argmax(logits: ArrayLike<number>, off = 0, V = logits.length - off): number {
  let best = 0;
  for (let j = 1; j < V; j++) if (logits[off + j]! > logits[off + best]!) best = j;
  return best;
}

/** Validates sampling options; throws a RangeError naming the bad field. */
export function checkSampling(o: SamplingOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new RangeError(`temperature must be a finite number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw new RangeError(`top_k must be an integer >= 0, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) throw new RangeError(`top_p must be in (0, 1], got ${o.topP}`);
  if (o.seed !== undefined && !Number.isInteger(o.seed)) throw new RangeError(`seed must be an integer, got ${o.seed}`);
}

/** True when the options reduce to argmax. */
export function isGreedy(o: SamplingOptions): boolean {
  return o.greedy === true || o.temperature === 0 || o.topK === 1;
}

/** A sampler bound to options and its own RNG stream. */
export class Sampler {
  private readonly rand: () => number;
  constructor(readonly opts: SamplingOptions = {}) {
    checkSampling(opts);
    this.rand = seededRandom(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /** Picks an id from logits[off, off+V). */
  sample(logits: ArrayLike<number>, off: number, V: number): number {
    if (isGreedy(this.opts)) return argmax(logits, off, V);
    const { ids, p, n, total } = this.candidates(logits, off, V);
    let r = this.rand() * total;
    for (let i = 0; i < n; i++) { r -= p[i]!; if (r < 0) return ids[i]!; }
    return ids[n - 1]!;
  }

  /**
   * The distribution `sample` draws from, dense over ids [0, V) into out (zero outside top-k /
   * top-p; greedy: one-hot at the argmax). For speculative decoding's accept/resample rule.
   */
  probs(logits: ArrayLike<number>, off: number, V: number, out: Float64Array): void {
    out.fill(0, 0, V);
    if (isGreedy(this.opts)) { out[argmax(logits, off, V)] = 1; return; }
    const { ids, p, n, total } = this.candidates(logits, off, V);
    for (let i = 0; i < n; i++) out[ids[i]!] = p[i]! / total;
  }

  /** Draws an id from a dense distribution over [0, V) (weights need not sum to 1). */
  sampleFrom(probs: ArrayLike<number>, V: number): number {
    let total = 0, last = 0;
    for (let j = 0; j < V; j++) if (probs[j]! > 0) { total += probs[j]!; last = j; }
    let r = this.rand() * total;
    for (let j = 0; j < V; j++) { if (probs[j]! > 0) { r -= probs[j]!; if (r < 0) return j; } }
    return last;
  }

  /** A uniform draw in [0, 1) from this sampler's stream. */
  uniform(): number { return this.rand(); }

  /** Ids by falling logit (ties: lower id) cut to top-k / top-p, their unnormalised weights, and the weights' sum. */
  private candidates(logits: ArrayLike<number>, off: number, V: number): { ids: ArrayLike<number>; p: ArrayLike<number>; n: number; total: number } {
    const temp = this.opts.temperature ?? 1;
    const ids = this.order(logits, off, V);
    const k = this.opts.topK ?? 0;
    const m = k > 0 && k < V ? k : V;
    if (this.pBuf.length < m) this.pBuf = new Float64Array(Math.max(m, 2 * this.pBuf.length));
    const p = this.pBuf;
    const max = logits[off + ids[0]!]!;
    let total = 0;
    for (let i = 0; i < m; i++) { p[i] = Math.exp((logits[off + ids[i]!]! - max) / temp); total += p[i]!; }
    const topP = this.opts.topP ?? 1;
    let n = m;
    if (topP < 1) {
      let acc = 0;
      for (n = 0; n < m; ) { acc += p[n++]! / total; if (acc >= topP) break; }
      total = 0;
      for (let i = 0; i < n; i++) total += p[i]!;
    }
    return { ids, p, n, total };
  }

  /**
   * Ids [0, V) by falling logits[off + id], ties by rising id (the order a comparator sort with
   * `b − a || a − b` gives). Float32 logits are ordered by a stable LSD radix sort (4 passes of 8
   * bits) of their order-preserving bits (−0 as +0), ids starting in rising order, instead of
   * ~V·log V calls of a JavaScript comparator (~0.4 ms per token at V = 2,048). Reused buffers.
   */
  private order(logits: ArrayLike<number>, off: number, V: number): Int32Array {
    if (this.idBuf.length < V) { this.idBuf = new Int32Array(V); this.idTmp = new Int32Array(V); this.keyBuf = new Uint32Array(V); this.keyTmp = new Uint32Array(V); }
    let ids = this.idBuf.subarray(0, V);
    if (logits instanceof Float32Array) {
      let keys = this.keyBuf.subarray(0, V), ids2 = this.idTmp.subarray(0, V), keys2 = this.keyTmp.subarray(0, V);
      const bits = new Uint32Array(logits.buffer, logits.byteOffset + 4 * off, V);
      for (let j = 0; j < V; j++) {
        let u = bits[j]!;
        if (u === 0x80000000) u = 0;  // −0 ties with +0
        // Ascending order bits, complemented: rising key = falling logit.
        keys[j] = ~(u & 0x80000000 ? ~u : u | 0x80000000) >>> 0;
        ids[j] = j;
      }
      const count = this.counts;
      for (let shift = 0; shift < 32; shift += 8) {
        count.fill(0);
        for (let j = 0; j < V; j++) count[(keys[j]! >>> shift) & 255]!++;
        for (let c = 0, at = 0; c < 256; c++) { const n = count[c]!; count[c] = at; at += n; }
        for (let j = 0; j < V; j++) { const k = keys[j]!, d = count[(k >>> shift) & 255]!++; keys2[d] = k; ids2[d] = ids[j]!; }
        [keys, keys2] = [keys2, keys];
        [ids, ids2] = [ids2, ids];
      }
      return ids;  // 4 passes: back in idBuf
    }
    const all = Array.from({ length: V }, (_, j) => j);
    all.sort((a, b) => logits[off + b]! - logits[off + a]! || a - b);
    ids.set(all);
    return ids;
  }

  private idBuf = new Int32Array(0);
  private idTmp = new Int32Array(0);
  private keyBuf = new Uint32Array(0);
  private keyTmp = new Uint32Array(0);
  private readonly counts = new Int32Array(256);
  private pBuf = new Float64Array(0);
}

/**
 * Speculative sampling's accept/resample rule (Leviathan et al. 2023; Chen et al. 2023): a draft d
 * drawn from q is kept with probability min(1, p(d)/q(d)); otherwise the token is drawn from
 * max(0, p − q), renormalised. The emitted token is then distributed exactly as p. p and q are
 * dense over [0, V) and sum to 1, q(d) > 0; p is overwritten with the residual on rejection.
 */
export function acceptOrResample(p: Float64Array, q: Float64Array, draft: number, V: number, sampler: Sampler): { id: number; accepted: boolean } {
  if (sampler.uniform() * q[draft]! < p[draft]!) return { id: draft, accepted: true };
  for (let j = 0; j < V; j++) p[j] = Math.max(0, p[j]! - q[j]!);
  return { id: sampler.sampleFrom(p, V), accepted: false };
}

/**
 * Finds stop sequences in streamed text. `push(text)` returns the text that is safe to emit now
 * (nothing that could be the start of a stop sequence is released early) and whether a stop
 * sequence completed; `flush()` releases what is held back once generation ends for another reason.
 */
export class StopMatcher {
  private held = '';
  stopped = false;
  constructor(private readonly stops: readonly string[]) {}

  push(text: string): { emit: string; stopped: boolean } {
    if (this.stopped) return { emit: '', stopped: true };
    const buf = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      if (!s) continue;
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) { this.stopped = true; this.held = ''; return { emit: buf.slice(0, cut), stopped: true }; }
    // Hold back the longest suffix of buf that is a proper prefix of some stop sequence.
    let keep = 0;
    for (const s of this.stops) for (let n = Math.min(s.length - 1, buf.length); n > keep; n--) if (buf.endsWith(s.slice(0, n))) { keep = n; break; }
    this.held = buf.slice(buf.length - keep);
    return { emit: buf.slice(0, buf.length - keep), stopped: false };
  }

  flush(): string {
    const h = this.stopped ? '' : this.held;
    this.held = '';
    return h;
  }
}
