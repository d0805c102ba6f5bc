/**
 * `frugal bench decode`: batch-1 decode tokens/s with the KV cache (DeepSeek: latent; dense: per-head K/V) (short context and ~1K context), Frugal next to the
 * PyTorch peer with the same weights, threads and shapes (see bench/harness.ts for the method).
 */
import { runSuiteCli } from './harness.js';

/** CLI entry: `frugal bench decode [--config small|dense-10m|tiny] [--threads N] [--reps N] [--quick] [--json] [--no-peer] [--write]`. */
export async function run(argv: string[]): Promise<number> { return runSuiteCli('decode', argv); }
