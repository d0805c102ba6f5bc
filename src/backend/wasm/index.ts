/**
 * The `wasm` backend: WebAssembly SIMD128 kernels (AssemblyScript, assembly/*.ts, embedded by
 * scripts/build-wasm.mjs) on one shared WebAssembly.Memory, with a pool of worker threads.
 * Kernels are synchronous: the calling thread publishes a job in the shared control block, computes
 * share 0 itself, and blocks in Atomics.wait until the workers finish theirs. Operands that live in
 * this backend's memory (arrays from `allocF32`) are used in place; any other array is copied into
 * one scratch block that is reused across calls (it only grows, so memory stays flat in steady state).
 * Browser-safe: workers come from the platform (platform.ts: worker_threads in Node, Blob Workers in
 * browsers); in a browser, threads > 1 need the backend to run inside a Worker (the page's main
 * thread may not Atomics.wait).
 */
import type { Backend, MatMulArgs } from '../registry.js';
import { kernelsWasmBase64 } from './kernels.generated.js';
import { WasmHeap } from './heap.js';
import { WORKER_SOURCE, type PoolWorker, type SpawnWorker, type WorkerInit } from './worker-source.js';
import { platform } from '../platform.js';

export type { SpawnWorker, WorkerInit, PoolWorker } from './worker-source.js';

/** Options of createWasmBackend. */
export interface WasmBackendOptions {
  /** Threads including the calling one (default: available cores, at most 8). */
  threads?: number;
  /** Upper bound of the shared memory in MB (default 4096). */
  maxMemoryMB?: number;
  /** How to start a worker (default: the platform's — worker_threads in Node, a Blob Worker in browsers). */
  spawnWorker?: SpawnWorker;
  /** Problems with batch·m·n·k below this run on the calling thread only (default 65536). */
  minParallelWork?: number;
}

/** The wasm backend, plus allocation of arrays that live in its memory (zero-copy operands). */
export interface WasmBackend extends Backend {
  readonly memory: WebAssembly.Memory;
  /** A zeroed Float32Array inside the backend's memory; kernels use it without copying. */
  allocF32(length: number): Float32Array;
  /** Returns an array from allocF32 to the allocator. */
  freeF32(arr: Float32Array): void;
}

const CTRL_GEN = 0, CTRL_QUIT = 1, CTRL_PENDING = 2, CTRL_NTH = 3, CTRL_ERR = 4, CTRL_JOB = 5;
const WORKER_SPIN = 20000;

let compiled: Promise<WebAssembly.Module> | null = null;
function kernelModule(): Promise<WebAssembly.Module> {
  if (!compiled) {
    const bin = atob(kernelsWasmBase64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    compiled = WebAssembly.compile(bytes);
  }
  return compiled;
}

interface KernelExports {
  runMatMul(job: number, tid: number, nth: number): void;
  heapBase(): number;
  PACK_STRIDE: WebAssembly.Global;
}


/** Creates a wasm backend with its own memory and `threads - 1` workers. */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  const module = await kernelModule();
  const plat = platform();
  const spawn = opts.spawnWorker ?? platformWorker;
  const cores = plat.parallelism();
  let threads = Math.floor(opts.threads ?? Math.min(cores, 8));
  if (!(threads >= 1 && threads <= 64)) throw new Error(`wasm backend: threads must be 1..64, got ${opts.threads}`);
  if (threads > 1 && !opts.spawnWorker && !plat.spawn) {
    if (opts.threads !== undefined) throw new Error(`wasm backend: ${threads} threads need workers, which this environment cannot start (no Worker); use threads: 1`);
    threads = 1;
  }
  const mainMayWait = plat.name === 'node' || typeof (globalThis as { window?: unknown }).window === 'undefined';
  if (!mainMayWait) threads = 1;

  const maxPages = Math.min(65536, Math.max(64, Math.floor((opts.maxMemoryMB ?? 4096) * 16)));
  const memory = new WebAssembly.Memory({ initial: 64, maximum: maxPages, shared: true });
  const exp = new WebAssembly.Instance(module, { env: { memory, abort() { throw new Error('wasm abort'); } } }).exports as unknown as KernelExports;
  const base = Math.ceil(exp.heapBase() / 64) * 64;
  const ctrlOff = base, jobOff = base + 64, packBase = base + 256;
  const packStride = exp.PACK_STRIDE.value as number;
  const heapStart = packBase + threads * packStride;
  const pages = Math.ceil(heapStart / 65536) + 16 - memory.buffer.byteLength / 65536;
  if (pages > 0) memory.grow(pages);

  const buffers = new Set<ArrayBufferLike>();
  let f32 = new Float32Array(memory.buffer);
  let i32 = new Int32Array(memory.buffer);
  const refresh = (): void => { buffers.add(memory.buffer); f32 = new Float32Array(memory.buffer); i32 = new Int32Array(memory.buffer); };
  refresh();
  const heap = new WasmHeap(memory, heapStart, refresh);
  const ctrl = new Int32Array(memory.buffer, ctrlOff, 8);

  const workers: PoolWorker[] = [];
  for (let tid = 1; tid < threads; tid++) {
    const init: WorkerInit = { module, memory, ctrl: ctrlOff, tid, spin: WORKER_SPIN };
    workers.push(spawn(init));
  }
  try {
    await Promise.all(workers.map((w) => w.ready));
  } catch (e) {
    for (const w of workers) w.terminate();
    throw e;
  }

  let scratchOff = -1, scratchBytes = 0;
  const minWork = opts.minParallelWork ?? 65536;
  let disposed = false;

  /** Byte offset of `arr` in wasm memory, copying its first `len` elements into scratch at `at` unless resident. */
  const place = (arr: Float32Array, len: number, at: number, copy: boolean): number => {
    if (buffers.has(arr.buffer)) return arr.byteOffset;
    if (copy) f32.set(len === arr.length ? arr : arr.subarray(0, len), at >> 2);
    return at;
  };
  const isResident = (arr: Float32Array): boolean => buffers.has(arr.buffer);

  function run(nth: number): void {
    if (nth === 1) { exp.runMatMul(jobOff, 0, 1); return; }
    Atomics.store(ctrl, CTRL_ERR, 0);
    Atomics.store(ctrl, CTRL_NTH, nth);
    Atomics.store(ctrl, CTRL_JOB, jobOff);
    Atomics.store(ctrl, CTRL_PENDING, nth - 1);
    Atomics.add(ctrl, CTRL_GEN, 1);
    Atomics.notify(ctrl, CTRL_GEN);
    exp.runMatMul(jobOff, 0, nth);
    let p: number;
    for (let i = 0; i < 2000 && Atomics.load(ctrl, CTRL_PENDING) !== 0; i++);
    let waited = 0;
    while ((p = Atomics.load(ctrl, CTRL_PENDING)) !== 0) {
      if (Atomics.wait(ctrl, CTRL_PENDING, p, 1000) === 'timed-out' && ++waited >= 300) {
        throw new Error(`wasm backend: ${p} worker thread(s) did not finish a MatMul in 300 s (a worker died?); rerun with --backend ts or --threads 1`);
      }
    }
    if (Atomics.load(ctrl, CTRL_ERR) !== 0) throw new Error('wasm backend: a worker trapped while running MatMul');
  }

  function MatMul(x: MatMulArgs): void {
    if (disposed) throw new Error('wasm backend: MatMul called after dispose(); create a new backend');
    const { batch, m, n, k } = x;
    if (batch <= 0 || m <= 0 || n <= 0) return;
    const extA = m * k + (batch - 1) * x.strideA, extB = k * n + (batch - 1) * x.strideB;
    const extC = m * n + (batch - 1) * x.strideC;
    if (x.a.length < extA || x.b.length < extB || x.c.length < extC) {
      throw new Error(`wasm MatMul: operand too short for batch=${batch} m=${m} n=${n} k=${k} (a ${x.a.length}/${extA}, b ${x.b.length}/${extB}, c ${x.c.length}/${extC} elements)`);
    }
    const copyCIn = x.accumulate || (batch > 1 && x.strideC !== m * n);
    const need = (isResident(x.a) ? 0 : pad(extA)) + (isResident(x.b) ? 0 : pad(extB)) + (isResident(x.c) ? 0 : pad(extC));
    if (need > scratchBytes) {
      if (scratchOff >= 0) heap.release(scratchOff);
      scratchBytes = Math.ceil(need * 1.25 / 65536) * 65536;
      scratchOff = heap.alloc(scratchBytes);
    }
    let at = scratchOff;
    const pa = place(x.a, extA, at, true); if (!isResident(x.a)) at += pad(extA);
    const pb = place(x.b, extB, at, true); if (!isResident(x.b)) at += pad(extB);
    const pc = place(x.c, extC, at, copyCIn);
    const j = jobOff >> 2;
    i32[j] = pa; i32[j + 1] = pb; i32[j + 2] = pc;
    i32[j + 3] = batch; i32[j + 4] = m; i32[j + 5] = n; i32[j + 6] = k;
    i32[j + 7] = x.transA ? 1 : 0; i32[j + 8] = x.transB ? 1 : 0;
    i32[j + 9] = x.strideA; i32[j + 10] = x.strideB; i32[j + 11] = x.strideC;
    i32[j + 12] = x.accumulate ? 1 : 0; i32[j + 13] = packBase; i32[j + 14] = 0;
    run(batch * m * n * k < minWork ? 1 : threads);
    if (!isResident(x.c)) x.c.set(f32.subarray(pc >> 2, (pc >> 2) + extC));
  }

  return {
    name: 'wasm',
    fallback: 'ts',
    threads,
    memory,
    kernels: { MatMul },
    allocF32(length: number): Float32Array {
      if (!(Number.isInteger(length) && length >= 0)) throw new Error(`wasm backend: allocF32 length must be a non-negative integer, got ${length}`);
      const off = heap.alloc(length * 4);
      const arr = new Float32Array(memory.buffer, off, length);
      // memory.buffer's identity can change (V8 renews it when any shared memory goes to a worker),
      // so residency is keyed by the buffer object each handed-out view was made on.
      buffers.add(arr.buffer);
      arr.fill(0);
      return arr;
    },
    freeF32(arr: Float32Array): void {
      if (!isResident(arr)) throw new Error('wasm backend: freeF32 got an array that was not allocated by this backend');
      heap.release(arr.byteOffset);
    },
    describe: () => `wasm (SIMD128 4x8 GEMM tile, ${threads} thread${threads > 1 ? 's' : ''}, shared memory ${(memory.buffer.byteLength / 2 ** 20).toFixed(0)} MB)`,
    dispose(): void {
      if (disposed) return;
      disposed = true;
      Atomics.store(ctrl, CTRL_QUIT, 1);
      Atomics.add(ctrl, CTRL_GEN, 1);
      Atomics.notify(ctrl, CTRL_GEN);
      for (const w of workers) w.terminate();
    },
  };
}

function pad(elems: number): number { return Math.ceil(elems * 4 / 64) * 64; }

/** Default: a platform worker running WORKER_SOURCE (worker_threads in Node, a Blob Worker in browsers). */
const platformWorker: SpawnWorker = (init) => {
  const w = platform().spawn!(`${WORKER_SOURCE}\nfunction main(init, api) { frugalWasmWorker(init, () => api.ready()); }`, init);
  const ready = w.ready.catch((e: Error) => { throw new Error(`wasm backend: worker ${init.tid}: ${e.message}`); });
  return { ready, terminate: () => w.terminate() };
};
