/**
 * Tokenizer: any Hugging Face `tokenizer.json` (+ optional `tokenizer_config.json`) through
 * `@huggingface/tokenizers`, with a small id-based API and a streaming detokenizer (browser-safe).
 *
 * Contract:
 * - `encode(text)` adds special tokens the way `transformers` does by default: whatever the
 *   post-processor adds, plus BOS/EOS when the config says `add_bos_token` / `add_eos_token`
 *   (DeepSeek-V3: `encode('Hello world')` = [0, 19923, 2058]). Pass `{ addSpecialTokens: false }`
 *   for raw text ids (what training data uses).
 * - `decode(ids)` is exact for byte-level tokenizers: `decode(encode(s, {addSpecialTokens:false}))
 *   === s`. Tokenization-space clean-up is off unless the config sets it to true.
 * - Ids outside [0, vocabSize) are refused with a RangeError naming the id.
 * - Plain GPT-2-style byte-level BPE files (what `trainBpe` writes) take a fast path with a
 *   word -> ids cache; it gives the same ids as the library (tested) about 7x faster.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { BYTE_TO_CHAR, GPT2_SPLIT } from './bpe.js';

/** Reads a special-token entry of tokenizer_config.json: a string or `{ content }`. */
function configToken(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return null;
}

/** Largest vocabulary accepted (ids below 2^22; the largest released vocabularies are ~2^18). */
export const MAX_VOCAB_SIZE = 2 ** 22;

/**
 * `model.vocab` must have its model type's shape (Unigram: an array of [token, score]; the others:
 * an object of token -> id), and every id there and in `added_tokens` must be an integer in
 * [0, MAX_VOCAB_SIZE): the library sizes tables by the largest id, so one id of 1e9 would cost
 * ~30 s and gigabytes before any error.
 */
function checkIds(type: unknown, vocab: object, merges: unknown, added: unknown): void {
  if (type === 'Unigram') {
    if (!Array.isArray(vocab) || !vocab.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === 'string' && typeof e[1] === 'number')) {
      throw new Error('tokenizer.json: a Unigram model.vocab must be an array of [token, score] pairs');
    }
  } else if (Array.isArray(vocab)) {
    throw new Error(`tokenizer.json: model.vocab of a ${String(type)} model must be an object of token -> id, got an array`);
  }
  const check = (id: unknown, where: string): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB_SIZE) {
      throw new Error(`tokenizer.json: ${where} has id ${JSON.stringify(id)?.slice(0, 40)}; ids must be integers in [0, ${MAX_VOCAB_SIZE}) (a corrupt or hostile file?)`);
    }
  };
  if (Array.isArray(vocab)) {
    if (vocab.length > MAX_VOCAB_SIZE) throw new Error(`tokenizer.json: model.vocab has ${vocab.length} entries, over the ${MAX_VOCAB_SIZE} limit`);
  } else {
    for (const [token, id] of Object.entries(vocab)) check(id, `model.vocab[${JSON.stringify(token).slice(0, 40)}]`);
  }
  if (type === 'BPE' && !Array.isArray(vocab) && Array.isArray(merges)) checkMerges(vocab as Record<string, unknown>, merges);
  if (Array.isArray(added)) {
    added.forEach((t, i) => {
      if (!t || typeof t !== 'object' || typeof (t as { content?: unknown }).content !== 'string') throw new Error(`tokenizer.json: added_tokens[${i}] must be an object with a string "content"`);
      check((t as { id?: unknown }).id, `added_tokens[${i}]`);
    });
  }
}

/**
 * Every BPE merge must join two vocabulary tokens into a vocabulary token (as the Rust library
 * checks at load); otherwise encoding yields tokens without ids.
 */
function checkMerges(vocab: Record<string, unknown>, merges: unknown[]): void {
  const has = (t: unknown): boolean => typeof t === 'string' && Object.hasOwn(vocab, t);
  merges.forEach((m, i) => {
    const pair = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(pair) || pair.length !== 2 || !has(pair[0]) || !has(pair[1]) || !has(`${pair[0]}${pair[1]}`)) {
      throw new Error(`tokenizer.json: model.merges[${i}] ${JSON.stringify(m)?.slice(0, 60)} does not join two vocabulary tokens into one (a corrupt tokenizer.json?)`);
    }
  });
}

const EOS_CANDIDATES = ['<|endoftext|>', '<｜end▁of▁sentence｜>', '</s>', '<|end_of_text|>', '<eos>'];
const BOS_CANDIDATES = ['<｜begin▁of▁sentence｜>', '<s>', '<|begin_of_text|>', '<bos>'];

/** A loaded tokenizer with id-level encode/decode. */
export class Tokenizer {
  /** Number of ids: one more than the largest id in the vocabulary or the added tokens. */
  readonly vocabSize: number;
  /** End-of-text id (config `eos_token`, else a well-known name), or null. */
  readonly eosId: number | null;
  /** Beginning-of-text id (config `bos_token`, else a well-known name), or null. */
  readonly bosId: number | null;
  private readonly hf: HfTokenizer;
  private readonly addBos: boolean;
  private readonly addEos: boolean;
  private readonly cleanUpSpaces: boolean;
  private readonly specialIds: Set<number>;
  private readonly fast: FastByteLevel | null;

  private constructor(hf: HfTokenizer, config: Record<string, unknown>, fast: FastByteLevel | null) {
    this.hf = hf;
    const vocab = hf.get_vocab(true);
    let max = -1;
    for (const id of vocab.values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const find = (name: string | null, fallbacks: string[]): number | null => {
      if (name !== null) return hf.token_to_id(name) ?? null;
      for (const c of fallbacks) { const id = hf.token_to_id(c); if (id !== undefined) return id; }
      return null;
    };
    this.eosId = find(configToken(config.eos_token), EOS_CANDIDATES);
    this.bosId = find(configToken(config.bos_token), BOS_CANDIDATES);
    this.addBos = config.add_bos_token === true && this.bosId !== null;
    this.addEos = config.add_eos_token === true && this.eosId !== null;
    this.cleanUpSpaces = config.clean_up_tokenization_spaces === true;
    this.specialIds = new Set(hf.get_added_tokens_decoder().keys());
    this.fast = fast;
  }

  /**
   * Builds a tokenizer from parsed `tokenizer.json` and optional `tokenizer_config.json` objects.
   * Throws an Error naming the problem when the JSON is not a tokenizer the library understands.
   */
  static fromJSON(tokenizerJson: object, tokenizerConfig: object = {}): Tokenizer {
    const j = tokenizerJson as { model?: { type?: unknown; vocab?: unknown }; added_tokens?: unknown };
    if (!j || typeof j !== 'object' || !j.model || typeof j.model !== 'object') {
      throw new Error('tokenizer.json: missing "model" object (is this a Hugging Face tokenizer.json?)');
    }
    if (!j.model.vocab || typeof j.model.vocab !== 'object') throw new Error('tokenizer.json: model.vocab is missing');
    checkIds(j.model.type, j.model.vocab, (j.model as { merges?: unknown }).merges, j.added_tokens);
    const json = Array.isArray(j.added_tokens) ? tokenizerJson : { ...tokenizerJson, added_tokens: [] };
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(json, tokenizerConfig);
    } catch (e) {
      throw new Error(`tokenizer.json: cannot load (model type ${String(j.model.type)}): ${(e as Error).message}`);
    }
    return new Tokenizer(hf, tokenizerConfig as Record<string, unknown>, FastByteLevel.from(json as Record<string, unknown>, hf));
  }

  /** Text -> ids. `addSpecialTokens` (default true) adds what the tokenizer's config asks for. */
  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const add = opts.addSpecialTokens ?? true;
    const ids = text.length === 0 ? [] : this.fast ? this.fast.encode(text) : this.hf.encode(text, { add_special_tokens: add }).ids;
    for (const id of ids) {
      if (!Number.isInteger(id)) throw new Error('tokenizer: the text produced a token with no id in this vocabulary (a tokenizer.json without an unk_token for it?)');
    }
    if (add && this.addBos && ids[0] !== this.bosId) ids.unshift(this.bosId!);
    if (add && this.addEos && ids[ids.length - 1] !== this.eosId) ids.push(this.eosId!);
    return ids;
  }

  /** Ids -> text. `skipSpecialTokens` drops special tokens (EOS, BOS, ...) from the output. */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`tokenizer: id ${id} is out of range [0, ${this.vocabSize})`);
      }
      if (this.hf.id_to_token(id) === undefined) throw new RangeError(`tokenizer: id ${id} has no token in this vocabulary`);
    }
    const kept = opts.skipSpecialTokens ? list.filter((id) => !this.specialIds.has(id)) : list;
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { clean_up_tokenization_spaces: this.cleanUpSpaces });
  }

  /** Id of a token string (as stored in the vocabulary, e.g. 'Ġthe'), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** Token string of an id, or undefined. */
  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** True when id is an added special token (EOS, BOS, pad, ...). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }
}

/**
 * Fast encoder for the plain byte-level BPE layout: no normalizer, a lone ByteLevel pre-tokenizer
 * with the GPT-2 regex, BPE model, no template post-processor, plain added tokens. Splits off
 * added tokens, splits words with the same regex as the library, and memoizes word -> ids.
 */
class FastByteLevel {
  private cache = new Map<string, number[]>();
  private constructor(private readonly hf: HfTokenizer, private readonly special: RegExp | null, private readonly specialIds: Map<string, number>) {}

  static from(json: Record<string, unknown>, hf: HfTokenizer): FastByteLevel | null {
    const pre = json.pre_tokenizer as Record<string, unknown> | null | undefined;
    const norm = json.normalizer as { type?: string; normalizers?: unknown[] } | null | undefined;
    const post = json.post_processor as { type?: string } | null | undefined;
    const model = json.model as { type?: string; dropout?: unknown; ignore_merges?: unknown } | undefined;
    const added = (json.added_tokens ?? []) as { id: number; content: string; lstrip?: boolean; rstrip?: boolean; single_word?: boolean }[];
    const plainNorm = norm == null || (norm.type === 'Sequence' && Array.isArray(norm.normalizers) && norm.normalizers.length === 0);
    if (!plainNorm || !pre || pre.type !== 'ByteLevel' || pre.use_regex === false || pre.add_prefix_space === true) return null;
    if (post != null && post.type !== 'ByteLevel') return null;
    if (model?.type !== 'BPE' || (model.dropout != null && model.dropout !== 0) || model.ignore_merges === true) return null;
    if (added.some((t) => t.lstrip || t.rstrip || t.single_word || typeof t.content !== 'string' || t.content === '')) return null;
    const specialIds = new Map(added.map((t) => [t.content, t.id]));
    const alternatives = [...specialIds.keys()].sort((a, b) => b.length - a.length).map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    return new FastByteLevel(hf, alternatives.length ? new RegExp(alternatives.join('|'), 'g') : null, specialIds);
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    if (!this.special) { this.encodeSection(text, ids); return ids; }
    let last = 0;
    for (const m of text.matchAll(this.special)) {
      this.encodeSection(text.slice(last, m.index), ids);
      ids.push(this.specialIds.get(m[0])!);
      last = m.index + m[0].length;
    }
    this.encodeSection(text.slice(last), ids);
    return ids;
  }

  private encodeSection(text: string, ids: number[]): void {
    for (const m of text.matchAll(GPT2_SPLIT)) {
      const word = m[0];
      let wordIds = this.cache.get(word);
      if (!wordIds) {
        let mapped = '';
        for (const b of new TextEncoder().encode(word)) mapped += BYTE_TO_CHAR[b]!;
        const model = this.hf.model as unknown as (words: string[]) => string[];
        wordIds = model([mapped]).map((t) => this.hf.token_to_id(t)!);
        if (this.cache.size >= 500_000) this.cache.clear();
        this.cache.set(word, wordIds);
      }
      for (const id of wordIds) ids.push(id);
    }
  }
}

/**
 * Incremental detokenizer for streaming generation: push ids one at a time and get back only the
 * text that is complete, holding back a partial UTF-8 sequence (shown as U+FFFD by a plain decode)
 * until the ids that finish it arrive. Decodes a short window, so each push costs O(window).
 */
export class StreamDecoder {
  private readonly tok: Tokenizer;
  private readonly skipSpecial: boolean;
  private ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(tok: Tokenizer, opts: { skipSpecialTokens?: boolean } = {}) {
    this.tok = tok;
    this.skipSpecial = opts.skipSpecialTokens ?? false;
  }

  /** Adds one id; returns the newly complete text ('' while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const opts = { skipSpecialTokens: this.skipSpecial };
    const prefix = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const full = this.tok.decode(this.ids.slice(this.prefixOffset), opts);
    if (full.length > prefix.length && !full.endsWith('\uFFFD')) {
      const fresh = full.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
      this.compact();
      return fresh;
    }
    return '';
  }

  /** Returns whatever is held back (an incomplete character decodes as U+FFFD) and resets. */
  flush(): string {
    const opts = { skipSpecialTokens: this.skipSpecial };
    const prefix = this.tok.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const full = this.tok.decode(this.ids.slice(this.prefixOffset), opts);
    this.ids = [];
    this.prefixOffset = this.readOffset = 0;
    return full.slice(prefix.length);
  }

  /** Drops ids before the window so memory stays bounded on long generations. */
  private compact(): void {
    if (this.prefixOffset > 1024) {
      this.ids = this.ids.slice(this.prefixOffset);
      this.readOffset -= this.prefixOffset;
      this.prefixOffset = 0;
    }
  }
}
