// wasm backend vs the ts reference: odd shapes, all transposes, batching with broadcast, accumulate,
// 1 and 2 threads, resident and copied operands; flat memory over repeated calls; clean exit.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { tsMatMul } from '../ts.js';
import type { MatMulArgs } from '../registry.js';
import '../platform-node.js';
import { createWasmBackend, type WasmBackend } from './index.js';

const backends: WasmBackend[] = [];
after(() => { for (const b of backends) b.dispose?.(); });
async function make(threads: number, minParallelWork?: number): Promise<WasmBackend> {
  const b = await createWasmBackend(minParallelWork === undefined ? { threads } : { threads, minParallelWork });
  backends.push(b);
  return b;
}

let seed = 12345;
function rand(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; x[i] = seed / 2 ** 32 - 0.5; }
  return x;
}

/** Runs wasm and ts on the same args (fresh C with the same initial values) and returns max |diff|. */
function compare(be: WasmBackend, x: Omit<MatMulArgs, 'c'> & { cLen: number }, resident = false): number {
  const c0 = rand(x.cLen);
  const ref = c0.slice();
  tsMatMul({ ...x, c: ref });
  let a: Float32Array = x.a, b: Float32Array = x.b, c: Float32Array = c0.slice();
  if (resident) {
    a = be.allocF32(x.a.length); a.set(x.a);
    b = be.allocF32(x.b.length); b.set(x.b);
    const rc = be.allocF32(c.length); rc.set(c); c = rc;
  }
  be.kernels.MatMul!({ ...x, a, b, c });
  let e = 0;
  for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(ref[i]! - c[i]!));
  if (Number.isNaN(c.reduce((s, v) => s + v, 0))) e = Infinity;
  if (resident) { be.freeF32(a); be.freeF32(b); be.freeF32(c); }
  return e;
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 7, 5], [7, 1, 9], [7, 9, 1], [5, 13, 3], [129, 130, 7], [130, 129, 257], [1, 130, 129],
  [1, 4099, 33], [33, 17, 300], [121, 9, 258], [4, 2050, 6],
];

for (const threads of [1, 2]) {
  test(`MatMul matches ts on odd shapes, all transposes, threads=${threads}`, async () => {
    const be = await make(threads, 0); // minParallelWork 0: even tiny problems use every thread
    for (const [m, n, k] of SHAPES) {
      for (const transA of [false, true]) for (const transB of [false, true]) for (const accumulate of [false, true]) {
        const e = compare(be, { a: rand(m * k), b: rand(k * n), batch: 1, m, n, k, transA, transB, strideA: 0, strideB: 0, strideC: 0, accumulate, cLen: m * n });
        assert.ok(e < 1e-5 * Math.max(16, k), `m=${m} n=${n} k=${k} transA=${transA} transB=${transB} acc=${accumulate}: max err ${e}`);
      }
    }
  });

  test(`batched MatMul with stride-0 broadcast and resident operands, threads=${threads}`, async () => {
    const be = await make(threads, 0);
    for (const [batch, m, n, k] of [[3, 7, 9, 130], [4, 1, 33, 17], [8, 12, 5, 6], [2, 129, 8, 3]] as const) {
      for (const [bcastA, bcastB] of [[false, false], [true, false], [false, true]] as const) {
        for (const resident of [false, true]) {
          const x = {
            a: rand(bcastA ? m * k : batch * m * k), b: rand(bcastB ? k * n : batch * k * n), batch, m, n, k,
            transA: batch % 2 === 0, transB: bcastB, strideA: bcastA ? 0 : m * k, strideB: bcastB ? 0 : k * n,
            strideC: m * n, accumulate: resident, cLen: batch * m * n,
          };
          const e = compare(be, x, resident);
          assert.ok(e < 1e-4, `batch=${batch} m=${m} n=${n} k=${k} bcastA=${bcastA} bcastB=${bcastB} resident=${resident}: ${e}`);
        }
      }
    }
    // C with gaps between batch entries keeps the gap values.
    const e = compare(be, { a: rand(2 * 5 * 4), b: rand(4 * 6), batch: 2, m: 5, n: 6, k: 4, transA: false, transB: false, strideA: 20, strideB: 0, strideC: 40, accumulate: false, cLen: 70 });
    assert.ok(e < 1e-5, `gapped C: ${e}`);
    // C shared by every entry (strideC 0) with accumulate sums all products, in order.
    const e2 = compare(be, { a: rand(3 * 70 * 20), b: rand(20 * 90), batch: 3, m: 70, n: 90, k: 20, transA: false, transB: false, strideA: 1400, strideB: 0, strideC: 0, accumulate: true, cLen: 6300 });
    assert.ok(e2 < 1e-4, `shared C: ${e2}`);
  });
}

test('MatMul k=0 writes zeros (or leaves C when accumulating); too-short operands are a clear error', async () => {
  const be = await make(1);
  const c = new Float32Array([1, 2, 3, 4]);
  be.kernels.MatMul!({ a: new Float32Array(0), b: new Float32Array(0), c, batch: 1, m: 2, n: 2, k: 0, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: true });
  assert.deepEqual([...c], [1, 2, 3, 4]);
  be.kernels.MatMul!({ a: new Float32Array(0), b: new Float32Array(0), c, batch: 1, m: 2, n: 2, k: 0, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
  assert.deepEqual([...c], [0, 0, 0, 0]);
  assert.throws(() => be.kernels.MatMul!({ a: new Float32Array(3), b: new Float32Array(4), c, batch: 1, m: 2, n: 2, k: 2, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false }), /operand too short/);
});

test('wasm memory stays flat over 200 repeated calls (copied and resident operands)', async () => {
  const be = await make(2);
  const a = rand(96 * 80), b = rand(80 * 112), c = new Float32Array(96 * 112);
  const args = { a, b, c, batch: 1, m: 96, n: 112, k: 80, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false };
  be.kernels.MatMul!(args);
  const bytes = be.memory.buffer.byteLength;
  for (let i = 0; i < 200; i++) be.kernels.MatMul!(args);
  for (let i = 0; i < 200; i++) {
    const ra = be.allocF32(a.length); ra.set(a);
    be.kernels.MatMul!({ ...args, a: ra });
    be.freeF32(ra);
  }
  assert.equal(be.memory.buffer.byteLength, bytes);
  assert.ok(be.describe!().includes('2 threads'));
});

test('a 2-thread backend lets the process exit after dispose, and without dispose', () => {
  const url = new URL('./index.ts', import.meta.url).href, nodePlatform = new URL('../platform-node.ts', import.meta.url).href;
  for (const disposeIt of [true, false]) {
    const code = `import(${JSON.stringify(nodePlatform)}).then(() => import(${JSON.stringify(url)})).then(async (w) => {
      const be = await w.createWasmBackend({ threads: 2, minParallelWork: 0 });
      const a = new Float32Array(64 * 64).fill(1), c = new Float32Array(64 * 64);
      be.kernels.MatMul({ a, b: a, c, batch: 1, m: 64, n: 64, k: 64, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      if (${disposeIt}) await be.dispose();
      console.log('result', c[0], be.threads);
    });`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8', timeout: 15000 });
    assert.equal(r.signal, null, `child did not exit by itself (dispose=${disposeIt}); stderr: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /result 64 2/);
  }
});
