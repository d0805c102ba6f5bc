import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { BYTE_TO_CHAR, trainBpe } from './bpe.js';
import { Tokenizer } from './tokenizer.js';

const corpus = [
  'The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs.\n\n',
  'Congress shall make no law respecting an establishment of religion, or prohibiting the free exercise thereof.\n',
  'In the beginning there were tokens, and the tokens were merged, and the merges were good. 1234 5678 2024.\n',
  'Emoji 🤗🤗 and CJK 你好世界 你好 also appear, with café, naïve and Ünïcödé.\n',
].map((s) => s.repeat(20));

/** Random strings of valid code points (no lone surrogates), from a seeded LCG. */
function randomUnicode(seed: number, n: number): string {
  let s = seed >>> 0;
  const next = (): number => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
  const pools = [[0x20, 0x7e], [0x0a, 0x0d], [0xa0, 0x24f], [0x4e00, 0x9fff], [0x1f300, 0x1faff], [0x10000, 0x10ffff], [0xe000, 0xfffd]];
  let out = '';
  for (let i = 0; i < n; i++) {
    const [lo, hi] = pools[next() % pools.length]!;
    out += String.fromCodePoint(lo! + (next() % (hi! - lo! + 1)));
  }
  return out;
}

const json = trainBpe(corpus, { vocabSize: 400 }) as {
  model: { type: string; vocab: Record<string, number>; merges: string[] };
  added_tokens: { id: number; content: string; special: boolean }[];
};

test('trainBpe: tokenizer.json layout, vocab size respected, specials first, bytes next', () => {
  assert.equal(json.model.type, 'BPE');
  const ids = Object.values(json.model.vocab);
  assert.equal(ids.length, 400);
  assert.equal(Math.max(...ids), 399);
  assert.deepEqual(json.added_tokens.map((t) => [t.id, t.content, t.special]), [[0, '<|endoftext|>', true]]);
  assert.equal(json.model.vocab[BYTE_TO_CHAR[0x20]!], 1 + 0x20); // 'Ġ' is byte 32
  assert.equal(json.model.merges.length, 400 - 257);
  assert.ok(json.model.merges.every((m) => m.split(' ').length === 2));
  // The most frequent pair in English text with a leading space: 'Ġ t' (then 'Ġt h' ... 'Ġthe').
  assert.ok('Ġthe' in json.model.vocab, 'common word "the" became a token');
});

test('trainBpe: deterministic', () => {
  const again = trainBpe(corpus, { vocabSize: 400 });
  assert.deepEqual(again, json);
});

test('trainBpe: round-trips arbitrary text through @huggingface/tokenizers', () => {
  const hf = new HfTokenizer(json, { clean_up_tokenization_spaces: false });
  const tok = Tokenizer.fromJSON(json);
  const samples = [
    'The quick brown fox', ' leading and trailing  ', 'tabs\tand\r\nCRLF\n\n\n', "don't won't it's",
    '🤗 emoji 👩‍👩‍👧 family', '日本語のテキスト、中文文本', 'mixed 123456789 numbers 3.14159',
    '<|endoftext|> as text', 'a<|endoftext|>b  <|endoftext|>\n<|endoftext|>', '', corpus.join(''), randomUnicode(1, 200), randomUnicode(2, 500), randomUnicode(3, 50),
  ];
  for (const s of samples) {
    const ids = tok.encode(s);
    assert.equal(tok.decode(ids), s, `round trip of ${JSON.stringify(s.slice(0, 40))}`);
    if (s) assert.deepEqual(hf.encode(s).ids, ids);
    assert.ok(ids.every((id) => id >= 0 && id < 400));
  }
  assert.deepEqual(tok.encode('<|endoftext|>'), [0]);
  // Trained merges compress: seen text takes fewer tokens than bytes.
  const seen = corpus[0]!.slice(0, 200);
  assert.ok(tok.encode(seen).length < new TextEncoder().encode(seen).length / 2);
});

test('trainBpe: specialTokens, minFrequency and bad vocabSize', () => {
  const j = trainBpe(['ab ab ab cd'], { vocabSize: 1000, specialTokens: ['<pad>', '<eos>'], minFrequency: 3 }) as typeof json;
  assert.deepEqual(j.added_tokens.map((t) => t.content), ['<pad>', '<eos>']);
  // Only pairs seen >= 3 times merge: 'a b' (3x), 'Ġ a' (2x) does not.
  assert.deepEqual(j.model.merges, ['a b']);
  assert.throws(() => trainBpe(['x'], { vocabSize: 100 }), /vocabSize must be an integer in \[257/);
});

test('trainBpe: reports progress', () => {
  const seen: number[] = [];
  trainBpe(corpus, { vocabSize: 300, onProgress: (m, total) => { seen.push(m); assert.equal(total, 300 - 257); } });
  assert.equal(seen[seen.length - 1], 300 - 257);
});
