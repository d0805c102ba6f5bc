/**
 * What a backend needs from the environment it runs in — worker threads, core count, the native
 * addon, a WebGPU implementation — behind one interface, so the browser entry never names a Node
 * module (not even in a dynamic import a bundler would follow).
 *
 * Contract:
 * - The default platform is the browser one: workers are `Worker`s started from Blob URLs,
 *   cores come from `navigator.hardwareConcurrency`, WebGPU is `navigator.gpu`, and there is no
 *   native addon. Where `Worker` does not exist (e.g. Node without the Node platform) it reports
 *   one core and cannot spawn workers, so wasm runs on the calling thread.
 * - `platform-node.ts` (imported by every Node entry: src/node.ts, src/index-node.ts,
 *   src/backend/setup-node.ts) installs the Node platform: worker_threads, os cores, the addon
 *   loader, the `webgpu` npm package (Dawn). `setPlatform` may be called again to replace it.
 * - `nodePlatformMissing()` is true in Node when the Node platform was not installed: backend
 *   setup then names the fix (import a Node entry) instead of failing obscurely.
 */
import type { Backend } from './registry.js';

/** A started worker that runs a source text; `ready` resolves when it has said so. */
export interface SourceWorker {
  ready: Promise<void>;
  /** Posts a message (structured clone) to the worker. */
  post(msg: unknown): void;
  /** Called with each message the worker posts after its first ('ready'). */
  onMessage(fn: (msg: unknown) => void): void;
  terminate(): void;
}

/**
 * Starts a worker evaluating `source`, a plain-JavaScript script that defines
 * `function main(init, api)` (see `WorkerApi`). `init` is structured-cloned to it.
 */
export type SpawnSourceWorker = (source: string, init: unknown) => SourceWorker;

/** What the worker's main(init, api) receives. */
export interface WorkerApi {
  /** Sends to the thread that spawned it. */
  post(msg: unknown): void;
  /** Receives messages from it. */
  onMessage(fn: (msg: unknown) => void): void;
  /** Tells the spawner the worker is ready. */
  ready(): void;
  /** A WebGPU `GPU` object in this worker, or null with the reason in `gpuReason`. */
  gpu(): Promise<unknown>;
  gpuReason(): string;
}

/** The environment's services (see the file comment). */
export interface Platform {
  name: 'browser' | 'node';
  /** Cores this process may use. */
  parallelism(): number;
  /** Starts a worker running source; null when this environment cannot (no Worker). */
  spawn: SpawnSourceWorker | null;
  /** Loads the native backend (Node only): the backend, or null and why. */
  loadNative?: (opts: { threads?: number }) => Promise<{ backend: Backend | null; reason: string }>;
  /** Options a webgpu worker needs from the main thread (Node: where the `webgpu` package is). */
  webgpuInit?: () => { module: string } | { error: string };
}

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** Worker prelude for the browser: the api object over self / navigator.gpu. */
const BROWSER_PRELUDE = `
const __frugalApi = {
  post: (m) => postMessage(m),
  onMessage: (fn) => { self.onmessage = (e) => fn(e.data); },
  ready: () => postMessage('ready'),
  gpu: async () => (self.navigator && self.navigator.gpu) || null,
  gpuReason: () => 'navigator.gpu is absent in this worker (WebGPU needs a secure context and a browser that has it enabled)',
};
`;

const browserSpawn: SpawnSourceWorker = (source, init) => {
  const text = `${BROWSER_PRELUDE}\n${source}\nself.onmessage = (e) => { self.onmessage = null; main(e.data, __frugalApi); };`;
  const url = URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
  const w = new Worker(url);
  let handler: ((m: unknown) => void) | null = null;
  const ready = new Promise<void>((resolve, reject) => {
    w.onmessage = (e: MessageEvent) => {
      if (e.data === 'ready') { URL.revokeObjectURL(url); resolve(); return; }
      handler?.(e.data);
    };
    w.onerror = (e) => reject(new Error(`worker failed to start: ${e.message}`));
  });
  w.postMessage(init);
  return { ready, post: (m) => w.postMessage(m), onMessage: (fn) => { handler = fn; }, terminate: () => w.terminate() };
};

const browserPlatform: Platform = {
  name: 'browser',
  parallelism: () => (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1,
  spawn: typeof Worker === 'function' && typeof Blob === 'function' ? browserSpawn : null,
};

let current: Platform = browserPlatform;

/** The platform in use (the browser one unless a Node entry installed the Node one). */
export function platform(): Platform { return current; }

/** Installs a platform (platform-node.ts does this for Node). */
export function setPlatform(p: Platform): void { current = p; }

/** True in Node when no Node entry installed the Node platform. */
export function nodePlatformMissing(): boolean { return isNode && current.name !== 'node'; }

/** The fix to print when nodePlatformMissing(). */
export const NODE_PLATFORM_HINT = "the Node platform is not loaded: import 'frugal-lm' (its node export) or 'frugal-lm/node', or src/backend/setup-node.ts in this repository";
