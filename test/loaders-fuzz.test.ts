// Fuzzing every loader (issue #18 "Proof"): thousands of mutated safetensors, config.json,
// tokenizer.json, tokenizer_config.json and disk-cache files per run, each ending in a load that
// checks out or the loader's own clear error — never another exception, a hang (each loader runs in
// a child process with a deadline) or memory beyond a stated bound (peak RSS under 1 GiB).
// FRUGAL_FUZZ_ITERS / FRUGAL_FUZZ_SEED run longer or other cases; a failure names the iteration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';

const root = process.cwd();
const iterations = Number(process.env.FRUGAL_FUZZ_ITERS ?? 2000);
const seed = Number(process.env.FRUGAL_FUZZ_SEED ?? 1);
/** Safety cap on one loader's run (the count above normally ends it in 1–3 s). */
const capMs = Math.max(15_000, iterations * 8);
const PEAK_RSS_MB = 1024;

for (const target of ['safetensors', 'config', 'tokenizer', 'tokenizer-config', 'disk-cache']) {
  test(`fuzz ${target}: ${iterations} mutated inputs, each a correct load or a clear error`, () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'test/fuzz/run-fuzz.ts'), target, String(iterations), String(capMs), String(seed)],
      { cwd: root, encoding: 'utf8', timeout: capMs + 30_000 });
    assert.equal(r.signal, null, `the ${target} fuzzer hung or was killed (${r.signal}); stderr: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as { tried: number; loaded: number; errors: Record<string, number>; failures: string[]; slowestMs: number; peakRssMb: number };
    assert.deepEqual(s.failures, [], `inputs that crashed the ${target} loader (seed ${seed})`);
    assert.ok(s.tried >= Math.min(iterations, 1000), `only ${s.tried} inputs tried`);
    assert.ok(s.peakRssMb < PEAK_RSS_MB, `peak RSS ${s.peakRssMb} MiB`);
    const errors = Object.values(s.errors).reduce((a, b) => a + b, 0);
    assert.equal(s.loaded + errors, s.tried);
    assert.ok(s.loaded > 0, 'some mutations still load (the checks after a load ran)');
    if (target !== 'disk-cache') assert.ok(errors > s.tried / 10, `the mutations reach the loader's checks (${errors} errors)`);
  });
}
