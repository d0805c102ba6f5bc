/**
 * `frugal bench train`: training tokens/s (forward + backward + AdamW), with and without the MTP loss (DeepSeek configs), Frugal next to the
 * PyTorch peer with the same weights, threads and shapes (see bench/harness.ts for the method).
 */
import { runSuiteCli } from './harness.js';

/** CLI entry: `frugal bench train [--config small|dense-10m|tiny] [--threads N] [--reps N] [--quick] [--json] [--no-peer] [--write]`. */
export async function run(argv: string[]): Promise<number> { return runSuiteCli('train', argv); }
