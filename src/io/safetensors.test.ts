// Tests for the browser-safe safetensors core: golden reference files, every dtype round trip,
// hostile headers with their messages, and a 500-mutation fuzz run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { E4M3_TO_F32 } from '../fp8/codec.js';
import { rejects } from './safetensors-assert-node.js';
import {
  type StDtype, type StTensorInput, SafetensorsError, SafetensorsFile, concatBytes, dequantizeFp8Weight,
  memorySource, numel, parseHeader, readHeaderLength, serialize, toFloat32,
} from './safetensors.js';

const REF = new URL('../../../shared/reference/', import.meta.url);
const load = (rel: string) => new Uint8Array(readFileSync(new URL(rel, REF)));


/** Build a file from a raw header object and a data section. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const h = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setUint32(0, h.length, true);
  return concatBytes([len, h, data]);
}

test('tiny-dsv3 golden file: names, shapes, dtypes, values', async () => {
  const f = await SafetensorsFile.open(memorySource(load('tiny-dsv3/model.safetensors')));
  assert.equal(f.names().length, 135);
  assert.deepEqual(f.header.metadata, { format: 'pt' });
  assert.deepEqual(f.info('model.embed_tokens.weight').shape, [512, 64]); // vocab × hidden
  assert.deepEqual(f.info('lm_head.weight').shape, [512, 64]);
  assert.deepEqual(f.info('model.layers.1.self_attn.kv_a_proj_with_mqa.weight').shape, [40, 64]); // kv_lora 32 + rope 8
  assert.deepEqual(f.info('model.layers.1.self_attn.q_b_proj.weight').shape, [96, 32]); // 4 heads × (16 + 8)
  assert.deepEqual(f.info('model.layers.1.mlp.gate.weight').shape, [8, 64]);
  assert.equal(f.info('model.layers.1.mlp.gate.e_score_correction_bias').dtype, 'F32');
  assert.ok(f.has('model.layers.3.eh_proj.weight'), 'MTP layer present');
  const emb = await f.float32('model.embed_tokens.weight');
  assert.equal(emb.length, 512 * 64);
  assert.deepEqual([...emb.subarray(0, 4)], [-1.6038367748260498, 0.06409991532564163, 0.7408912777900696, 0.15261919796466827]);
  const norm = await f.float32('model.layers.0.input_layernorm.weight');
  const mean = norm.reduce((a, x) => a + x, 0) / norm.length;
  assert.ok(Math.abs(mean - 1) < 0.05, `norm weights are 1 + 0.1·N(0,1), mean ${mean}`);
});

test('tiny-dsv3-fp8 golden file: FP8 weights, scale shapes, block maxima = 448·scale', async () => {
  const f = await SafetensorsFile.open(memorySource(load('tiny-dsv3-fp8/model.safetensors')));
  const fp8 = f.names().filter((n) => f.info(n).dtype === 'F8_E4M3');
  assert.equal(fp8.length, 72);
  for (const name of fp8) {
    const [rows, cols] = f.info(name).shape as [number, number];
    const s = f.info(`${name}_scale_inv`);
    assert.equal(s.dtype, 'F32');
    assert.deepEqual(s.shape, [Math.ceil(rows / 128), Math.ceil(cols / 128)], name);
    const scale = await f.float32(`${name}_scale_inv`);
    const w = dequantizeFp8Weight(await f.bytes(name), scale, rows, cols);
    assert.ok(w.every(Number.isFinite), `${name}: finite`);
    const blockMax = new Float64Array(scale.length);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) {
      const b = Math.floor(i / 128) * (s.shape[1] as number) + Math.floor(j / 128);
      blockMax[b] = Math.max(blockMax[b] as number, Math.abs(w[i * cols + j] as number));
    }
    for (let b = 0; b < scale.length; b++) {
      const want = 448 * (scale[b] as number);
      assert.ok(Math.abs((blockMax[b] as number) - want) <= 1e-6 * want, `${name} block ${b}: max ${blockMax[b]} vs ${want}`);
    }
  }
  // Independent numpy check (python e4m3 decode × repeated scale) on a weight with partial edge blocks.
  const name = 'model.layers.1.self_attn.kv_a_proj_with_mqa.weight';
  const w = dequantizeFp8Weight(await f.bytes(name), await f.float32(`${name}_scale_inv`), 144, 256);
  assert.ok(Math.abs(w.reduce((a, x) => a + x, 0) - -23.699425883451113) < 1e-4);
  assert.ok(Math.abs((w[143 * 256 + 255] as number) - -0.03169821575284004) < 1e-9);
});

test('dequantizeFp8Weight: partial edge blocks and argument checks', async () => {
  // 3×3 weight, 2×2 blocks → scale [2, 2]; code 0x38 = 1.0, 0x40 = 2.0
  const codes = new Uint8Array([0x38, 0x38, 0x40, 0x38, 0x38, 0x40, 0x40, 0x40, 0xb8]);
  const scale = new Float32Array([1, 10, 100, 1000]);
  const w = dequantizeFp8Weight(codes, scale, 3, 3, 2);
  assert.deepEqual([...w], [1, 1, 20, 1, 1, 20, 200, 200, -1000]);
  await rejects(() => dequantizeFp8Weight(codes, new Float32Array(3), 3, 3, 2), /needs \[2, 2\]/);
  await rejects(() => dequantizeFp8Weight(codes, scale, 3, 4, 2), /9 codes/);
});

const DTYPES: StDtype[] = ['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'];
/** Values exactly representable in every dtype, with their little-endian encodings. */
function sample(dtype: StDtype): { bytes: Uint8Array; values: number[] } {
  const values = dtype === 'U8' || dtype === 'BOOL' ? [0, 1, 1, 0, 1, 0] : [0, 1, -2, 0.5, 3, -0.25];
  const ints = values.map((v) => (dtype.startsWith('I') ? Math.trunc(v) || 0 : v));
  const dv = new DataView(new ArrayBuffer(values.length * 8));
  const enc: Record<StDtype, [number, (i: number, v: number) => void]> = {
    F64: [8, (i, v) => dv.setFloat64(i * 8, v, true)], F32: [4, (i, v) => dv.setFloat32(i * 4, v, true)],
    F16: [2, (i, v) => dv.setUint16(i * 2, [0, 0x3c00, 0xc000, 0x3800, 0x4200, 0xb400][values.indexOf(v)] as number, true)],
    BF16: [2, (i, v) => { const t = new Float32Array([v]); dv.setUint16(i * 2, new Uint32Array(t.buffer)[0]! >>> 16, true); }],
    F8_E4M3: [1, (i, v) => dv.setUint8(i, E4M3_TO_F32.indexOf(v))],
    F8_E5M2: [1, (i, v) => dv.setUint8(i, [0, 0x3c, 0xc0, 0x38, 0x42, 0xb4][values.indexOf(v)] as number)],
    I64: [8, (i, v) => dv.setBigInt64(i * 8, BigInt(v), true)], I32: [4, (i, v) => dv.setInt32(i * 4, v, true)],
    I16: [2, (i, v) => dv.setInt16(i * 2, v, true)], I8: [1, (i, v) => dv.setInt8(i, v)],
    U8: [1, (i, v) => dv.setUint8(i, v)], BOOL: [1, (i, v) => dv.setUint8(i, v)],
  };
  const [size, set] = enc[dtype];
  ints.forEach((v, i) => set(i, v));
  return { bytes: new Uint8Array(dv.buffer, 0, values.length * size), values: ints };
}

test('serialize → SafetensorsFile round trip for every dtype, standard layout', async () => {
  const tensors: StTensorInput[] = DTYPES.map((dtype) => ({ name: `t.${dtype}`, dtype, shape: [2, 3], data: sample(dtype).bytes }));
  tensors.push({ name: 'a.empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
  const chunks = serialize(tensors, { format: 'pt', note: 'é' });
  const buf = concatBytes(chunks);
  const headerLen = readHeaderLength(buf);
  assert.equal(headerLen % 8, 0);
  assert.equal(chunks[1]!.length, headerLen);
  // Shift by one byte so every tensor view is unaligned.
  const shifted = new Uint8Array(buf.length + 1);
  shifted.set(buf, 1);
  const f = await SafetensorsFile.open(memorySource(shifted.subarray(1)));
  assert.deepEqual(f.header.metadata, { format: 'pt', note: 'é' });
  assert.deepEqual(f.names(), tensors.map((t) => t.name).sort());
  let expectBegin = 8 + headerLen;
  for (const name of f.names()) { // contiguous, name order
    assert.equal(f.info(name).begin, expectBegin);
    expectBegin = f.info(name).end;
  }
  assert.equal(expectBegin, buf.length);
  for (const dtype of DTYPES) {
    const { bytes, values } = sample(dtype);
    assert.deepEqual(f.info(`t.${dtype}`).shape, [2, 3]);
    assert.deepEqual(await f.bytes(`t.${dtype}`), bytes, dtype);
    assert.deepEqual([...(await f.float32(`t.${dtype}`))], values, dtype);
  }
  assert.equal((await f.float32('a.empty')).length, 0);
});

test('serialize rejects bad inputs', async () => {
  await rejects(() => serialize([{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }]), /"x".*needs 12 bytes, data has 8/);
  await rejects(() => serialize([{ name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) }, { name: 'x', dtype: 'U8', shape: [1], data: new Uint8Array(1) }]), /"x": duplicate/);
  await rejects(() => serialize([{ name: 'x', dtype: 'F32', shape: [-1], data: new Float32Array(0) }]), /"x": shape/);
});

test('toFloat32: I64 beyond 2^53 and a wrong byte count are errors', async () => {
  const big = new Uint8Array(new BigInt64Array([1n << 60n]).buffer);
  await rejects(() => toFloat32({ name: 'ids', dtype: 'I64', shape: [1], begin: 0, end: 8 }, big), /"ids".*beyond 2\^53/);
  await rejects(() => toFloat32({ name: 'w', dtype: 'F32', shape: [2], begin: 0, end: 8 }, new Uint8Array(4)), /"w": got 4 bytes/);
});

test('hostile headers fail with messages naming the problem', async () => {
  const f32 = (offs: unknown, shape: unknown = [2], dtype: unknown = 'F32') => ({ w: { dtype, shape, data_offsets: offs } });
  const data8 = new Uint8Array(8);
  const parse = (buf: Uint8Array) => parseHeader(buf, buf.length);
  await rejects(() => parse(new Uint8Array(5)), /5 bytes, shorter than the 8-byte header length/);
  const huge = new Uint8Array(1048576);
  new DataView(huge.buffer).setUint32(0, 1073741824, true); // 9663676416 = 2 · 2^32 + 2^30
  new DataView(huge.buffer).setUint32(4, 2, true);
  await rejects(() => parse(huge), /^safetensors: header length 9663676416 exceeds file size 1048576 \(truncated file\?\)$/);
  await rejects(() => SafetensorsFile.open({ size: 200_000_016, read: (_o: number, l: number) => (l === 8 ? new Uint8Array([0, 0xe2, 0xf5, 0x05, 0, 0, 0, 0]) : new Uint8Array(l)) }), /100000000-byte limit/);
  const bad = rawFile(null, undefined, '{"__metadata__":{"k":"X"}}');
  bad[bad.indexOf(0x58)] = 0xff; // 'X' → a lone 0xFF byte
  await rejects(() => parse(bad), /not valid UTF-8/);
  await rejects(() => parse(rawFile(null, data8, '{"w": ')), /not valid JSON/);
  await rejects(() => parse(rawFile([1, 2], data8)), /must be a JSON object/);
  await rejects(() => parse(rawFile(f32([0, 8], [2], 'F128'), data8)), /"w": unknown dtype "F128"/);
  await rejects(() => parse(rawFile(f32([0, 8], [2.5]), data8)), /"w": shape \[2.5\]/);
  await rejects(() => parse(rawFile(f32([0, 8], '2'), data8)), /"w": shape must be an array/);
  await rejects(() => parse(rawFile(f32([0, 8], [3]), data8)), /"w": shape \[3\] × F32 needs 12 bytes but data_offsets span 8/);
  await rejects(() => parse(rawFile(f32([0, 16], [4]), data8)), /"w": data_offsets end 16 is beyond the data section \(8 bytes/);
  await rejects(() => parse(rawFile(f32([-8, 0], [2]), data8)), /"w": data_offsets \[-8,0\]/);
  await rejects(() => parse(rawFile(f32([0.5, 8.5], [2]), data8)), /"w": data_offsets/);
  await rejects(() => parse(rawFile(f32([0], [2]), data8)), /"w": data_offsets must be \[begin, end\]/);
  await rejects(() => parse(rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, data8)), /"b" overlaps tensor "a"/);
  await rejects(() => parse(rawFile(f32([4, 8], [1]), data8)), /"w": gap of 4 bytes/);
  await rejects(() => parse(rawFile(f32([0, 4], [1]), data8)), /4 trailing bytes/);
  const holey = rawFile(f32([4, 8], [1]), data8);
  assert.equal(parseHeader(holey, holey.length, { allowHoles: true }).tensors.get('w')?.begin, holey.length - 4);
  await rejects(() => parse(rawFile({ __metadata__: { format: 1 }, ...f32([0, 8]) }, data8)), /__metadata__.format must be a string/);
  await rejects(() => parse(rawFile({ __metadata__: 'pt', ...f32([0, 8]) }, data8)), /__metadata__ must be an object/);
  await rejects(() => parse(rawFile({ w: [0, 8] }, data8)), /"w": entry must be an object/);
  const ok = parse(rawFile({ __metadata__: { __proto__x: 'y' }, ...f32([0, 8]) }, data8));
  assert.deepEqual(ok.tensors.get('w')?.shape, [2]);
});

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 500 mutations either parse consistently or throw safetensors: errors', async () => {
  const base = concatBytes(serialize([
    { name: 'a.weight', dtype: 'F32', shape: [3, 4], data: new Float32Array(12).map((_, i) => i - 5) },
    { name: 'b.codes', dtype: 'F8_E4M3', shape: [2, 8], data: new Uint8Array(16).map((_, i) => i * 7) },
    { name: 'c.ids', dtype: 'I64', shape: [3], data: new Uint8Array(new BigInt64Array([1n, -2n, 3n]).buffer) },
    { name: 'd.half', dtype: 'BF16', shape: [5], data: new Uint16Array([0x3f80, 0, 0xbf80, 0x4000, 0x7f80]) },
  ]));
  const headerLen = readHeaderLength(base);
  const rand = rng(20250101);
  const pick = (n: number) => Math.floor(rand() * n);
  let parsed = 0;
  for (let iter = 0; iter < 500; iter++) {
    let buf = base.slice();
    const kind = iter % 5;
    if (kind === 0) buf = buf.slice(0, pick(buf.length)); // truncation
    else if (kind === 1) { // header length
      const dv = new DataView(buf.buffer);
      const choices = [0, 1, headerLen - 1, headerLen + 1, headerLen + 8, buf.length, 0xffffffff, pick(1 << 20)];
      dv.setUint32(0, choices[pick(choices.length)]!, true);
      if (rand() < 0.3) dv.setUint32(4, pick(1 << 16), true);
    } else if (kind === 2) { // byte flips in the header
      for (let k = 1 + pick(4); k > 0; k--) { const at = 8 + pick(headerLen); buf[at] = (buf[at] ?? 0) ^ (1 << pick(8)); }
    } else if (kind === 3) { // offset / shape digit edits
      const text = new TextDecoder().decode(buf.subarray(8, 8 + headerLen));
      const digits = [...text.matchAll(/\d/g)].map((m) => m.index);
      const at = digits[pick(digits.length)]!;
      buf[8 + at] = '0123456789-.e '.charCodeAt(pick(14));
    } else { // random byte at a random place, anywhere in the file
      buf[pick(buf.length)] = pick(256);
    }
    let maxRead = 0;
    const src = memorySource(buf);
    const spy = { size: src.size, read: (o: number, l: number) => { maxRead = Math.max(maxRead, l); return src.read(o, l); } };
    try {
      const f = await SafetensorsFile.open(spy);
      parsed++;
      for (const name of f.names()) {
        const info = f.info(name);
        assert.ok(info.begin >= f.header.dataStart && info.end <= buf.length && info.begin <= info.end);
        const v = await f.float32(name);
        assert.equal(v.length, numel(info.shape));
      }
    } catch (e) {
      assert.ok(e instanceof SafetensorsError, `mutation ${iter} (kind ${kind}) threw ${String(e)}`);
      assert.match(e.message, /^safetensors: /);
    }
    assert.ok(maxRead <= buf.length, `mutation ${iter}: read of ${maxRead} bytes from a ${buf.length}-byte file`);
  }
  assert.ok(parsed > 5 && parsed < 450, `some mutations parse, most do not (parsed ${parsed})`);
});
