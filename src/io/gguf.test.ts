// GGUF container, ggml type codecs and vocabulary conversion: round trips, ggml's exact rounding
// rules, and the errors hostile headers get.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { GgufError, GgufReader, serializeGguf, type GgufOutKV, type GgufOutTensor } from './gguf.js';
import { GGML_TYPE, decodeTensor, encodeTensor, f16Value, f32ToF16, quantizeQ8_0, dequantizeQ8_0, type GgmlTypeId } from './gguf-quant.js';
import { memorySource } from './safetensors.js';
import { f16ToF32 } from '../fp8/codec.js';
import { generatedVocab, tokenizerJsonFromVocab, vocabFromTokenizerJson, vocabToKVs, vocabFromMetadata } from './gguf-vocab.js';
import { Tokenizer } from './tokenizer.js';
import { trainBpe } from './bpe.js';
import { deepseekV3TokenizerDir } from './tokenizer-node.js';

const tensor = (name: string, ne: number[], type: GgmlTypeId, x: Float32Array): GgufOutTensor => {
  const b = encodeTensor(type, x);
  return { name, ne, type, nbytes: b.length, bytes: () => b };
};
const open = (bytes: Uint8Array): Promise<GgufReader> => GgufReader.open(memorySource(bytes));

test('f32ToF16 rounds to nearest even and inverts every half exactly', () => {
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    if (Number.isNaN(v)) continue;
    assert.equal(f32ToF16(v), h, `half 0x${h.toString(16)}`);
  }
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie -> even (1.0)
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (1 + 2^-9)
  assert.equal(f32ToF16(65520), 0x7c00); // rounds up past the largest half: inf
  assert.equal(f32ToF16(2 ** -25), 0); // tie between 0 and the smallest subnormal -> 0
  assert.equal(f32ToF16(3 * 2 ** -25), 2); // tie between subnormals 1 and 2 -> 2 (even)
});

test('Q8_0 quantises like ggml: d = amax/127 as f16, q rounded half away from zero', () => {
  const x = new Float32Array(32);
  x[0] = 127; x[1] = 2.5; x[2] = -2.5; x[3] = 0.5; x[4] = -0.49; x[5] = -127;
  const q = quantizeQ8_0(x);
  assert.equal(q.length, 34);
  assert.equal(q[0]! | (q[1]! << 8), f32ToF16(1)); // d = 127/127
  const codes = new Int8Array(q.buffer, 2, 32);
  assert.deepEqual(Array.from(codes.slice(0, 6)), [127, 3, -3, 1, 0, -127]); // Math.round(-2.5) would give -2
  const back = dequantizeQ8_0(q);
  assert.equal(back[1], 3);
  assert.deepEqual(Array.from(dequantizeQ8_0(quantizeQ8_0(new Float32Array(32)))), new Array(32).fill(0)); // all-zero block: d = 0
  assert.throws(() => quantizeQ8_0(new Float32Array(31)), /multiple of 32/);
});

test('F32/F16/BF16/Q8_0 tensors round-trip through a GGUF file with the metadata types llama.cpp checks', async () => {
  const x = Float32Array.from({ length: 64 * 3 }, (_, i) => Math.sin(i) * 3);
  const kvs: GgufOutKV[] = [
    { key: 'general.architecture', type: 'str', value: 'test' }, { key: 'a.u32', type: 'u32', value: 4_000_000_000 },
    { key: 'a.f32', type: 'f32', value: 0.25 }, { key: 'a.flag', type: 'bool', value: true }, { key: 'a.i32', type: 'i32', value: -7 },
    { key: 'a.strs', type: 'str[]', value: ['x', 'é', '漢字'] }, { key: 'a.ints', type: 'i32[]', value: [1, -2, 3] },
  ];
  const types: GgmlTypeId[] = [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0];
  const ts = types.map((t, i) => tensor(`t${i}.weight`, [64, 3], t, x));
  const r = await open(serializeGguf(kvs, ts));
  const m = r.metadata;
  assert.equal(r.header.version, 3);
  assert.equal(m.uint('a.u32'), 4_000_000_000);
  assert.equal(m.float('a.f32'), 0.25);
  assert.equal(m.bool('a.flag'), true);
  assert.deepEqual(m.strArray('a.strs'), ['x', 'é', '漢字']);
  assert.deepEqual(m.intArray('a.ints'), [1, -2, 3]);
  assert.throws(() => m.uint('a.i32'), /non-negative integer/);
  assert.throws(() => m.str('a.f32'), /must be a string, got f32 0.25/);
  for (const [i, t] of types.entries()) {
    const info = r.info(`t${i}.weight`);
    assert.equal(info.offset % 32, 0);
    const got = await r.float32(`t${i}.weight`);
    assert.deepEqual(got, decodeTensor(t, encodeTensor(t, x), x.length));
  }
  assert.deepEqual(await r.float32('t0.weight'), x);
  const q = await r.float32('t3.weight');
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(q[i]! - x[i]!) <= 3 / 127 / 2 + 1e-3, `q8 ${i}`);
  assert.equal(f16Value(0x3c00), 1);
});

/** A valid file to corrupt: one F32 tensor. */
function small(): Uint8Array {
  return serializeGguf([{ key: 'general.architecture', type: 'str', value: 'x' }, { key: 'general.alignment', type: 'u32', value: 32 }],
    [tensor('w', [32, 2], GGML_TYPE.F32, new Float32Array(64).fill(1))]);
}
const put64 = (b: Uint8Array, at: number, v: bigint): Uint8Array => { const c = b.slice(); new DataView(c.buffer).setBigUint64(at, v, true); return c; };

test('hostile headers fail with GgufErrors that name the problem', async () => {
  const ok = small();
  const bad = async (bytes: Uint8Array, re: RegExp): Promise<void> => {
    await assert.rejects(open(bytes), (e: unknown) => e instanceof GgufError && re.test((e as Error).message), String(re));
  };
  await bad(new TextEncoder().encode('GGML' + ' '.repeat(40)), /not a GGUF file/);
  await bad(put64(ok, 4, 1n).slice(), /version/); // version word overwritten (u32 1 + garbage)
  await bad(put64(ok, 8, 1n << 40n), /tensor count .* exceeds/);
  await bad(put64(ok, 16, 1n << 62n), /metadata count .*(exceeds|negative|2\^53)/);
  await bad(put64(ok, 24, 1n << 50n), /key #0 is \d+ bytes, over the 65536-byte limit/);
  await bad(ok.subarray(0, 60), /past the end|truncated/);
  await bad(ok.subarray(0, ok.length - 40), /runs past the end/); // data truncated
  const dupKey = serializeGguf([{ key: 'k', type: 'u32', value: 1 }, { key: 'k', type: 'u32', value: 2 }], []);
  await bad(dupKey, /duplicate metadata key k/);
  const align = serializeGguf([{ key: 'general.alignment', type: 'u32', value: 48 }], []);
  await bad(align, /alignment 48 must be a power of two/);
  const t = tensor('w', [32], GGML_TYPE.F32, new Float32Array(32));
  await bad(serializeGguf([], [t, { ...t }]), /duplicate tensor name w/);
  // Unsupported type: patch the type field of a Q4_K-like tensor id (12).
  const one = serializeGguf([], [t]);
  const typeAt = 24 + 8 + 1 + 4 + 8; // header, name len + 'w', n_dims, ne0
  const q4 = one.slice(); new DataView(q4.buffer).setInt32(typeAt, 12, true);
  await bad(q4, /type Q4_K, which Frugal does not read/);
  const off = one.slice(); new DataView(off.buffer).setBigUint64(typeAt + 4, 64n, true);
  await bad(off, /starts at data offset 64, expected 0/);
  assert.throws(() => serializeGguf([], [tensor('x'.repeat(64), [32], GGML_TYPE.F32, new Float32Array(32))]), /too long/);
});

test('a trained BPE tokenizer.json becomes a gpt-2 vocabulary (padded to the model) and back with the same ids', () => {
  const json = trainBpe(['the people and the nation, 1234 times; the people!'], { vocabSize: 300, specialTokens: ['<|endoftext|>'] }) as unknown as Record<string, unknown>;
  const v = vocabFromTokenizerJson(json, {}, 320, { bos: null, eos: 0 });
  assert.equal(v.pre, 'gpt-2');
  assert.equal(v.tokens.length, 320);
  assert.equal(v.tokens[310], '[PAD310]');
  assert.equal(v.tokenTypes[0], 3); // the special token is control
  assert.equal(v.eosId, 0);
  const r = open(serializeGguf(vocabToKVs(v), []));
  return r.then((reader) => {
    const back = tokenizerJsonFromVocab(vocabFromMetadata(reader.metadata));
    assert.ok(back.json);
    const a = Tokenizer.fromJSON(json), b = Tokenizer.fromJSON(back.json!, back.config);
    for (const s of ['the people and the nation', ' 1234 times;\n\n the  people!', 'unseen wörds ✓']) assert.deepEqual(b.encode(s), a.encode(s), s);
    assert.equal(b.eosId, 0);
    assert.equal(b.vocabSize, a.vocabSize); // the [PAD] ids past the tokenizer are not sampleable text
  });
});

test("DeepSeek-V3's tokenizer.json round-trips as a deepseek-v3 vocabulary", () => {
  const dir = deepseekV3TokenizerDir();
  const json = JSON.parse(readFileSync(`${dir}/tokenizer.json`, 'utf8')) as Record<string, unknown>;
  const config = JSON.parse(readFileSync(`${dir}/tokenizer_config.json`, 'utf8')) as Record<string, unknown>;
  const v = vocabFromTokenizerJson(json, config, 129280, { bos: 0, eos: 1 });
  assert.equal(v.pre, 'deepseek-v3');
  assert.ok(v.merges.length > 100_000);
  assert.equal(v.addBos, true);
  const back = tokenizerJsonFromVocab(v);
  assert.ok(back.json);
  const a = Tokenizer.fromJSON(json, config), b = Tokenizer.fromJSON(back.json!, back.config);
  for (const s of ['Hello world', 'DeepSeek-V3 有 671B 参数, 37B activated.\n\tdone 12345']) assert.deepEqual(b.encode(s), a.encode(s), s);
  assert.equal(b.bosId, 0);
  assert.throws(() => vocabFromTokenizerJson(json, config, 1000, { bos: 0, eos: 1 }), /outside the model's vocabulary of 1000/);
});

test('a generated vocabulary has unique tokens and gives no text tokenizer', () => {
  const v = generatedVocab(64, 0, 1);
  assert.equal(new Set(v.tokens).size, 64);
  assert.deepEqual([v.tokens[0], v.tokens[1], v.tokens[2]], ['<s>', '</s>', '[PAD2]']);
  const r = tokenizerJsonFromVocab(v);
  assert.equal(r.json, null);
});
