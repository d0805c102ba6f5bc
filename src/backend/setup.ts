/**
 * Choosing the backend for a run: `auto` takes `native` where its addon loaded (Node), else
 * `wasm`, else `ts`; a named backend that cannot start is an error that says why. Returns a
 * one-line description of what will run, for the run's log. `disposeBackends()` stops worker
 * threads so a CLI process exits by itself.
 */
import { getBackendByName, registerBackend, setBackend, getBackend, unregisterBackend, type Backend } from './registry.js';
import './index.js';

export type BackendChoice = 'auto' | 'ts' | 'wasm' | 'native';
const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
const started: Backend[] = [];
let nativeReason = '';

async function startWasm(threads: number | undefined): Promise<Backend> {
  const existing = getBackendByName('wasm');
  if (existing && (threads === undefined || existing.threads === threads)) return existing;
  const { createWasmBackend } = await import('./wasm/index.js');
  const b = await createWasmBackend(threads === undefined ? {} : { threads });
  registerBackend(b);
  started.push(b);
  return b;
}

async function startNative(threads: number | undefined): Promise<Backend | null> {
  if (!isNode) { nativeReason = 'not running in Node'; return null; }
  const existing = getBackendByName('native') as (Backend & { setThreads?: (n: number) => void }) | undefined;
  if (existing) {
    if (threads !== undefined && existing.threads !== threads) existing.setThreads?.(threads);
    return existing;
  }
  try {
    const modPath = './native-node.js';
    const mod = (await import(modPath)) as { loadNativeBackend?: (o?: { threads?: number }) => Backend | null; nativeUnavailableReason?: () => string };
    const b = mod.loadNativeBackend?.(threads === undefined ? {} : { threads }) ?? null;
    if (!b) { nativeReason = mod.nativeUnavailableReason?.() ?? 'addon not built'; return null; }
    registerBackend(b);
    started.push(b);
    return b;
  } catch (e) {
    nativeReason = (e as Error).message;
    return null;
  }
}

/** Activates a backend; returns it. */
export async function useBackend(choice: BackendChoice = 'auto', opts: { threads?: number } = {}): Promise<Backend> {
  const threads = opts.threads;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new Error(`--threads must be an integer 1..64, got ${threads}`);
  if (choice === 'ts') return setBackend('ts');
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
