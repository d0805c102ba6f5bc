// Memory stays flat over many training-style steps: no growth of the JS heap, of ArrayBuffer
// backing stores (where activations and gradients live), of the wasm backend's memory, or of the
// native side (the C allocator's bytes in use, which holds the addon's buffers and Node's
// ArrayBuffer stores) per step (gradients are freed after backward; scratch buffers are reused).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { useBackend, disposeBackends } from '../src/backend/setup-node.js';
import { getBackend } from '../src/backend/registry.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, zeroGrad } from '../src/autograd/tape.js';
import { initParams, lossFn, trainableParams } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
after(() => disposeBackends());

for (const choice of ['wasm', 'auto'] as const) test(`heap and backend memory are flat across training steps (${choice})`, async () => {
  await useBackend(choice, { threads: 2 });
  const cfg = presets.tiny!;
  const p = initParams(cfg, { seed: 5 });
  const params = trainableParams(p, cfg);
  const inp = Tensor.ints(Array.from({ length: 32 }, (_, i) => (i * 13) % cfg.vocabSize), [2, 16]);
  const tgt = Tensor.ints(Array.from({ length: 32 }, (_, i) => (i * 29) % cfg.vocabSize), [32]);
  const step = (): void => {
    zeroGrad(params);
    const r = lossFn(p, cfg, inp, tgt, { mtpWeight: 0.3, recompute: true });
    backward(r.loss);
    for (const t of params) { const d = t.f32, g = t.grad!; for (let i = 0; i < d.length; i++) d[i]! -= 1e-3 * g[i]!; }
  };
  const b = getBackend() as { name: string; memory?: WebAssembly.Memory; addon?: { mallocInUse?: () => number } };
  const wasmBytes = (): number => b.memory?.buffer.byteLength ?? 0;
  const nativeBytes = (): number => b.addon?.mallocInUse?.() ?? -1;
  for (let i = 0; i < 5; i++) step();
  gc(); gc();
  const heap0 = process.memoryUsage().heapUsed, ab0 = process.memoryUsage().arrayBuffers, wasm0 = wasmBytes(), native0 = nativeBytes();
  for (let i = 0; i < 40; i++) step();
  gc(); gc();
  const heap1 = process.memoryUsage().heapUsed, ab1 = process.memoryUsage().arrayBuffers, wasm1 = wasmBytes(), native1 = nativeBytes();
  const mb = (x: number): string => (x / 1e6).toFixed(2);
  console.log(`# backend ${b.name}: heap ${mb(heap0)} -> ${mb(heap1)} MB, array buffers ${mb(ab0)} -> ${mb(ab1)} MB, wasm ${wasm0} -> ${wasm1} bytes, native malloc ${mb(native0)} -> ${mb(native1)} MB over 40 steps`);
  assert.equal(wasm1, wasm0, 'wasm memory grew');
  assert.ok(heap1 - heap0 < 2e6, `JS heap grew by ${mb(heap1 - heap0)} MB over 40 steps`);
  assert.ok(ab1 - ab0 < 2e6, `ArrayBuffer memory grew by ${mb(ab1 - ab0)} MB over 40 steps`);
  if (b.name === 'native') {
    assert.ok(native0 > 0, 'the addon reports the C allocator\'s bytes in use (glibc)');
    // The C heap also holds transient blocks outside Frugal's control (V8 compiles hot functions
    // in malloc'd zones on a background thread; a pool worker first joining a job allocates its
    // scratch once), so a leak is growth in two windows in a row, each held to the same 2 MB.
    for (let i = 0; i < 40; i++) step();
    gc(); gc();
    const native2 = nativeBytes();
    console.log(`# native malloc ${mb(native1)} -> ${mb(native2)} MB over the next 40 steps`);
    assert.ok(Math.min(native1 - native0, native2 - native1) < 2e6, `native (malloc) memory grew by ${mb(native1 - native0)} then ${mb(native2 - native1)} MB over two windows of 40 steps`);
  }
});
