/**
 * Backends under test (Node, for test files): every backend this process can start — `ts` always,
 * `wasm`, `native` where its addon loaded, and (for tests that ask: `{ webgpu: true }`) `webgpu`
 * where the `webgpu` package finds an adapter — so that golden and op tests run on the backends
 * users actually get, not only on the reference. WebGPU is opt-in per test file because without a
 * GPU it runs on a software Vulkan (SwiftShader), where every kernel call costs milliseconds.
 *
 * Contract:
 * - `backendsUnderTest(opts)` starts each backend once (2 threads, so threaded paths run too), leaves
 *   the previously active backend active, and returns the names that started, `ts` first.
 * - `FRUGAL_EXPECT_BACKENDS=ts,wasm,native` (set by .ci/run) turns a backend that did not start
 *   into an error naming it and the reason; `FRUGAL_FORBID_BACKENDS=native` does the opposite
 *   (the fallback pass must really run without the addon). Without them a missing backend is
 *   printed as a `#` line and skipped.
 * - WebGPU without a GPU: when VK_ICD_FILENAMES is unset and Debian chromium's SwiftShader Vulkan
 *   driver exists, it is used (the same software GPU the browser tests run on); a real driver can
 *   be chosen by setting VK_ICD_FILENAMES.
 * - WebGPU under test runs with FRUGAL_WEBGPU_VERIFY=1 (unless set): every resident hit is checked
 *   against a host snapshot, so a write to a parameter without a version bump is an error.
 * - `withBackend(name, fn)` runs fn with that backend active and restores the previous one, also
 *   when fn throws.
 */
import { existsSync } from 'node:fs';
import { getBackend, setBackend } from './registry.js';
import { useBackend, describeBackend } from './setup-node.js';

/** The software Vulkan driver Debian's chromium package ships (used by WebGPU tests without a GPU). */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
let started: Promise<string[]> | null = null;
let startedGpu: Promise<string[]> | null = null;
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
  return check(names, ['webgpu']);
}

async function startWebGPU(): Promise<string[]> {
  const names = [...await backendsUnderTest()];
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  // Tests check every resident hit: a parameter written without a version bump fails loudly.
  process.env.FRUGAL_WEBGPU_VERIFY ??= '1';
  const prev = getBackend().name;
  try {
    await useBackend('webgpu');
    names.push('webgpu');
    reasons.delete('webgpu');
  } catch (e) {
    reasons.set('webgpu', (e as Error).message);
  }
  setBackend(prev);
  return check(names, []);
}

/** Applies FRUGAL_EXPECT_BACKENDS / FRUGAL_FORBID_BACKENDS (except the names in `notTried`). */
function check(names: string[], notTried: string[]): string[] {
  const missing = envList('FRUGAL_EXPECT_BACKENDS').filter((n) => !names.includes(n) && !notTried.includes(n));
  if (missing.length) {
    throw new Error(`backends expected by FRUGAL_EXPECT_BACKENDS did not start: ${missing.map((n) => `${n} (${reasons.get(n) ?? 'unknown backend'})`).join('; ')}`);
  }
  const forbidden = envList('FRUGAL_FORBID_BACKENDS').filter((n) => names.includes(n));
  if (forbidden.length) throw new Error(`backends forbidden by FRUGAL_FORBID_BACKENDS started anyway: ${forbidden.join(', ')}`);
  for (const [n, why] of reasons) console.log(`# backend ${n} not under test: ${why}`);
  return [...names];
}

/** Every backend this process can run, `ts` first (memoised; see the contract). */
export function backendsUnderTest(opts: { webgpu?: boolean } = {}): Promise<string[]> {
  if (opts.webgpu) {
    startedGpu ??= startWebGPU();
    return startedGpu;
  }
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
