/**
 * Learning-rate schedules (browser-safe), as pure functions of the step so a resumed run gets the
 * same rates. `wsd` is DeepSeek-V3's shape (report §4.2): linear warmup, constant at the peak,
 * then cosine decay to `minRatio`·peak (V3: 2.2e-4 → 2.2e-5 over the last ~30% of tokens).
 * `cosine` decays right after warmup (nanoGPT); `constant` only warms up.
 */

export type ScheduleKind = 'wsd' | 'cosine' | 'constant';

export interface Schedule {
  kind: ScheduleKind;
  /** Peak learning rate. */
  peak: number;
  /** Linear warmup steps (from peak/warmup at step 1 to peak at step `warmup`). */
  warmup: number;
  /** Total optimizer steps. */
  total: number;
  /** Final lr as a fraction of the peak (0.1). */
  minRatio: number;
  /** wsd only: fraction of the steps after which the cosine decay starts (DeepSeek-V3: ~0.68). */
  decayStart: number;
}

/** Checks a schedule; throws naming the bad field. */
export function checkSchedule(s: Schedule): void {
  if (!(s.peak > 0 && Number.isFinite(s.peak))) throw new RangeError(`schedule: lr must be a positive number, got ${s.peak}`);
  if (!(Number.isInteger(s.warmup) && s.warmup >= 0)) throw new RangeError(`schedule: warmup must be a non-negative integer, got ${s.warmup}`);
  if (!(Number.isInteger(s.total) && s.total >= 1)) throw new RangeError(`schedule: total steps must be a positive integer, got ${s.total}`);
  if (!(s.minRatio >= 0 && s.minRatio <= 1)) throw new RangeError(`schedule: minRatio must be in [0, 1], got ${s.minRatio}`);
  if (!(s.decayStart >= 0 && s.decayStart <= 1)) throw new RangeError(`schedule: decayStart must be in [0, 1], got ${s.decayStart}`);
}

/** Learning rate of optimizer step `step` (1-based); past `total` it stays at the final rate. */
export function lrAt(s: Schedule, step: number): number {
  if (s.warmup > 0 && step <= s.warmup) return (s.peak * step) / s.warmup;
  if (s.kind === 'constant') return s.peak;
  const begin = s.kind === 'wsd' ? Math.max(s.warmup, Math.round(s.decayStart * s.total)) : s.warmup;
  if (step <= begin) return s.peak;
  const span = Math.max(1, s.total - begin);
  const t = Math.min(1, (step - begin) / span);
  const min = s.peak * s.minRatio;
  return min + 0.5 * (s.peak - min) * (1 + Math.cos(Math.PI * t));
}
