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
  const src = `const { parentPort, workerData } = require('node:worker_threads');\n${WORKER_SOURCE}\n` +
    `frugalWasmWorker(workerData, () => parentPort.postMessage('ready'));`;
  const w = new Worker(src, { eval: true, workerData: init });
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
