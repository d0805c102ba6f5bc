// The model verbs as a user runs them: `frugal logits --json` against the reference logits
// (1e-4), `frugal generate --tokens --greedy` against the reference continuation (with and without
// --speculative), `frugal info --json` against the parameters actually loaded, and usage errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { cli } from './cli-capture.js';
import { loadModel } from '../src/model/load-node.js';
import { paramEntries } from '../src/model/deepseek.js';

const DIR = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const skip = !existsSync(DIR);

test('frugal logits --json matches the reference logits (naive, absorb, incremental)', { skip }, async () => {
  const v = JSON.parse(readFileSync(path.join(DIR, 'vectors.json'), 'utf8'));
  for (const s of v.sequences.slice(0, 2)) {
    for (const [attn, inc, key] of [['absorb', false, 'logits_full_absorb'], ['naive', false, 'logits_full_naive'], ['absorb', true, 'logits_decode_absorb']] as const) {
      const args = ['logits', '--model', DIR, '--tokens', s.tokens.join(','), '--attn', attn, '--json', ...(inc ? ['--incremental'] : [])];
      const r = await cli(args);
      assert.equal(r.code, 0, r.err);
      const parsed = JSON.parse(r.out) as { logits: number[][] };
      assert.deepEqual(Object.keys(parsed), ['logits']);
      assert.equal(parsed.logits.length, s.tokens.length);
      const want = s[key].data as number[];
      let d = 0;
      parsed.logits.flat().forEach((x, i) => { d = Math.max(d, Math.abs(x - want[i]!)); });
      assert.ok(d < 1e-4, `${s.name} ${attn}${inc ? ' incremental' : ''}: max |Δ| ${d}`);
    }
  }
});

test('frugal generate --tokens --greedy prints the reference continuation', { skip }, async () => {
  const g = JSON.parse(readFileSync(path.join(DIR, 'vectors.json'), 'utf8')).greedy;
  for (const extra of [[], ['--speculative']]) {
    const r = await cli(['generate', '--model', DIR, '--tokens', g.prompt.join(','), '--greedy', '--ignore-eos', '--max-tokens', String(g.max_new_tokens), ...extra]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out.trim().split(' ').map(Number), g.new_tokens);
    if (extra.length) assert.match(r.err, /MTP acceptance/);
  }
  const noTok = await cli(['generate', '--model', DIR, '--prompt', 'hello']);
  assert.equal(noTok.code, 2);
  assert.match(noTok.err, /tokenizer\.json/);
});

test('frugal info --json counts the parameters the model loads', { skip }, async () => {
  const r = await cli(['info', '--model', DIR, '--json']);
  assert.equal(r.code, 0, r.err);
  const info = JSON.parse(r.out);
  const { cfg, params } = await loadModel(DIR);
  const main = paramEntries(params, cfg).filter(([n]) => !n.startsWith(`model.layers.${cfg.numHiddenLayers}.`));
  assert.equal(info.parameters.total, main.reduce((s, [, t]) => s + t.size, 0));
  assert.ok(info.parameters.activatedPerToken < info.parameters.total);
  assert.equal(info.kvCache.valuesPerTokenPerLayer, cfg.kvLoraRank + cfg.qkRopeHeadDim);
  assert.equal(info.kvCache.mlaLatentBytesPerToken, 2 * cfg.numHiddenLayers * (cfg.kvLoraRank + cfg.qkRopeHeadDim));
  assert.ok(info.kvCache.mhaBytesPerToken > info.kvCache.mlaLatentBytesPerToken);
});

test('model verbs: usage errors are exit code 2 with a message', { skip }, async () => {
  for (const args of [['logits', '--model', DIR], ['logits', '--model', DIR, '--tokens', '1,x'], ['logits', '--model', '/nonexistent', '--tokens', '1'],
    ['logits', '--model', DIR, '--tokens', '1', '--attn', 'flash'], ['generate', '--model', DIR, '--tokens', '1', '--top-p', '0'], ['info']]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.ok(r.err.length > 10);
  }
  assert.equal((await cli(['logits', '--help'])).code, 0);
});
