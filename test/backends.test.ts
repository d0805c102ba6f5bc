// Every op that dispatches to a kernel, and a whole model forward/backward (test/kernel-cases.ts), on
// every backend that can start in this process — webgpu included where an adapter exists — against
// the `ts` reference backend (odd shapes included). The browser tests run the same cases in a page.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { useBackend, disposeBackends, describeBackend } from '../src/backend/setup-node.js';
import { backendsUnderTest, whyNotUnderTest, withBackend } from '../src/backend/testing-node.js';
import { worstError } from '../src/ops/compare.js';
import { setBackend, listBackends, kernelCounts, resetKernelCounts } from '../src/backend/registry.js';
import * as op from '../src/ops/index.js';
import { randn } from '../src/ops/gradcheck.js';
import { kernelCases as run } from './kernel-cases.js';

after(() => disposeBackends());

test('every backend agrees with ts', async () => {
  const names = (await backendsUnderTest({ webgpu: true })).filter((n) => n !== 'ts');
  // wasm starts in every Node 20 process: comparing no backend at all would be a silent pass.
  assert.ok(names.includes('wasm'), `wasm did not start: ${whyNotUnderTest('wasm')}`);
  setBackend('ts');
  const ref = run();
  for (const name of names) {
    await withBackend(name, () => {
      resetKernelCounts();
      const got = run();
      assert.ok(Object.keys(kernelCounts()).some((k) => k.startsWith(name + ':')), `${name} ran none of its kernels`);
      assert.equal(got.length, ref.length);
      got.forEach((g, i) => {
        const { worst, index } = worstError(g, ref[i]!, 1e-4, 1e-3);
        assert.ok(worst <= 1, `${name} output ${i}: element ${index} off by ${worst.toFixed(2)}× tolerance`);
      });
    });
  }
  console.log(`# backends compared with ts: ${names.join(', ')} (available: ${listBackends().join(', ')})`);
});

test('the backend a user gets by default is the one CI expects (FRUGAL_EXPECT_DEFAULT)', async () => {
  const want = process.env.FRUGAL_EXPECT_DEFAULT;
  const b = await useBackend('auto');
  try {
    console.log(`# default backend: ${describeBackend()}`);
    if (want) assert.equal(b.name, want, `auto chose ${b.name}, CI expects ${want}: ${describeBackend()}`);
    else assert.ok(['native', 'wasm'].includes(b.name), `auto fell back to ${b.name}: ${describeBackend()}`);
  } finally { setBackend('ts'); }
});

test('a disposed backend is not reused: the next run starts a fresh one', async () => {
  await useBackend('wasm', { threads: 2 });
  await disposeBackends();
  assert.equal(listBackends().includes('wasm'), false);
  await useBackend('wasm', { threads: 2 });
  const y = op.matmul(randn([9, 33], 1), randn([33, 5], 2));
  assert.equal(y.size, 45);
  await disposeBackends();
});
