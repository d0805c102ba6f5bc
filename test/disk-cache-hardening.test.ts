// The disk context cache never hangs and never serves another model's rows (issue #18, items 3
// and 5): a FIFO named like a cache entry (found at start-up, or swapped in later) and a dangling
// symlink are skipped instead of blocking the event loop or stopping start-up; the cache key is a
// content hash of the weights, so weights replaced with the same size and mtime (`cp -p`,
// `rsync -a`) get new rows and the continuation the model computes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { loadModel, saveModel } from '../src/model/load-node.js';
import { DiskCache } from '../src/infer/disk-cache-node.js';
import { latentRowWidth } from '../src/infer/prefix-cache.js';
import { generate } from '../src/infer/generate.js';
import { modelFingerprint } from '../src/serve/model-node.js';

const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-dc-hard-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
const hasMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

test('a FIFO or dangling symlink in the cache folder is skipped, never blocks (item 3)', { skip: !hasMkfifo && 'needs mkfifo' }, () => {
  // In a child process with a deadline: a blocked synchronous open would hang this one for good.
  const script = `
    import { mkdirSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
    import { spawnSync } from 'node:child_process';
    import path from 'node:path';
    import { DiskCache } from ${JSON.stringify(path.join(root, 'src/infer/disk-cache-node.ts'))};
    const dir = ${JSON.stringify(path.join(work, 'fifo-cache'))};
    mkdirSync(dir, { recursive: true });
    const W = 4, U = 8, logs = [];
    const opts = { dir, modelId: 'm', rowWidth: W, unit: U, log: (m) => logs.push(m) };
    const toks = Array.from({ length: 20 }, (_, i) => i + 1), other = toks.map((t) => t + 100);
    const rows = (a, b) => new Float32Array((b - a) * W).fill(1);
    new DiskCache(opts).save(toks, rows);
    new DiskCache(opts).save(other, rows);
    const files = readdirSync(dir).sort();
    // At start-up: every unit file of toks becomes a FIFO, plus a dangling symlink named like an entry.
    const first = new DiskCache(opts);
    for (const f of files.slice(0, 2)) { rmSync(path.join(dir, f)); spawnSync('mkfifo', [path.join(dir, f)]); }
    symlinkSync('/nonexistent/frugal', path.join(dir, 'f'.repeat(64) + '.kv'));
    const atStart = new DiskCache(opts);
    const a = atStart.lookup(toks, 19, 0), b = atStart.lookup(other, 19, 0);
    // Swapped in after indexing: the read itself must not block either.
    const c = first.lookup(toks, 19, 0), d = first.lookup(other, 19, 0);
    process.stdout.write(JSON.stringify({ a: a?.length ?? null, b: b?.length ?? null, c: c?.length ?? null, d: d?.length ?? null, logs }));
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, timeout: 30_000, encoding: 'utf8' });
  assert.equal(r.signal, null, `the cache blocked (killed after 30 s): ${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(r.stdout) as { a: number | null; b: number | null; c: number | null; d: number | null; logs: string[] };
  // Which two files were FIFOs depends on key order, so count: across both prompts 2 units of 4 hit.
  const hits = (x: number | null): number => (x ?? 0) / 8;
  assert.equal(hits(got.a) + hits(got.b), 2, JSON.stringify(got));
  assert.equal(hits(got.c) + hits(got.d), 2, JSON.stringify(got));
  assert.ok(got.logs.some((m) => /is not a regular file; ignored/.test(m)), got.logs.join('\n'));
  assert.ok(got.logs.some((m) => /is not a regular file; treated as a miss/.test(m)), got.logs.join('\n'));
});

test('weights replaced with the same size and mtime get a new cache identity and correct output (item 5)', async () => {
  const cfg = structuredClone(presets.tiny!);
  cfg.maxPositionEmbeddings = 256;
  const dir = path.join(work, 'model');
  await saveModel(dir, cfg, initParams(cfg, { seed: 1 }));
  const file = path.join(dir, 'model.safetensors');
  const stamp = 1_700_000_000; // whole seconds: set exactly, as `cp -p` keeps it
  utimesSync(file, stamp, stamp);
  const before = statSync(file);
  const a = await loadModel(dir);
  const prompt = Array.from({ length: 70 }, (_, i) => (i * 37 + 11) % 500);
  const cacheDir = path.join(work, 'kv');
  const W = latentRowWidth(cfg);
  const storeA = new DiskCache({ dir: cacheDir, modelId: modelFingerprint(a), rowWidth: W, log: () => undefined });
  generate(a, prompt, { greedy: true, maxTokens: 1, prefixStore: storeA });
  assert.equal(storeA.stats().writes, 1, 'one 64-token unit cached for model A');
  // `cp -p` / `rsync -a` of other weights: same file size, same mtime.
  await saveModel(dir, cfg, initParams(cfg, { seed: 2 }));
  utimesSync(file, stamp, stamp);
  const after = statSync(file);
  assert.equal(after.size, before.size);
  assert.equal(after.mtimeMs, before.mtimeMs);
  const b = await loadModel(dir);
  assert.notEqual(modelFingerprint(b), modelFingerprint(a));
  assert.equal(modelFingerprint(b), modelFingerprint(await loadModel(dir)), 'the same weights give the same identity');
  assert.notEqual(modelFingerprint(b, 'weights=bf16'), modelFingerprint(b), 'decode precision is part of the identity');
  const storeB = new DiskCache({ dir: cacheDir, modelId: modelFingerprint(b), rowWidth: W, log: () => undefined });
  assert.equal(storeB.lookup(prompt, 69, 0), null, "model B never sees model A's rows");
  const withCache = generate(b, prompt, { greedy: true, maxTokens: 8, prefixStore: storeB });
  const fresh = generate(b, prompt, { greedy: true, maxTokens: 8 });
  assert.deepEqual(withCache.tokens, fresh.tokens);
  assert.equal(withCache.cachedTokens, 0);
});
