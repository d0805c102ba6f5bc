/**
 * `frugal bench prefill`: prefill tokens/s (no-grad forward of batch × seq), Frugal next to the
 * PyTorch peer with the same weights, threads and shapes (see bench/harness.ts for the method).
 */
import { runSuiteCli } from './harness.js';

/** CLI entry: `frugal bench prefill [--config small|dense-10m|tiny] [--threads N] [--reps N] [--quick] [--json] [--no-peer] [--write]`. */
export async function run(argv: string[]): Promise<number> { return runSuiteCli('prefill', argv); }
