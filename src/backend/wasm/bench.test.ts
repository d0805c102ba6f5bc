// `frugal bench gemm`: the suite table rejects unknown suites, and `--json` prints exactly one
// JSON array whose rows were checked against the ts reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../cli/bench.js';
import { UsageError } from '../../errors.js';

test('bench rejects an unknown suite with the list of known ones', async () => {
  await assert.rejects(run(['nope']), (e: unknown) => e instanceof UsageError && /unknown suite 'nope'.*gemm/.test(e.message));
});

test('bench gemm --quick --json --threads 1 prints one array of checked rows', async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
  let rc: number;
  try { rc = await run(['gemm', '--quick', '--json', '--threads', '1']); } finally { console.log = log; }
  assert.equal(rc, 0);
  assert.equal(lines.length, 1);
  const rows = JSON.parse(lines[0]!) as Array<Record<string, number | string>>;
  assert.ok(rows.some((r) => r.backend === 'wasm' && r.m === 1 && r.n === 4096 && r.k === 1024 && r.threads === 1));
  assert.ok(rows.some((r) => r.backend === 'ts' && r.m === 8));
  for (const r of rows) {
    assert.deepEqual(Object.keys(r).sort(), ['backend', 'gflops', 'k', 'm', 'maxAbsErr', 'n', 'threads', 'usPerCall']);
    assert.ok((r.gflops as number) > 0 && (r.maxAbsErr as number) < 1e-3, JSON.stringify(r));
  }
});
