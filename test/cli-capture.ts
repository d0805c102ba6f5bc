// Test helper: runs the CLI in-process (src/cli/main.ts runCli) and captures what it prints.
import { runCli } from '../src/cli/main.js';

/** Runs the CLI with `args`, capturing its stdout and stderr text; returns the exit code too. */
export async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const ow = process.stdout.write.bind(process.stdout), ew = process.stderr.write.bind(process.stderr);
  const ol = console.log, oe = console.error;
  // The CLI writes strings; the test runner's own reports (Buffers) pass through.
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((out += s), true) : ow(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((err += s), true) : ew(s, ...rest))) as typeof process.stderr.write;
  console.log = (...a: unknown[]) => { out += a.join(' ') + '\n'; };
  console.error = (...a: unknown[]) => { err += a.join(' ') + '\n'; };
  try {
    return { code: await runCli(args), out, err };
  } finally {
    process.stdout.write = ow; process.stderr.write = ew; console.log = ol; console.error = oe;
  }
}
