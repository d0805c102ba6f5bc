// `frugal experiment fp8` bookkeeping: every finished (recipe, seed) run is saved at once, a rerun
// without --resume refuses to overwrite it, --resume reuses it (and trains only what is missing),
// --report-only rebuilds fp8.json from the saved runs, and the summary's seed statistics are right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../src/cli/experiment.js';
import { UsageError } from '../src/errors.js';
import { pairedGaps, sd, type RunResult } from '../src/cli/experiment-report.js';

const quiet = async <T>(f: () => Promise<T>): Promise<T> => {
  const log = console.log, err = console.error;
  console.log = () => {}; console.error = () => {};
  try { return await f(); } finally { console.log = log; console.error = err; }
};

test('experiment fp8: runs saved per (recipe, seed), never overwritten, resumed, and reported', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'frugal-exp-'));
  const base = ['fp8', '--config', 'tiny', '--steps', '2', '--batch', '2', '--seq', '16', '--eval-every', '1', '--val-batches', '4', '--backend', 'ts', '--out', dir];
  try {
    await quiet(() => run([...base, '--recipes', 'fp32,fp8', '--seeds', '1,2']));
    const files = (await readdir(path.join(dir, 'fp8-runs'))).sort();
    assert.deepEqual(files, ['fp32-seed1.json', 'fp32-seed2.json', 'fp8-seed1.json', 'fp8-seed2.json']);
    const first = await readFile(path.join(dir, 'fp8-runs', 'fp8-seed1.json'), 'utf8');
    await assert.rejects(quiet(() => run([...base, '--recipes', 'fp32,fp8', '--seeds', '1,2'])), (e) => e instanceof UsageError && /add --resume/.test(e.message));
    // Resume: the four runs are reused untouched; only the ablation is trained.
    await quiet(() => run([...base, '--recipes', 'fp32,fp8', '--seeds', '1,2', '--ablations', 'fp8:no-recompute', '--resume']));
    assert.equal(await readFile(path.join(dir, 'fp8-runs', 'fp8-seed1.json'), 'utf8'), first);
    assert.ok((await readdir(path.join(dir, 'fp8-runs'))).includes('fp8_no-recompute-seed1.json'));
    const j = JSON.parse(await readFile(path.join(dir, 'fp8.json'), 'utf8'));
    assert.deepEqual(j.seeds, [1, 2]);
    for (const k of ['relativeGap', 'memoryRatio', 'relativeGapMean', 'relativeGapSd', 'fp32SeedSd', 'msPerStep', 'fp32', 'fp8', 'ablations']) assert.ok(k in j, `fp8.json lacks ${k}`);
    assert.equal(j.ablations[0].recipe, 'fp8:no-recompute');
    assert.ok(j.msPerStep.fp8 > 0 && j.msPerStep.fp32 > 0);
    const runs = j.runs as RunResult[];
    const gaps = pairedGaps(runs, 'fp8', 'fp32').map((g) => g.gap);
    assert.equal(gaps.length, 2);
    assert.ok(Math.abs(j.relativeGapMean - (gaps[0]! + gaps[1]!) / 2) < 1e-12);
    assert.ok(Math.abs(j.relativeGapSd - Math.abs(gaps[0]! - gaps[1]!) / Math.SQRT2) < 1e-12);
    // Different settings do not mix: a report-only pass with another --steps finds nothing.
    await assert.rejects(quiet(() => run([...base.map((a) => (a === '2' ? '3' : a)), '--report-only'])), /no finished runs/);
    await quiet(() => run([...base, '--report-only']));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sample standard deviation', () => {
  assert.equal(sd([1]), 0);
  assert.ok(Math.abs(sd([1, 2, 3, 4]) - Math.sqrt(5 / 3)) < 1e-12);
});
