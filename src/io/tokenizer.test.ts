import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainBpe } from './bpe.js';
import { StreamDecoder, Tokenizer } from './tokenizer.js';
import { deepseekV3Tokenizer, loadTokenizer } from './tokenizer-node.js';

test('DeepSeek-V3 tokenizer: known ids and round trips', async () => {
  const tok = await deepseekV3Tokenizer();
  assert.ok(tok.vocabSize > 128000, `vocab ${tok.vocabSize}`);
  assert.equal(tok.bosId, 0); // <｜begin▁of▁sentence｜>
  assert.equal(tok.eosId, 1); // <｜end▁of▁sentence｜>
  // As transformers' LlamaTokenizerFast with add_bos_token: BOS, 'Hello', 'Ġworld'.
  assert.deepEqual(tok.encode('Hello world'), [0, 19923, 2058]);
  assert.deepEqual(tok.encode('Hello world', { addSpecialTokens: false }), [19923, 2058]);
  assert.equal(tok.idToToken(2058), 'Ġworld');
  assert.equal(tok.tokenToId('Hello'), 19923);
  for (const s of ['Hello world 🤗 你好世界 12345', ' leading  spaces\n\nnew line', "It's 3.14 — naïve café"]) {
    const ids = tok.encode(s, { addSpecialTokens: false });
    assert.equal(tok.decode(ids), s);
    assert.equal(tok.decode(tok.encode(s), { skipSpecialTokens: true }), s);
  }
  assert.equal(tok.decode([0, 19923]), '<｜begin▁of▁sentence｜>Hello');
  assert.throws(() => tok.decode([tok.vocabSize]), /out of range/);
});

test('StreamDecoder: holds back partial UTF-8 and emits the exact text', async () => {
  const tok = Tokenizer.fromJSON(trainBpe(['plain ascii text only'], { vocabSize: 270 }));
  const text = 'ok 🤗 你好 done';
  const ids = tok.encode(text); // emoji and CJK are split into single-byte tokens
  const dec = new StreamDecoder(tok);
  const pieces = ids.map((id) => dec.push(id));
  assert.ok(pieces.every((p) => !p.includes('\uFFFD')), 'no replacement characters streamed');
  assert.ok(pieces.filter((p) => p === '').length >= 3, 'some pushes held back partial characters');
  assert.equal(pieces.join('') + dec.flush(), text);
  // A dangling partial character surfaces on flush.
  const dec2 = new StreamDecoder(tok);
  assert.equal(dec2.push(ids[3]!), ''); // first byte of the emoji
  assert.equal(dec2.flush(), '\uFFFD');
});

test('loadTokenizer: reads a folder, eos from config, clear errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'frugal-tok-'));
  try {
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json not found/);
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    await assert.rejects(loadTokenizer(dir), /not valid JSON/);
    await writeFile(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await assert.rejects(loadTokenizer(dir), /missing "model"/);
    const json = trainBpe(['some text some text'], { vocabSize: 260, specialTokens: ['<|endoftext|>', '<|bos|>'] });
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', bos_token: '<|bos|>' }));
    const tok = await loadTokenizer(dir);
    assert.equal(tok.eosId, 0);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.vocabSize, 260);
    assert.equal(tok.decode(tok.encode('some text')), 'some text');
    assert.deepEqual(tok.encode(''), []);
    assert.equal(tok.decode([]), '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
