/**
 * The Node platform (see platform.ts): worker_threads workers, os cores, the native addon, and
 * WebGPU through the `webgpu` npm package (Dawn). Importing this file installs it; every Node
 * entry does (src/node.ts, src/index-node.ts, setup-node.ts). Never imported by the browser entry.
 *
 * Contract:
 * - Workers evaluate their source with `eval: true`, no exec arguments (no loaders), and are
 *   unref()'d, so a backend that is never disposed still lets the process exit.
 * - `webgpuInit()` resolves the `webgpu` package from this package's location; when it is not
 *   installed it returns the error to show (`npm install webgpu`), and nothing is downloaded.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { setPlatform, type Platform, type SpawnSourceWorker } from './platform.js';
import { loadNativeBackend, nativeUnavailableReason } from './native-node.js';

/** The worker-side api for Node (parentPort; WebGPU from the `webgpu` package, kept referenced). */
const NODE_PRELUDE = `
const __frugalStart = (main) => import('node:worker_threads').then(({ parentPort, workerData }) => {
  let gpuObj = null, gpuWhy = '';
  const api = {
    post: (m) => parentPort.postMessage(m),
    onMessage: (fn) => parentPort.on('message', fn),
    ready: () => parentPort.postMessage('ready'),
    gpu: async () => {
      if (gpuObj) return gpuObj;
      const mod = workerData && workerData.__webgpu;
      if (!mod) { gpuWhy = (workerData && workerData.__webgpuError) || 'no webgpu module'; return null; }
      try {
        const { create, globals } = await import(mod);
        Object.assign(globalThis, globals);
        gpuObj = create([]);
        globalThis.__frugalGpu = gpuObj; // Dawn lives as long as this reference
        return gpuObj;
      } catch (e) { gpuWhy = 'the webgpu package failed to load: ' + e.message; return null; }
    },
    gpuReason: () => gpuWhy,
  };
  main(workerData, api);
});
`;

const nodeSpawn: SpawnSourceWorker = (source, init) => {
  const text = `${NODE_PRELUDE}\n${source}\n__frugalStart(main);`;
  const w = new Worker(text, { eval: true, workerData: init, execArgv: [] });
  w.unref();
  // Only 'ready' is awaited here: a lasting 'message' listener would keep the process alive.
  const ready = new Promise<void>((resolve, reject) => {
    w.once('message', () => resolve());
    w.once('error', (e) => reject(new Error(`worker failed to start: ${e.message}`)));
    w.once('exit', (code) => reject(new Error(`worker exited with code ${code} before it was ready`)));
  });
  return { ready, post: (m) => w.postMessage(m), onMessage: (fn) => { void ready.then(() => w.on('message', fn)); }, terminate: () => { void w.terminate(); } };
};

const require = createRequire(import.meta.url);

/** The Node platform object. */
export const nodePlatform: Platform = {
  name: 'node',
  parallelism: () => availableParallelism(),
  spawn: nodeSpawn,
  loadNative: async (opts) => {
    const backend = loadNativeBackend(opts);
    return { backend, reason: backend ? '' : nativeUnavailableReason() ?? 'addon not built' };
  },
  webgpuInit: () => {
    try {
      return { module: pathToFileURL(require.resolve('webgpu')).href };
    } catch {
      return { error: "the 'webgpu' npm package (Dawn) is not installed: run `npm install webgpu` (it ships prebuilt binaries; nothing is downloaded at install)" };
    }
  },
};

setPlatform(nodePlatform);
