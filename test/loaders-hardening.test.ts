// Hostile model files never crash, hang or lie (issue #18, items 2, 4, 6, 7): what config.json
// implies is checked against the weights and the memory limit before anything is allocated (also
// for `frugal train --config deepseek-v3`); a tokenizer id of 1e9 is refused at once; an MTP copy
// of embed/head never overwrites the main tensor; NaN/Inf weights are refused, naming the tensor.
// Every hostile file is made here, in a temp folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { presets, toHFConfig } from '../src/model/config.js';
import { initParams, paramEntries } from '../src/model/deepseek.js';
import { loadModel, saveModel } from '../src/model/load-node.js';
import { writeSafetensors } from '../src/io/safetensors-node.js';
import { trainBpe } from '../src/io/bpe.js';
import { Tokenizer } from '../src/io/tokenizer.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { run as train } from '../src/cli/train.js';

const work = mkdtempSync(path.join(tmpdir(), 'frugal-loaders-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const cfg = structuredClone(presets.tiny!);
const params = initParams(cfg, { seed: 7 });

/** A model folder with the tiny preset's weights; `edit` changes tensors (by HF name) before writing. */
async function modelDir(name: string, edit: (n: string, data: Float32Array) => Float32Array = (_n, d) => d, config: Record<string, unknown> = {}): Promise<string> {
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  const seen = new Set<string>();
  const tensors = [];
  for (const [n, t] of paramEntries(params, cfg)) {
    if (seen.has(n)) continue;
    seen.add(n);
    tensors.push({ name: n, dtype: 'F32' as const, shape: t.shape.slice(), data: edit(n, (t.data as Float32Array).slice()) });
  }
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...toHFConfig(cfg), ...config }));
  return dir;
}

test('config.json that implies more than the weights hold is refused before allocating (item 2)', async () => {
  const many = await modelDir('many-layers', undefined, { num_hidden_layers: 3000 });
  await assert.rejects(loadModel(many), /implies 2\.\d+e\+8 parameters in \d+ tensors, but the weights hold \d+ in \d+: config\.json does not describe these weights/);
  const wide = await modelDir('wide', undefined, { hidden_size: 2 ** 20 });
  await assert.rejects(loadModel(wide), /config\.json implies .* but the weights hold/);
  const huge = await modelDir('huge', undefined, { hidden_size: 2 ** 31 });
  await assert.rejects(loadModel(huge), /hidden_size must be at most 2147483647, got 2147483648/);
  const layers = await modelDir('layers', undefined, { num_hidden_layers: 1e6 });
  await assert.rejects(loadModel(layers), /num_hidden_layers must be at most 65536, got 1000000/);
  // A genuine model over the memory limit is refused by the limit, not by the OOM killer.
  const ok = await modelDir('ok');
  await assert.rejects(loadModel(ok, { maxBytes: 100_000 }), /loading its [\d.]+K parameters needs [\d.]+ MiB, over the 97\.7 KiB limit/);
  assert.equal((await loadModel(ok)).cfg.hiddenSize, 64);
});

test('frugal train --config deepseek-v3 is refused up front: it cannot fit this machine (item 2)', async () => {
  const data = path.join(work, 'd.txt');
  writeFileSync(data, 'some text. '.repeat(200));
  await assert.rejects(train(['--config', 'deepseek-v3', '--data', data, '--out', path.join(work, 'v3run'), '--quiet', '--backend', 'ts']),
    /--config deepseek-v3: training its 6[\d.]+B parameters needs [\d.]+ TiB, over the [\d.]+ [GMT]iB limit; train a preset sized for a CPU/);
});

test('a tokenizer.json id of 1e9 is refused at once, before the library sizes tables by it (item 4)', { timeout: 10_000 }, async () => {
  const json = trainBpe(['hello world, hello tokens. '.repeat(40)], { vocabSize: 300 }) as { model: { vocab: Record<string, number> }; added_tokens: Array<{ id: number }> };
  const dir = path.join(work, 'tok');
  mkdirSync(dir);
  const bad = structuredClone(json);
  bad.model.vocab[Object.keys(bad.model.vocab)[7]!] = 1e9;
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(bad));
  await assert.rejects(loadTokenizer(dir), /model\.vocab\[".*"\] has id 1000000000; ids must be integers in \[0, 4194304\)/);
  const added = structuredClone(json);
  added.added_tokens[0]!.id = 2 ** 40;
  assert.throws(() => Tokenizer.fromJSON(added), /added_tokens\[0\] has id 1099511627776/);
  const negative = structuredClone(json);
  negative.model.vocab[Object.keys(negative.model.vocab)[3]!] = -1;
  assert.throws(() => Tokenizer.fromJSON(negative), /has id -1/);
  assert.ok(Tokenizer.fromJSON(json).vocabSize > 256, 'the untouched file still loads');
});

test('an MTP copy of embed/head that differs never overwrites the main tensor (item 6)', async () => {
  const L = cfg.numHiddenLayers;
  const dir = await modelDir('mtp-copies', (n, d) => (n === `model.layers.${L}.embed_tokens.weight` || n === `model.layers.${L}.shared_head.head.weight` ? d.map((x) => x + 0.5) : d));
  const m = await loadModel(dir);
  assert.deepEqual(m.params.embed.f32, params.embed.f32, 'main embedding as stored');
  assert.deepEqual(m.params.head.f32, params.head.f32, 'main head as stored');
  assert.deepEqual(m.params.mtp[0]!.embed.f32, params.embed.f32.map((x) => Math.fround(x + 0.5)), 'MTP embedding as stored');
  assert.deepEqual(m.params.mtp[0]!.head.f32, params.head.f32.map((x) => Math.fround(x + 0.5)), 'MTP head as stored');
  assert.equal(m.notes.length, 2);
  // Identical copies stay shared (DeepSeek-V3's tied MTP embedding and head).
  const same = await loadModel(await modelDir('mtp-same'));
  assert.equal(same.params.mtp[0]!.embed, same.params.embed);
  assert.equal(same.params.mtp[0]!.head, same.params.head);
  assert.deepEqual(same.notes, []);
  // Saving what was loaded writes both copies back unchanged.
  const again = path.join(work, 'mtp-resaved');
  await saveModel(again, m.cfg, m.params);
  const back = await loadModel(again);
  assert.deepEqual(back.params.mtp[0]!.embed.f32, m.params.mtp[0]!.embed.f32);
  assert.deepEqual(back.params.embed.f32, m.params.embed.f32);
});

test('NaN or Inf weights are refused, naming the tensor (item 7)', async () => {
  const nan = await modelDir('nan', (n, d) => { if (n === 'model.layers.1.self_attn.o_proj.weight') d[5] = NaN; return d; });
  await assert.rejects(loadModel(nan), /tensor model\.layers\.1\.self_attn\.o_proj\.weight in .* holds 1 non-finite value\(s\) \(NaN\/Inf; first at index 5\)/);
  const inf = await modelDir('inf', (n, d) => { if (n === 'lm_head.weight') { d[0] = Infinity; d[9] = -Infinity; } return d; });
  await assert.rejects(loadModel(inf), /tensor lm_head\.weight .* holds 2 non-finite/);
  assert.ok(readFileSync(path.join(nan, 'model.safetensors')).length > 0, 'the file is left as it was');
});
