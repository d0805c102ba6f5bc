/**
 * Error classes shared across layers (browser-safe, no imports), so a lower layer can raise an
 * error the CLI knows how to print without importing the CLI.
 *
 * Contract:
 * - `UsageError`: a mistake in what the user asked for (a flag, a path, a model folder); the CLI
 *   prints its message without a stack and exits with code 2.
 */

/** A mistake in the command line: printed without a stack, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}
