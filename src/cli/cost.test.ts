import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from './cost.js';

async function capture(argv: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
  try { return { code: await run(argv), out: lines.join('\n') }; } finally { console.log = orig; }
}

test('frugal cost --json prints one object with the anchors', async () => {
  const { code, out } = await capture(['--config', 'deepseek-v3', '--json']);
  assert.equal(code, 0);
  const j = JSON.parse(out) as { params: { total: number; active: number; mtp: number }; flopsPerToken: number; gpuHours: number; usd: number; days: number; kvCacheBytesPerToken: number };
  assert.ok(Math.abs(j.params.total / 671e9 - 1) < 0.005);
  assert.ok(j.params.mtp > 11e9 && j.params.mtp < 12e9);
  assert.ok(Math.abs(j.gpuHours / 2.664e6 - 1) < 0.05);
  assert.equal(j.kvCacheBytesPerToken, 70272);
  assert.ok(j.days > 50 && j.days < 60);
});

test('frugal cost table, llama preset, and bad input', async () => {
  const { out } = await capture(['--config', 'llama-3.1-405b', '--gpu', 'h100', '--seq', '8192']);
  assert.match(out, /KV cache per token \(BF16\)\s+516,096 B/);
  await assert.rejects(run(['--config', 'nope-model']), /neither a preset/);
  await assert.rejects(run(['--gpu', 'tpu']), /--gpu must be one of h800/);
  await assert.rejects(run(['--mfu', '2']), /mfu must be in/);
  assert.match((await capture(['--help'])).out, /usage: frugal cost/);
});
