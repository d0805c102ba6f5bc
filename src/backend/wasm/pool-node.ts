/**
 * Node side of the wasm backend's thread pool: workers are `worker_threads` evaluating
 * WORKER_SOURCE. Workers are unref()'d, so a backend that is never disposed still lets the
 * process exit.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { WORKER_SOURCE, type SpawnWorker } from './worker-source.js';

/** Spawns one pool worker as a Node worker thread. */
export const spawnNodeWorker: SpawnWorker = (init) => {
  // Works whether the eval'd code is treated as CommonJS or as a module; no loaders (execArgv: []).
  const src = `${WORKER_SOURCE}\nimport('node:worker_threads').then(({ parentPort, workerData }) =>\n` +
    `  frugalWasmWorker(workerData, () => parentPort.postMessage('ready')));`;
  const w = new Worker(src, { eval: true, workerData: init, execArgv: [] });
  w.unref();
  const ready = new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', (e) => reject(new Error(`wasm backend: worker ${init.tid} failed to start: ${e.message}`)));
    w.once('exit', (code) => reject(new Error(`wasm backend: worker ${init.tid} exited with code ${code} before it was ready`)));
  });
  return { ready, terminate: () => { void w.terminate(); } };
};

/** Cores this process may use. */
export function nodeParallelism(): number { return availableParallelism(); }
