/**
 * Backends under test (Node, for test files): every backend this process can start — `ts` always,
 * `wasm`, and `native` where its addon loaded — so that golden and op tests run on the backends
 * users actually get, not only on the reference.
 *
 * Contract:
 * - `backendsUnderTest()` starts each backend once (2 threads, so threaded paths run too), leaves
 *   the previously active backend active, and returns the names that started, `ts` first.
 * - `FRUGAL_EXPECT_BACKENDS=ts,wasm,native` (set by .ci/run) turns a backend that did not start
 *   into an error naming it and the reason; `FRUGAL_FORBID_BACKENDS=native` does the opposite
 *   (the fallback pass must really run without the addon). Without them a missing backend is
 *   printed as a `#` line and skipped.
 * - `withBackend(name, fn)` runs fn with that backend active and restores the previous one, also
 *   when fn throws.
 */
import { getBackend, setBackend } from './registry.js';
import { useBackend, describeBackend } from './setup.js';

let started: Promise<string[]> | null = null;
const reasons = new Map<string, string>();

/** Names from a comma-separated environment variable. */
function envList(name: string): string[] {
  return (process.env[name] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

async function startAll(): Promise<string[]> {
  const prev = getBackend().name;
  const names = ['ts'];
  for (const name of ['wasm', 'native'] as const) {
    try {
      await useBackend(name, { threads: 2 });
      names.push(name);
    } catch (e) {
      reasons.set(name, (e as Error).message);
    }
  }
  setBackend(prev);
  const missing = envList('FRUGAL_EXPECT_BACKENDS').filter((n) => !names.includes(n));
  if (missing.length) {
    throw new Error(`backends expected by FRUGAL_EXPECT_BACKENDS did not start: ${missing.map((n) => `${n} (${reasons.get(n) ?? 'unknown backend'})`).join('; ')}`);
  }
  const forbidden = envList('FRUGAL_FORBID_BACKENDS').filter((n) => names.includes(n));
  if (forbidden.length) throw new Error(`backends forbidden by FRUGAL_FORBID_BACKENDS started anyway: ${forbidden.join(', ')}`);
  for (const [n, why] of reasons) console.log(`# backend ${n} not under test: ${why}`);
  return names;
}

/** Every backend this process can run, `ts` first (memoised; see the contract). */
export function backendsUnderTest(): Promise<string[]> {
  started ??= startAll();
  return started;
}

/** Why a backend is not under test ('' when it is). */
export function whyNotUnderTest(name: string): string { return reasons.get(name) ?? ''; }

/** Runs fn with backend `name` active, then restores the previous backend. */
export async function withBackend<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const prev = getBackend().name;
  setBackend(name);
  try { return await fn(); } finally { setBackend(prev); }
}

export { describeBackend };
