// `bench all` hands each suite only the options in its own spec: values travel with their option,
// an option no suite knows is a usage error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { argsFor, SUITES } from './bench.js';
import { UsageError } from './main.js';
import type { OptionSpec } from './args.js';

test('argsFor keeps a suite\'s own options (with their values) and reports the rest', async () => {
  const gemm = await SUITES.gemm!.options(), model = await SUITES.train!.options();
  const known: OptionSpec = { ...gemm, ...model };
  const argv = ['--quick', '--config', 'tiny', '--write', '--threads=2', '--no-peer'];
  const dropped: string[] = [];
  assert.deepEqual(argsFor(argv, gemm, known, dropped), ['--quick', '--threads=2', '--no-peer']);
  assert.deepEqual(dropped, ['--config tiny', '--write']);
  assert.deepEqual(argsFor(argv, model, known), argv);
  assert.throws(() => argsFor(['--bogus'], gemm, known), (e: unknown) => e instanceof UsageError && /no suite accepts --bogus/.test(e.message));
  assert.throws(() => argsFor(['--config'], gemm, known), /--config needs a value/);
  assert.throws(() => argsFor(['tiny'], gemm, known), /unexpected argument 'tiny'/);
});
