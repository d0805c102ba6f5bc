/**
 * Choosing the backend for a run: `auto` takes `native` where its addon loaded (Node), else
 * `wasm`, else `ts`; `webgpu` is used only when asked for (it is a separate GPU thread behind a
 * synchronous facade, see webgpu/index.ts). A named backend that cannot start is an error that
 * says why. Returns a one-line description of what will run, for the run's log.
 * `disposeBackends()` stops worker threads so a CLI process exits by itself.
 *
 * Contract: browser-safe — everything environment-specific comes from platform.ts (Node entries
 * install the Node platform), so no bundler following this file's imports meets a `node:*` module.
 */
import { getBackendByName, registerBackend, setBackend, getBackend, unregisterBackend, type Backend } from './registry.js';
import { platform, nodePlatformMissing, NODE_PLATFORM_HINT } from './platform.js';
import { createWasmBackend } from './wasm/index.js';
import { createWebGPUBackend } from './webgpu/index.js';
import './index.js';

export type BackendChoice = 'auto' | 'ts' | 'wasm' | 'native' | 'webgpu';
/** Every backend name useBackend accepts. */
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'ts', 'wasm', 'native', 'webgpu'];
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
const started: Backend[] = [];
let nativeReason = '';

async function startWasm(threads: number | undefined): Promise<Backend> {
  const existing = getBackendByName('wasm');
  if (existing && (threads === undefined || existing.threads === threads)) return existing;
  const b = await createWasmBackend(threads === undefined ? {} : { threads });
  registerBackend(b);
  started.push(b);
  return b;
}

async function startNative(threads: number | undefined): Promise<Backend | null> {
  if (!isNode) { nativeReason = 'not running in Node'; return null; }
  if (nodePlatformMissing()) { nativeReason = NODE_PLATFORM_HINT; return null; }
  const existing = getBackendByName('native') as (Backend & { setThreads?: (n: number) => void }) | undefined;
  if (existing) {
    if (threads !== undefined && existing.threads !== threads) existing.setThreads?.(threads);
    return existing;
  }
  const load = platform().loadNative;
  if (!load) { nativeReason = 'this platform has no native addon'; return null; }
  try {
    const { backend, reason } = await load(threads === undefined ? {} : { threads });
    if (!backend) { nativeReason = reason; return null; }
    registerBackend(backend);
    started.push(backend);
    return backend;
  } catch (e) {
    nativeReason = (e as Error).message;
    return null;
  }
}

async function startWebGPU(): Promise<Backend> {
  const existing = getBackendByName('webgpu');
  if (existing) return existing;
  // FRUGAL_WEBGPU_RESIDENT=0 measures the backend without residency; FRUGAL_WEBGPU_VERIFY=1 (tests) checks it.
  const env = isNode ? process.env : {};
  const b = await createWebGPUBackend({ resident: env.FRUGAL_WEBGPU_RESIDENT !== '0', verifyResidency: env.FRUGAL_WEBGPU_VERIFY === '1' });
  registerBackend(b);
  started.push(b);
  return b;
}

/** Activates a backend; returns it. */
export async function useBackend(choice: BackendChoice = 'auto', opts: { threads?: number } = {}): Promise<Backend> {
  const threads = opts.threads;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new Error(`--threads must be an integer 1..64, got ${threads}`);
  if (!BACKEND_CHOICES.includes(choice)) throw new Error(`unknown backend '${String(choice)}' (choose one of ${BACKEND_CHOICES.join(', ')})`);
  if (choice === 'ts') return setBackend('ts');
  if (choice === 'webgpu') {
    try {
      return setBackend((await startWebGPU()).name);
    } catch (e) {
      throw new Error(`backend 'webgpu' is not available: ${(e as Error).message}`);
    }
  }
  if (choice === 'native' || choice === 'auto') {
    if (choice === 'auto' && isNode && process.env.FRUGAL_BACKEND) return useBackend(process.env.FRUGAL_BACKEND as BackendChoice, opts);
    const n = await startNative(threads);
    if (n) return setBackend(n.name);
    if (choice === 'native') throw new Error(`backend 'native' is not available: ${nativeReason} (run \`npm run build\` with a C++ compiler, or use --backend wasm)`);
  }
  try {
    const w = await startWasm(threads);
    return setBackend(w.name);
  } catch (e) {
    if (choice === 'wasm') throw new Error(`backend 'wasm' failed to start: ${(e as Error).message}`);
    return setBackend('ts');
  }
}

/** One line: which backend, threads, and why a faster one was not used. */
export function describeBackend(): string {
  const b = getBackend();
  const d = b.describe ? b.describe() : b.name;
  return nativeReason && b.name !== 'native' ? `${d} (native unavailable: ${nativeReason})` : d;
}

/** Stops worker threads of every backend started here and unregisters them (`ts` is active after). */
export async function disposeBackends(): Promise<void> {
  for (const b of started.splice(0)) {
    await b.dispose?.();
    unregisterBackend(b.name);
  }
}
