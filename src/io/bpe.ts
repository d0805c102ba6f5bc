/**
 * Byte-level BPE trainer that writes a Hugging Face `tokenizer.json` object (browser-safe).
 *
 * Contract: `trainBpe(texts, { vocabSize })` returns a plain object in the `tokenizer.json` layout
 * (model.type "BPE", ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel decoder, special
 * tokens in `added_tokens`) that `@huggingface/tokenizers` and the Rust `tokenizers` load. Every
 * string round-trips exactly, because the 256 byte symbols are always in the vocabulary.
 * Ids: special tokens first (0..k-1), then the 256 bytes in byte order, then merged tokens in
 * merge order. Training is deterministic: equal counts break ties by the smaller (left, right) id.
 *
 * Algorithm: count pre-token (word) frequencies once, then merge on the word table, keeping a
 * pair -> count map, a pair -> word index and a max-heap with lazy invalidation, so each merge
 * touches only the words that contain the merged pair.
 */

/** Options for {@link trainBpe}. */
export interface TrainBpeOptions {
  /** Target vocabulary size including special tokens and the 256 byte tokens (>= 256 + specials). */
  vocabSize: number;
  /** A pair must occur at least this often (weighted by word count) to be merged. Default 2. */
  minFrequency?: number;
  /** Special tokens, given ids 0..k-1. Default `['<|endoftext|>']`. */
  specialTokens?: string[];
  /** Called every few merges and at the end with (merges done, merges wanted). */
  onProgress?: (merges: number, total: number) => void;
}

/** The GPT-2 pre-tokenizer regex, identical to the one `@huggingface/tokenizers` uses for ByteLevel. */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible byte -> printable character map (index = byte value). */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out = new Array<string>(256);
  for (let i = 0; i < 256; i++) out[bs[i]!] = String.fromCharCode(cs[i]!);
  return out;
})();

const PAIR_SHIFT = 1 << 20; // pair key = left * 2^20 + right; ids stay below 2^20
const pairKey = (a: number, b: number): number => a * PAIR_SHIFT + b;

/** Max-heap of [count, key] ordered by count desc, then key asc (smaller ids win ties). */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number { return this.counts.length; }
  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!, cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }
  private swap(i: number, j: number): void {
    const c = this.counts[i]!; this.counts[i] = this.counts[j]!; this.counts[j] = c;
    const k = this.keys[i]!; this.keys[i] = this.keys[j]!; this.keys[j] = k;
  }
  push(count: number, key: number): void {
    this.counts.push(count); this.keys.push(key);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p); i = p;
    }
  }
  pop(): [number, number] | undefined {
    const n = this.counts.length;
    if (n === 0) return undefined;
    const top: [number, number] = [this.counts[0]!, this.keys[0]!];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    if (n > 1) {
      this.counts[0] = lastC; this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < n - 1 && this.above(l, m)) m = l;
        if (r < n - 1 && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m); i = m;
      }
    }
    return top;
  }
}

/** Counts GPT-2 pre-tokens over all texts: word (as UTF-8 bytes) -> frequency. */
function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const text of texts) {
    if (typeof text !== 'string') throw new TypeError(`trainBpe: every text must be a string, got ${typeof text}`);
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * Trains a byte-level BPE tokenizer and returns it as a `tokenizer.json` object.
 * Throws RangeError when vocabSize cannot hold the special tokens and the 256 bytes.
 */
export function trainBpe(texts: Iterable<string>, opts: TrainBpeOptions): object {
  const specials = opts.specialTokens ?? ['<|endoftext|>'];
  const minFrequency = Math.max(1, opts.minFrequency ?? 2);
  const base = specials.length + 256;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < base || opts.vocabSize >= PAIR_SHIFT) {
    throw new RangeError(`trainBpe: vocabSize must be an integer in [${base}, ${PAIR_SHIFT - 1}] (256 bytes + ${specials.length} special tokens), got ${opts.vocabSize}`);
  }
  if (new Set(specials).size !== specials.length) throw new RangeError(`trainBpe: duplicate special tokens in ${JSON.stringify(specials)}`);

  // Symbol table: specials, then bytes, then merged tokens.
  const idToToken: string[] = [...specials, ...BYTE_TO_CHAR];
  const tokenToId = new Map<string, number>();
  idToToken.forEach((t, i) => { if (!tokenToId.has(t)) tokenToId.set(t, i); });
  const byteBase = specials.length;

  // Word table: each distinct pre-token as a symbol-id array with its frequency.
  const wordCounts = countWords(texts);
  const encoder = new TextEncoder();
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, c] of wordCounts) {
    const bytes = encoder.encode(w);
    if (bytes.length < 2) continue; // a single byte never takes part in a merge
    words.push(Array.from(bytes, (b) => byteBase + b));
    freqs.push(c);
  }
  wordCounts.clear();

  // Pair statistics.
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPair = (key: number, delta: number, wi: number): void => {
    pairCount.set(key, (pairCount.get(key) ?? 0) + delta);
    if (delta > 0) {
      let s = pairWords.get(key);
      if (!s) pairWords.set(key, (s = new Set()));
      s.add(wi);
    }
  };
  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi]!, f = freqs[wi]!;
    for (let i = 0; i + 1 < w.length; i++) addPair(pairKey(w[i]!, w[i + 1]!), f, wi);
  }
  const heap = new PairHeap();
  for (const [key, c] of pairCount) heap.push(c, key);

  const wanted = opts.vocabSize - idToToken.length;
  const merges: string[] = [];
  const mergedKeys = new Set<number>();
  let added = 0;
  const progressEvery = Math.max(1, Math.floor(wanted / 100));
  while (added < wanted && heap.size > 0) {
    const [count, key] = heap.pop()!;
    const current = pairCount.get(key) ?? 0;
    if (current !== count) { // stale heap entry: requeue with the live count
      if (current > 0) heap.push(current, key);
      continue;
    }
    if (count < minFrequency) break;
    const a = Math.floor(key / PAIR_SHIFT), b = key % PAIR_SHIFT;
    const merged = idToToken[a]! + idToToken[b]!;
    let id = tokenToId.get(merged);
    if (id === undefined) {
      id = idToToken.length;
      idToToken.push(merged);
      tokenToId.set(merged, id);
      added++;
    }
    if (!mergedKeys.has(key)) merges.push(`${idToToken[a]!} ${idToToken[b]!}`); // a pair can re-form via a reused token
    mergedKeys.add(key);

    // Rewrite every word holding (a, b): remove its old pairs, merge, add its new pairs.
    const holders = pairWords.get(key);
    pairWords.delete(key);
    for (const wi of holders ?? []) {
      const w = words[wi]!, f = freqs[wi]!;
      let found = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) { found = true; break; }
      if (!found) continue;
      for (let i = 0; i + 1 < w.length; i++) addPair(pairKey(w[i]!, w[i + 1]!), -f, wi);
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { out.push(id); i++; } else out.push(w[i]!);
      }
      words[wi] = out;
      for (let i = 0; i + 1 < out.length; i++) addPair(pairKey(out[i]!, out[i + 1]!), f, wi);
      // Requeue pairs created by this merge; counts that only fell are fixed lazily on pop.
      for (let i = 0; i + 1 < out.length; i++) {
        if (out[i] === id || out[i + 1] === id) {
          const k = pairKey(out[i]!, out[i + 1]!);
          heap.push(pairCount.get(k)!, k);
        }
      }
    }
    pairCount.delete(key);
    if (opts.onProgress && merges.length % progressEvery === 0) opts.onProgress(added, wanted);
  }
  opts.onProgress?.(added, wanted);
  return buildTokenizerJson(specials, idToToken, merges);
}

/** Assembles the `tokenizer.json` object (the layout of the Rust `tokenizers` serializer). */
function buildTokenizerJson(specials: string[], idToToken: string[], merges: string[]): object {
  const vocab: Record<string, number> = {};
  idToToken.forEach((t, i) => { if (!(t in vocab)) vocab[t] = i; });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { ...byteLevel, trim_offsets: false },
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}
