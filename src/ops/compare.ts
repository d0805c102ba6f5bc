/**
 * NaN-safe comparisons for tests and checks: the worst error over two arrays, where any NaN (in
 * either array or in the error) makes the result NaN, so that `assert.ok(worst <= tol)` fails.
 *
 * Contract:
 * - `worstError` never skips an element: a NaN error wins over every finite one and is reported
 *   with its index (a plain `if (err > worst)` silently ignores NaN, which is how a NaN gradient
 *   once passed the gradient checker).
 * - Length mismatches throw: a comparison of arrays of different lengths is a bug in the caller.
 */

/** Folds one error into a running worst: NaN is worse than anything. */
export function worseOf(err: number, worst: number): boolean {
  return Number.isNaN(err) ? !Number.isNaN(worst) : err > worst;
}

/** Worst of |a − b| / (atol + rtol·|b|) over all elements, with the element where it happens. */
export function worstError(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): { worst: number; index: number } {
  if (a.length !== b.length) throw new Error(`compare: lengths differ (${a.length} vs ${b.length})`);
  let worst = 0, index = -1;
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i]! - b[i]!) / (atol + rtol * Math.abs(b[i]!));
    if (worseOf(err, worst)) { worst = err; index = i; }
  }
  return { worst, index };
}

/** Max |a − b| (NaN if any element is NaN on either side). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return worstError(a, b, 1, 0).worst;
}
