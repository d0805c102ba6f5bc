/**
 * Per-kernel wall time for the profiling scripts (bench/profile.ts, bench/fp8-profile.ts).
 *
 * Contract:
 * - `timeKernels()` wraps every registry kernel of the active backend and of its fallbacks with a
 *   timer, once per process, and clears the registry's resolved-kernel cache so the wrappers run.
 * - The returned map accumulates ms and calls per `backend:kernel` until the caller clears it.
 */
import { getBackend, getBackendByName, setBackend, type Kernels } from '../src/backend/registry.js';

export type KernelTimes = Map<string, { ms: number; calls: number }>;

/** Wraps the active backend's kernels (and its fallbacks') with timers; returns their running totals. */
export function timeKernels(): KernelTimes {
  const spent: KernelTimes = new Map();
  for (let b = getBackend() as ReturnType<typeof getBackend> | undefined; b; b = b.fallback ? getBackendByName(b.fallback) : undefined) {
    for (const [name, fn] of Object.entries(b.kernels) as Array<[keyof Kernels, (...a: unknown[]) => unknown]>) {
      const key = `${b.name}:${name}`;
      (b.kernels as Record<string, unknown>)[name] = (...a: unknown[]): unknown => {
        const t0 = performance.now();
        const r = fn(...a);
        const s = spent.get(key) ?? { ms: 0, calls: 0 };
        s.ms += performance.now() - t0; s.calls++;
        spent.set(key, s);
        return r;
      };
    }
  }
  setBackend(getBackend().name); // clear the resolved-kernel cache
  return spent;
}
