// Tests for node-side safetensors: lazy file source, model directories (single, sharded, glob),
// path-traversal and duplicate checks, FP8 auto-dequantisation, atomic writes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsError, dequantizeFp8Weight, readHeaderLength } from './safetensors.js';
import { SafetensorsModel, fileSource, writeSafetensors } from './safetensors-node.js';
import { rejects } from './safetensors-assert-node.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'frugal-st-'));


const vec = (name: string, values: number[]) => ({ name, dtype: 'F32' as const, shape: [values.length], data: new Float32Array(values) });

test('fileSource reads at offsets without loading the file', () => {
  const src = fileSource(path.join(REF, 'tiny-dsv3/model.safetensors'));
  try {
    assert.equal(src.size, 1597928);
    assert.equal(readHeaderLength(src.read(0, 8) as Uint8Array), 14720);
    assert.throws(() => src.read(src.size - 4, 8), /outside/);
  } finally {
    src.close();
  }
  assert.throws(() => src.read(0, 8), /closed/);
  assert.throws(() => fileSource('/nonexistent/x.safetensors'), /^SafetensorsError: safetensors: cannot open/);
});

test('SafetensorsModel on tiny-dsv3-fp8 dequantises FP8 weights automatically', async () => {
  const m = await SafetensorsModel.open(path.join(REF, 'tiny-dsv3-fp8'));
  try {
    assert.deepEqual(m.fp8Block, [128, 128]); // from config.json quantization_config
    const name = 'model.layers.0.mlp.down_proj.weight';
    assert.equal(m.info(name).dtype, 'F8_E4M3');
    assert.deepEqual(m.info(name).shape, [256, 384]);
    const w = await m.float32(name);
    const want = dequantizeFp8Weight(await m.bytes(name), await m.float32(`${name}_scale_inv`), 256, 384);
    assert.deepEqual(w, want);
    assert.ok(w.some((x, i) => Math.abs(x) > 1e-3 && i > 0), 'values are scaled, not raw codes');
    assert.ok(Math.max(...w.map(Math.abs)) < 1, 'N(0, 1/fan_in) weights stay small after dequantisation');
    assert.deepEqual((await m.float32('model.embed_tokens.weight')).length, 256 * 256);
    await rejects(() => m.float32('nope.weight'), /no tensor named "nope.weight"/);
  } finally {
    m.close();
  }
});

test('sharded directory with model.safetensors.index.json', async () => {
  const dir = tmpDir();
  await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), [vec('a.weight', [1, 2]), vec('b.weight', [3])]);
  await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), [vec('c.weight', [4, 5, 6])]);
  const index = (map: Record<string, string>) =>
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: map }));
  index({ 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
  const m = await SafetensorsModel.open(dir);
  assert.deepEqual(m.names(), ['a.weight', 'b.weight', 'c.weight']);
  assert.equal(m.shardOf('c.weight').name, 'model-00002-of-00002.safetensors');
  assert.deepEqual([...(await m.float32('c.weight'))], [4, 5, 6]);
  assert.deepEqual([...(await m.float32('a.weight'))], [1, 2]);
  m.close();

  for (const evil of ['../model-00001-of-00002.safetensors', '/etc/passwd', 'sub/x.safetensors', '..', 'C:\\x.safetensors']) {
    index({ 'a.weight': evil });
    await rejects(() => SafetensorsModel.open(dir), /must be a plain file name inside the model directory/);
  }
  index({ 'a.weight': 'model-00002-of-00002.safetensors', 'c.weight': 'model-00002-of-00002.safetensors' });
  await rejects(() => SafetensorsModel.open(dir), /maps "a.weight" to model-00002-of-00002.safetensors, but .* does not hold it/);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), '{"weight_map": [');
  await rejects(() => SafetensorsModel.open(dir), /cannot read JSON/);
  fs.rmSync(dir, { recursive: true });
});

test('directory without index: every *.safetensors, duplicates across shards rejected', async () => {
  const dir = tmpDir();
  await writeSafetensors(path.join(dir, 'one.safetensors'), [vec('x', [1])]);
  await writeSafetensors(path.join(dir, 'two.safetensors'), [vec('y', [2])]);
  const m = await SafetensorsModel.open(dir);
  assert.deepEqual(m.names(), ['x', 'y']);
  m.close();
  await writeSafetensors(path.join(dir, 'three.safetensors'), [vec('x', [3])]);
  await rejects(() => SafetensorsModel.open(dir), /tensor "x" is in both one.safetensors and three.safetensors/);
  const single = await SafetensorsModel.open(path.join(dir, 'two.safetensors')); // a file path works too
  assert.deepEqual(single.names(), ['y']);
  single.close();
  fs.writeFileSync(path.join(dir, 'bad.safetensors'), new Uint8Array([1, 2, 3]));
  await rejects(() => SafetensorsModel.open(path.join(dir, 'bad.safetensors')), /bad.safetensors: file is 3 bytes/);
  const empty = tmpDir();
  await rejects(() => SafetensorsModel.open(empty), /no model.safetensors, model.safetensors.index.json or \*.safetensors/);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(empty, { recursive: true });
});

test('FP8 weight with a mis-shaped scale_inv is an error naming the tensor', async () => {
  const dir = tmpDir();
  await writeSafetensors(path.join(dir, 'model.safetensors'), [
    { name: 'p.weight', dtype: 'F8_E4M3', shape: [130, 4], data: new Uint8Array(520).fill(0x38) },
    { name: 'p.weight_scale_inv', dtype: 'F32', shape: [1, 1], data: new Float32Array([0.5]) },
    { name: 'q.weight', dtype: 'F8_E4M3', shape: [130, 4], data: new Uint8Array(520).fill(0x38) },
    { name: 'q.weight_scale_inv', dtype: 'F32', shape: [2, 1], data: new Float32Array([0.5, 4]) },
  ]);
  const m = await SafetensorsModel.open(dir);
  await rejects(() => m.float32('p.weight'), /"p.weight_scale_inv": shape \[1, 1\] should be \[2, 1\]/);
  const q = await m.float32('q.weight');
  assert.equal(q[0], 0.5);
  assert.equal(q[128 * 4], 4); // second row block, partial
  m.close();
  fs.rmSync(dir, { recursive: true });
});

test('writeSafetensors is atomic: failures leave the previous file and no temp files', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'model.safetensors');
  await writeSafetensors(file, [vec('w', [1, 2, 3])], { format: 'pt', step: '1' });
  const before = fs.readFileSync(file);
  await rejects(() => writeSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [4], data: new Float32Array(3) }]), /"w".*needs 16 bytes/);
  fs.mkdirSync(path.join(dir, 'blocker.safetensors')); // rename onto a directory fails after the temp write
  await rejects(() => writeSafetensors(path.join(dir, 'blocker.safetensors'), [vec('w', [9])]), /cannot write/);
  assert.deepEqual(fs.readFileSync(file), before);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['blocker.safetensors', 'model.safetensors']);
  const m = await SafetensorsModel.open(file);
  assert.deepEqual([...(await m.float32('w'))], [1, 2, 3]);
  m.close();
  fs.rmSync(dir, { recursive: true });
});

test('rewriting a reference file reproduces it byte for byte', async () => {
  const src = path.join(REF, 'tiny-dsv3-fp8/model.safetensors');
  const m = await SafetensorsModel.open(src);
  const tensors = [];
  for (const name of m.names()) {
    const { dtype, shape } = m.info(name);
    tensors.push({ name, dtype, shape, data: await m.bytes(name) });
  }
  m.close();
  const dir = tmpDir();
  await writeSafetensors(path.join(dir, 'copy.safetensors'), tensors);
  assert.ok(fs.readFileSync(path.join(dir, 'copy.safetensors')).equals(fs.readFileSync(src)));
  fs.rmSync(dir, { recursive: true });
});
