// The GGUF verbs as a user runs them: `frugal export --format gguf` (types, notes, refusals),
// then `frugal logits|generate|info --model FILE.gguf` against the reference vectors, with
// `--weights q8_0`, and the usage errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cli } from './cli-capture.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const DIR = path.join(REF, 'tiny-dsv3');
const skip = !existsSync(DIR);
const work = mkdtempSync(path.join(tmpdir(), 'frugal-cli-gguf-'));
after(() => rmSync(work, { recursive: true, force: true }));

test('frugal export --format gguf, then logits/generate/info read the file', { skip }, async () => {
  const file = path.join(work, 'tiny.gguf');
  const e = await cli(['export', '--model', DIR, '--format', 'gguf', '--type', 'f32', '--out', file]);
  assert.equal(e.code, 0, e.err);
  assert.match(e.err, /deepseek2, 52 tensors, f32; vocabulary: generated/);
  assert.match(e.err, /MTP layer\(s\) not written/);
  const v = JSON.parse(readFileSync(path.join(DIR, 'vectors.json'), 'utf8'));
  const s = v.sequences[1];
  for (const inc of [false, true]) {
    const r = await cli(['logits', '--model', file, '--tokens', s.tokens.join(','), '--json', ...(inc ? ['--incremental'] : [])]);
    assert.equal(r.code, 0, r.err);
    const got = (JSON.parse(r.out) as { logits: number[][] }).logits.flat();
    const want = s[inc ? 'logits_decode_absorb' : 'logits_full_absorb'].data as number[];
    assert.ok(got.every((x, i) => Math.abs(x - want[i]!) < 1e-4), 'logits from the GGUF file match the reference');
  }
  const g = await cli(['generate', '--model', file, '--tokens', v.greedy.prompt.join(','), '--greedy', '--max-tokens', '16', '--ignore-eos']);
  assert.equal(g.code, 0, g.err);
  assert.equal(g.out.trim(), v.greedy.new_tokens.join(' '));
  const i = await cli(['info', '--model', file, '--json']);
  assert.equal(i.code, 0, i.err);
  const info = JSON.parse(i.out);
  assert.equal(info.gguf.fileType, 'F32');
  assert.equal(info.parameters.total, 250_000);
  const p = await cli(['generate', '--model', file, '--prompt', 'hi']);
  assert.equal(p.code, 2);
  assert.match(p.err, /--prompt needs a tokenizer.*generated vocabulary/);
});

test('q8_0 export: generate --weights q8_0 runs the file\'s blocks; bad types and flags are usage errors', { skip }, async () => {
  const file = path.join(work, 'tiny-q8.gguf');
  const e = await cli(['export', '--model', DIR, '--type', 'q8_0', '--out', file]);
  assert.equal(e.code, 0, e.err);
  assert.match(e.err, /3 tensors stay F16 \(ne\[0\] not a multiple of 32/);
  const g = await cli(['generate', '--model', file, '--tokens', '1,2,3', '--greedy', '--max-tokens', '4', '--weights', 'q8_0']);
  assert.equal(g.code, 0, g.err);
  assert.match(g.err, /Q8_0 decode weights .*blocks as stored in the GGUF file/);
  assert.equal(g.out.trim().split(' ').length, 4);
  assert.equal((await cli(['export', '--model', DIR, '--type', 'q4_k'])).code, 2);
  assert.equal((await cli(['export', '--model', DIR, '--format', 'onnx'])).code, 2);
  assert.equal((await cli(['generate', '--model', file, '--tokens', '1', '--weights', 'int4'])).code, 2);
  const junk = path.join(work, 'junk.gguf');
  writeFileSync(junk, 'GGUF' + '\0'.repeat(100));
  const j = await cli(['info', '--model', junk]);
  assert.equal(j.code, 1);
  assert.match(j.err, /gguf: .*junk\.gguf: unsupported GGUF version 0/);
});

test('export refuses a model llama.cpp would load wrong (26 layers with a q LoRA), naming why', { skip }, async () => {
  const dir = path.join(work, 'deep26');
  mkdirSync(dir);
  const cfg = JSON.parse(readFileSync(path.join(DIR, 'config.json'), 'utf8'));
  cfg.num_hidden_layers = 26;
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  copyFileSync(path.join(DIR, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  // The weights do not match 26 layers, so refuse from the config before loading them.
  const r = await cli(['export', '--model', dir, '--out', path.join(work, 'x.gguf')]);
  assert.equal(r.code, 1);
  assert.match(r.err, /"V2-Lite".*q_lora_rank 32/);
  assert.ok(!existsSync(path.join(work, 'x.gguf')));
});
