/**
 * Pipeline-parallel bubbles. The closed forms are Table 2 of the DeepSeek-V3 report
 * (arXiv 2412.19437): with F = forward chunk time, B = full backward chunk time, W = the
 * weight-gradient part of B, F&B = two overlapped forward+backward chunks,
 *   1F1B      (PP−1)(F+B)            parameters 1×, activations PP micro-batches
 *   ZB1P      (PP−1)(F+B−2W)         parameters 1×, activations PP
 *   DualPipe  (PP/2−1)(F&B+B−3W)     parameters 2×, activations PP+1
 * `simulate` is a small discrete-event scheduler for 1F1B and ZB1P (ZB-H1 of Qi et al. 2023:
 * backward split into input-gradient B−W and weight-gradient W, W deferred to fill idle time,
 * in-flight micro-batches capped as in 1F1B) used by the tests to confirm the formulas.
 * Browser-safe.
 */

/** Chunk times (any unit). `fb` = time of an overlapped forward+backward pair (DualPipe). */
export interface ChunkTimes { F: number; B: number; W: number; fb?: number }

export type Schedule = '1f1b' | 'zb1p' | 'dualpipe';

/** Bubble time per stage from the V3 report's Table 2. */
export function bubbleFormula(schedule: Schedule, pp: number, t: ChunkTimes): number {
  if (!(Number.isInteger(pp) && pp >= 1)) throw new Error(`pipeline: pp must be a positive integer, got ${pp}`);
  if (schedule === '1f1b') return (pp - 1) * (t.F + t.B);
  if (schedule === 'zb1p') return (pp - 1) * (t.F + t.B - 2 * t.W);
  if (pp % 2) throw new Error(`pipeline: DualPipe needs an even pp, got ${pp}`);
  return (pp / 2 - 1) * ((t.fb ?? t.F + t.B) + t.B - 3 * t.W);
}

/** Parameter copies per stage and micro-batches of activations held (Table 2). */
export function pipelineMemory(schedule: Schedule, pp: number): { paramCopies: number; activationMicroBatches: number } {
  return schedule === 'dualpipe' ? { paramCopies: 2, activationMicroBatches: pp + 1 } : { paramCopies: 1, activationMicroBatches: pp };
}

/** Result of a simulated schedule: makespan and the idle time of the busiest-stage layout. */
export interface SimResult { makespan: number; bubble: number; maxInFlight: number }

/**
 * Simulates `m` micro-batches over `pp` stages. 1F1B: ops F (time F) and B (time B); ZB1P: F,
 * B_input (time B−W), W (time W). Each idle stage runs the first ready op by priority
 * backward-input > forward > weight-grad. Forwards are capped at the peak activation memory of 1F1B:
 * fewer than pp−stage micro-batches in flight (released at B) for 1F1B; fewer than pp on every
 * stage (released at W) for ZB1P, which is how ZB-H1 keeps 1F1B's peak while deferring W.
 * This greedy list scheduler reproduces the Table 2 formulas when m = pp, and for m > pp when
 * F ≠ B−W; with F = B−W = W and m > pp it leaves up to 2 extra units idle (greedy, not optimal).
 * `bubble` = makespan − m·(F+B), the idle time per stage.
 */
export function simulate(schedule: '1f1b' | 'zb1p', pp: number, m: number, t: ChunkTimes): SimResult {
  const zb = schedule === 'zb1p';
  const tB = zb ? t.B - t.W : t.B;
  const inf = Number.POSITIVE_INFINITY;
  const grid = (): number[][] => Array.from({ length: pp }, () => new Array<number>(m).fill(inf));
  const fEnd = grid(), bEnd = grid(), wEnd = grid();
  const next = Array.from({ length: pp }, () => ({ f: 0, b: 0, w: 0, free: 0 }));
  let now = 0;
  let maxInFlight = 0;
  let remaining = pp * m * (zb ? 3 : 2);
  const ends: number[] = [];
  while (remaining > 0) {
    for (let s = 0; s < pp; s++) {
      const st = next[s]!;
      if (st.free > now) continue;
      const released = (zb ? wEnd[s]! : bEnd[s]!).filter((e) => e <= now).length;
      let op: 'f' | 'b' | 'w' | null = null;
      if (st.b < m && fEnd[s]![st.b]! <= now && (s === pp - 1 || bEnd[s + 1]![st.b]! <= now)) op = 'b';
      else if (st.f < m && (s === 0 || fEnd[s - 1]![st.f]! <= now) && st.f - released < (zb ? pp : pp - s)) op = 'f';
      else if (zb && st.w < st.b && bEnd[s]![st.w]! <= now) op = 'w';
      if (op === null) continue;
      const dur = op === 'f' ? t.F : op === 'b' ? tB : t.W;
      const end = now + dur;
      if (op === 'f') { fEnd[s]![st.f++] = end; maxInFlight = Math.max(maxInFlight, st.f - released); }
      else if (op === 'b') bEnd[s]![st.b++] = end;
      else wEnd[s]![st.w++] = end;
      st.free = end;
      ends.push(end);
      remaining--;
    }
    const later = ends.filter((e) => e > now);
    if (later.length === 0) throw new Error('pipeline: schedule deadlocked (bug)');
    now = Math.min(...later);
  }
  const makespan = Math.max(...ends);
  return { makespan, bubble: makespan - m * (t.F + t.B), maxInFlight };
}
