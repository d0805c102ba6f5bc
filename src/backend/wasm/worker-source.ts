/**
 * The body every pool worker runs, as plain JavaScript source (it is eval'd in a Node worker or
 * loaded from a Blob in a browser Worker, so it must not depend on the bundler or transpiler).
 * `frugalWasmWorker(init, ready)` instantiates the kernel module on the shared memory, calls
 * ready(), then blocks in Atomics.wait on the control block until the main thread publishes a job:
 * ctrl words (i32): 0 generation, 1 quit, 2 pending workers, 3 threads in this job, 4 error flag,
 * 5 job descriptor pointer. A worker whose tid < threads runs its share and decrements `pending`;
 * the last one wakes the main thread.
 */
export const WORKER_SOURCE = `
function frugalWasmWorker(init, ready) {
  const inst = new WebAssembly.Instance(init.module, { env: { memory: init.memory, abort() { throw new Error('wasm abort'); } } });
  const run = inst.exports.runMatMul;
  const ctrl = new Int32Array(init.memory.buffer, init.ctrl, 8);
  let gen = Atomics.load(ctrl, 0); // before ready(): a job published right after must not be missed
  ready();
  for (;;) {
    for (let i = 0; i < init.spin && Atomics.load(ctrl, 0) === gen; i++);
    // Timed wait: a lost wake-up can delay a job by at most a second, never hang it.
    if (Atomics.load(ctrl, 0) === gen) { Atomics.wait(ctrl, 0, gen, 1000); continue; }
    gen = Atomics.load(ctrl, 0);
    if (Atomics.load(ctrl, 1) !== 0) return;
    const nth = Atomics.load(ctrl, 3);
    if (init.tid < nth) {
      try { run(Atomics.load(ctrl, 5), init.tid, nth); } catch (e) { Atomics.store(ctrl, 4, 1); }
      if (Atomics.sub(ctrl, 2, 1) === 1) Atomics.notify(ctrl, 2);
    }
  }
}
`;

/** What a worker is started with (structured-cloned: the module and the shared memory). */
export interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte offset of the control block. */
  ctrl: number;
  /** Thread index, 1..threads-1 (the calling thread is 0). */
  tid: number;
  /** Polls of the generation word before sleeping in Atomics.wait. */
  spin: number;
}

/** A started worker: resolves `ready` once it waits for jobs. */
export interface PoolWorker { ready: Promise<void>; terminate(): void }

/** Starts one worker running WORKER_SOURCE (default: the platform's worker, see platform.ts). */
export type SpawnWorker = (init: WorkerInit) => PoolWorker;
