/**
 * Vocabularies in GGUF files (`tokenizer.ggml.*`, llama.cpp `src/llama-vocab.cpp`): a Hugging Face
 * byte-level BPE `tokenizer.json` to a `gpt2` GGUF vocabulary with its merges and back, and a
 * generated vocabulary for models that have no tokenizer. Browser-safe.
 *
 * Contract:
 * - `vocabFromTokenizerJson` keeps every id: token i of the GGUF list is the tokenizer's id i;
 *   ids the tokenizer does not use, up to the model's vocab size, become `[PAD{i}]` (type unused),
 *   as llama.cpp's converter pads. Added special tokens are type control (3), other added tokens
 *   user-defined (4). `pre` is `gpt-2` for the GPT-2 ByteLevel split (what `frugal tokenizer
 *   train` writes) and `deepseek-v3` for DeepSeek-V3's split; other layouts are refused.
 * - `tokenizerJsonFromVocab` rebuilds a `tokenizer.json` + `tokenizer_config.json` pair that
 *   encodes and decodes as the original did, leaving out padding (unused) tokens so that the
 *   tokenizer's size stops at the real vocabulary; it returns null (ids only) for a vocabulary without
 *   the 256 byte tokens (a generated one) or a tokenizer model other than `gpt2`.
 * - Token strings are unique and non-empty (llama.cpp asserts it), merges never hold a third part.
 */
import type { GgufMetadata, GgufOutKV } from './gguf.js';
import { BYTE_TO_CHAR } from './bpe.js';

/** GGUF token types (gguf-py constants `TokenType`). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** A GGUF vocabulary. */
export interface GgufVocab {
  model: string;
  pre: string;
  tokens: string[];
  tokenTypes: Int32Array;
  merges: string[];
  bosId: number | null;
  eosId: number | null;
  addBos: boolean;
}

type Json = Record<string, unknown>;

/** DeepSeek-V3's pre-tokenizer splits (its tokenizer.json), used to rebuild a `deepseek-v3` vocabulary. */
const DEEPSEEK_V3_SPLITS = [
  '\\p{N}{1,3}',
  '[一-龥぀-ゟ゠-ヿ]+',
  '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+',
];

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Which llama.cpp pre-tokenizer reproduces this tokenizer.json's split, or why none does. */
function preTokenizerName(pre: unknown): string {
  if (isObj(pre) && pre.type === 'ByteLevel' && pre.use_regex !== false && pre.add_prefix_space !== true) return 'gpt-2';
  if (isObj(pre) && pre.type === 'Sequence' && Array.isArray(pre.pretokenizers)) {
    const parts = pre.pretokenizers as Json[];
    const splits = parts.slice(0, -1).map((p) => (isObj(p.pattern) ? p.pattern.Regex : undefined));
    const last = parts[parts.length - 1];
    if (splits.length === DEEPSEEK_V3_SPLITS.length && splits.every((s, i) => s === DEEPSEEK_V3_SPLITS[i]) && isObj(last) && last.type === 'ByteLevel') return 'deepseek-v3';
  }
  throw new Error(`gguf vocab: tokenizer.json's pre_tokenizer (${JSON.stringify(pre).slice(0, 120)}) matches neither the GPT-2 ByteLevel split nor DeepSeek-V3's; llama.cpp would split text differently`);
}

/**
 * A `tokenizer.json` (+ tokenizer_config.json) as a gpt2 GGUF vocabulary of exactly `vocabSize`
 * tokens. Throws when the tokenizer is not byte-level BPE or uses ids ≥ vocabSize.
 */
export function vocabFromTokenizerJson(json: Json, config: Json, vocabSize: number, ids: { bos: number | null; eos: number | null }): GgufVocab {
  const model = json.model;
  if (!isObj(model) || model.type !== 'BPE' || !isObj(model.vocab)) throw new Error('gguf vocab: tokenizer.json must be a BPE model (model.type "BPE" with a vocab)');
  const pre = preTokenizerName(json.pre_tokenizer);
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.NORMAL);
  const put = (tok: string, id: unknown, type: number): void => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) throw new Error(`gguf vocab: token ${JSON.stringify(tok)} has id ${String(id)}`);
    if (id >= vocabSize) throw new Error(`gguf vocab: token ${JSON.stringify(tok)} has id ${id}, outside the model's vocabulary of ${vocabSize}`);
    if (tok === '') throw new Error(`gguf vocab: token ${id} is empty (llama.cpp needs non-empty tokens)`);
    tokens[id] = tok;
    types[id] = type;
  };
  for (const [tok, id] of Object.entries(model.vocab)) put(tok, id, TOKEN_TYPE.NORMAL);
  for (const t of Array.isArray(json.added_tokens) ? (json.added_tokens as Json[]) : []) {
    if (typeof t.content !== 'string') throw new Error('gguf vocab: an added token has no content string');
    put(t.content, t.id, t.special === true ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED);
  }
  const seen = new Set<string>();
  const out: string[] = new Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    let t = tokens[i];
    if (t === undefined) { t = `[PAD${i}]`; types[i] = TOKEN_TYPE.UNUSED; }
    if (seen.has(t)) throw new Error(`gguf vocab: token ${JSON.stringify(t)} appears twice (llama.cpp needs unique tokens)`);
    seen.add(t);
    out[i] = t;
  }
  const merges = (Array.isArray(model.merges) ? model.merges : []).map((m: unknown) => {
    const s = Array.isArray(m) ? m.join(' ') : m;
    if (typeof s !== 'string' || s.split(' ').length !== 2) throw new Error(`gguf vocab: merge ${JSON.stringify(m)} is not two tokens`);
    return s;
  });
  const addBos = config.add_bos_token === true;
  return { model: 'gpt2', pre, tokens: out, tokenTypes: types, merges, bosId: checkId(ids.bos, vocabSize), eosId: checkId(ids.eos, vocabSize), addBos };
}

const checkId = (id: number | null, V: number): number | null => (id !== null && id >= 0 && id < V ? id : null);

/**
 * A vocabulary for a model without a tokenizer: `[PAD{i}]` tokens (type unused), `<s>` / `</s>`
 * (control) at the BOS / EOS ids. Token ids in, token ids out; no text.
 */
export function generatedVocab(vocabSize: number, bos: number | null, eos: number | null): GgufVocab {
  const tokens = Array.from({ length: vocabSize }, (_, i) => `[PAD${i}]`);
  const types = new Int32Array(vocabSize).fill(TOKEN_TYPE.UNUSED);
  const b = checkId(bos, vocabSize), e = checkId(eos, vocabSize);
  if (b !== null) { tokens[b] = '<s>'; types[b] = TOKEN_TYPE.CONTROL; }
  if (e !== null && e !== b) { tokens[e] = '</s>'; types[e] = TOKEN_TYPE.CONTROL; }
  return { model: 'gpt2', pre: 'gpt-2', tokens, tokenTypes: types, merges: [], bosId: b, eosId: e, addBos: false };
}

/** The `tokenizer.ggml.*` metadata entries of a vocabulary. */
export function vocabToKVs(v: GgufVocab): GgufOutKV[] {
  const kvs: GgufOutKV[] = [
    { key: 'tokenizer.ggml.model', type: 'str', value: v.model },
    { key: 'tokenizer.ggml.pre', type: 'str', value: v.pre },
    { key: 'tokenizer.ggml.tokens', type: 'str[]', value: v.tokens },
    { key: 'tokenizer.ggml.token_type', type: 'i32[]', value: v.tokenTypes },
    { key: 'tokenizer.ggml.merges', type: 'str[]', value: v.merges },
  ];
  if (v.bosId !== null) kvs.push({ key: 'tokenizer.ggml.bos_token_id', type: 'u32', value: v.bosId });
  if (v.eosId !== null) kvs.push({ key: 'tokenizer.ggml.eos_token_id', type: 'u32', value: v.eosId });
  kvs.push({ key: 'tokenizer.ggml.add_bos_token', type: 'bool', value: v.addBos });
  return kvs;
}

/** Reads the vocabulary of a GGUF file (tokens required; merges/types/ids optional). */
export function vocabFromMetadata(m: GgufMetadata): GgufVocab {
  const tokens = m.strArray('tokenizer.ggml.tokens')!;
  const V = tokens.length;
  const typesIn = m.intArray('tokenizer.ggml.token_type');
  if (typesIn && typesIn.length !== V) throw new Error(`gguf vocab: tokenizer.ggml.token_type has ${typesIn.length} entries for ${V} tokens`);
  const id = (k: string): number | null => (m.has(k) ? checkId(m.uint(k), V) : null);
  return {
    model: m.str('tokenizer.ggml.model', 'gpt2'), pre: m.str('tokenizer.ggml.pre', 'default'), tokens,
    tokenTypes: typesIn ? Int32Array.from(typesIn) : new Int32Array(V).fill(TOKEN_TYPE.NORMAL),
    merges: m.strArray('tokenizer.ggml.merges', true) ?? [],
    bosId: id('tokenizer.ggml.bos_token_id'), eosId: id('tokenizer.ggml.eos_token_id'),
    addBos: m.has('tokenizer.ggml.add_bos_token') ? m.bool('tokenizer.ggml.add_bos_token') : false,
  };
}

/**
 * `tokenizer.json` and `tokenizer_config.json` objects equivalent to a GGUF vocabulary, or null
 * with the reason when Frugal cannot tokenize text with it (token ids still work).
 */
export function tokenizerJsonFromVocab(v: GgufVocab): { json: Json; config: Json } | { json: null; reason: string } {
  if (v.model !== 'gpt2') return { json: null, reason: `tokenizer model "${v.model}" (Frugal reads gpt2 byte-level BPE vocabularies)` };
  const index = new Map<string, number>();
  v.tokens.forEach((t, i) => { if (!index.has(t)) index.set(t, i); });
  if (!BYTE_TO_CHAR.every((c) => index.has(c))) return { json: null, reason: 'the vocabulary lacks the 256 byte tokens (a generated vocabulary)' };
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  let pre: Json;
  if (v.pre === 'gpt-2' || v.pre === 'gpt2' || v.pre === 'default') pre = byteLevel;
  else if (v.pre === 'deepseek-v3') {
    pre = {
      type: 'Sequence', pretokenizers: [
        ...DEEPSEEK_V3_SPLITS.map((r) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false })),
        { ...byteLevel, use_regex: false },
      ],
    };
  } else return { json: null, reason: `pre-tokenizer "${v.pre}" (Frugal splits text as gpt-2 or deepseek-v3)` };
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  v.tokens.forEach((t, i) => {
    const ty = v.tokenTypes[i];
    if (ty === TOKEN_TYPE.CONTROL || ty === TOKEN_TYPE.USER_DEFINED) {
      added.push({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: ty === TOKEN_TYPE.CONTROL });
    } else if (ty !== TOKEN_TYPE.UNUSED) vocab[t] = i; // padding ids stay out: generation never samples them
  });
  const json: Json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: pre,
    post_processor: null, decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: v.merges },
  };
  const config: Json = { add_bos_token: v.addBos, add_eos_token: false };
  if (v.bosId !== null) config.bos_token = v.tokens[v.bosId];
  if (v.eosId !== null) config.eos_token = v.tokens[v.eosId];
  return { json, config };
}
