/**
 * Training data as token streams (browser-safe): document packing, train/validation split by
 * document, a resumable batch sampler, and the unigram entropy baseline.
 *
 * Resume contract: a BatchSampler's batches are a pure function of (tokens, batch, seq, seed,
 * position). `state()` is `{ position, seed }`; `restore(state)` on a sampler over the same tokens
 * yields exactly the batches the original would have produced next.
 *
 * Sampling: the stream is cut into windows of seq+1 tokens starting every seq tokens (consecutive
 * windows share one token, so every token is a target once per epoch). Each epoch visits all
 * windows in a seeded random order, with a seeded start shift in [0, seq) so window boundaries move
 * between epochs.
 */

/** 32-bit integer hash (murmur3 finalizer); the base of every seeded choice here. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Small deterministic PRNG (mulberry32) seeded from (seed, stream). Returns uniform [0, 1). */
function rng(seed: number, stream: number): () => number {
  let s = mix32((seed >>> 0) ^ mix32(stream + 0x9e3779b9));
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded Fisher-Yates permutation of 0..n-1. */
function permutation(n: number, seed: number, stream: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const r = rng(seed, stream);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const t = p[i]!; p[i] = p[j]!; p[j] = t;
  }
  return p;
}

/**
 * Concatenates tokenized documents into one stream, with `eosId` after every document
 * (doc0 EOS doc1 EOS ... docN EOS), so the model learns where a text ends.
 */
export function packDocuments(docs: number[][], eosId: number): Int32Array {
  if (!Number.isInteger(eosId) || eosId < 0) throw new RangeError(`packDocuments: eosId must be a non-negative integer, got ${eosId}`);
  let n = 0;
  for (const d of docs) n += d.length + 1;
  const out = new Int32Array(n);
  let o = 0;
  for (const d of docs) {
    out.set(d, o);
    o += d.length;
    out[o++] = eosId;
  }
  return out;
}

/**
 * Splits documents into train and validation sets by document, deterministically from `seed`.
 * Validation gets round(valFraction * n) documents (at least 1 when valFraction > 0 and n >= 2);
 * train always keeps at least one. Both keep the input order.
 */
export function splitDocuments<T>(docs: T[], valFraction: number, seed: number): { train: T[]; val: T[] } {
  if (!(valFraction >= 0 && valFraction < 1)) throw new RangeError(`splitDocuments: valFraction must be in [0, 1), got ${valFraction}`);
  const n = docs.length;
  let k = Math.round(valFraction * n);
  if (valFraction > 0 && n >= 2) k = Math.max(1, k);
  k = Math.min(k, Math.max(0, n - 1));
  const isVal = new Uint8Array(n);
  const perm = permutation(n, seed, 0x5eed);
  for (let i = 0; i < k; i++) isVal[perm[i]!] = 1;
  const train: T[] = [], val: T[] = [];
  docs.forEach((d, i) => (isVal[i] ? val : train).push(d));
  return { train, val };
}

/** Sampler position, enough to resume exactly (store it in the checkpoint). */
export interface SamplerState {
  /** Number of batches drawn so far. */
  position: number;
  /** Seed the order was drawn from. */
  seed: number;
}

/** Draws (batch, seq+1) windows from a token stream; deterministic and resumable. */
export class BatchSampler {
  readonly batch: number;
  readonly seq: number;
  private readonly tokens: Int32Array;
  private seed: number;
  private position = 0;
  private readonly windows: number;
  private readonly maxShift: number;
  private epochCache: { epoch: number; perm: Uint32Array; shift: number } | undefined;

  constructor(tokens: Int32Array, batch: number, seq: number, seed: number) {
    if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`BatchSampler: batch must be a positive integer, got ${batch}`);
    if (!Number.isInteger(seq) || seq < 1) throw new RangeError(`BatchSampler: seq must be a positive integer, got ${seq}`);
    if (tokens.length < seq + 1) {
      throw new RangeError(`BatchSampler: ${tokens.length} tokens cannot fill one window of seq+1 = ${seq + 1} (use more data or a shorter --seq)`);
    }
    this.tokens = tokens;
    this.batch = batch;
    this.seq = seq;
    this.seed = seed >>> 0;
    // With a shift s in [0, seq), windows start at s + k*seq and need s + k*seq + seq + 1 <= n.
    const shifted = Math.floor((tokens.length - seq) / seq);
    this.maxShift = shifted >= 1 ? seq : 1;
    this.windows = shifted >= 1 ? shifted : Math.floor((tokens.length - 1) / seq);
  }

  /** Windows per epoch. */
  get windowsPerEpoch(): number {
    return this.windows;
  }

  /** Epochs completed so far (fractional). */
  get epoch(): number {
    return (this.position * this.batch) / this.windows;
  }

  private epochPlan(epoch: number): { perm: Uint32Array; shift: number } {
    if (this.epochCache?.epoch !== epoch) {
      const shift = Math.floor(rng(this.seed, 2 * epoch + 1)() * this.maxShift);
      this.epochCache = { epoch, perm: permutation(this.windows, this.seed, 2 * epoch + 2), shift };
    }
    return this.epochCache;
  }

  /** Next batch: inputs and targets are row-major [batch, seq]; targets[t] = inputs[t+1]. */
  next(): { inputs: Int32Array; targets: Int32Array } {
    const { batch, seq, tokens } = this;
    const inputs = new Int32Array(batch * seq);
    const targets = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      const g = this.position * batch + b;
      const epoch = Math.floor(g / this.windows);
      const plan = this.epochPlan(epoch);
      const start = plan.shift + plan.perm[g % this.windows]! * seq;
      inputs.set(tokens.subarray(start, start + seq), b * seq);
      targets.set(tokens.subarray(start + 1, start + seq + 1), b * seq);
    }
    this.position++;
    return { inputs, targets };
  }

  /** Current position, to save with a checkpoint. */
  state(): SamplerState {
    return { position: this.position, seed: this.seed };
  }

  /** Continues from a saved state (same tokens, batch and seq as when it was saved). */
  restore(state: SamplerState): void {
    if (!Number.isInteger(state.position) || state.position < 0) {
      throw new RangeError(`BatchSampler.restore: position must be a non-negative integer, got ${state.position}`);
    }
    if (!Number.isInteger(state.seed)) throw new RangeError(`BatchSampler.restore: seed must be an integer, got ${state.seed}`);
    this.position = state.position;
    if ((state.seed >>> 0) !== this.seed) this.epochCache = undefined;
    this.seed = state.seed >>> 0;
  }
}

/**
 * Entropy (nats) of the token frequency distribution: the loss of the best model that ignores
 * context. A trained model's loss should fall clearly below it.
 */
export function unigramEntropy(tokens: Int32Array, vocab: number): number {
  const counts = new Float64Array(vocab);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t < 0 || t >= vocab) throw new RangeError(`unigramEntropy: token ${t} at index ${i} is outside [0, ${vocab})`);
    counts[t] = counts[t]! + 1;
  }
  const n = tokens.length;
  let h = 0;
  for (let v = 0; v < vocab; v++) {
    const c = counts[v]!;
    if (c > 0) h -= (c / n) * Math.log(c / n);
  }
  return h;
}
