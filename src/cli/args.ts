/**
 * Minimal, strict option parser shared by every verb: `--name value`, `--name=value`, boolean
 * `--flag`; unknown options are an error that lists the known ones.
 */
import { UsageError } from './main.js';

export interface OptionSpec {
  [name: string]: { type: 'string' | 'number' | 'boolean'; help: string; default?: string | number | boolean };
}
/** Parsed options by name (numbers as numbers, flags as booleans) plus positionals in `_`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Parsed = { _: string[]; [name: string]: any };

export function usage(verb: string, synopsis: string, spec: OptionSpec): string {
  const lines = [`usage: frugal ${verb} ${synopsis}`, '', 'options:'];
  for (const [k, s] of Object.entries(spec)) {
    const d = s.default !== undefined ? ` (default ${String(s.default)})` : '';
    lines.push(`  --${k}${s.type === 'boolean' ? '' : ' <' + s.type + '>'}`.padEnd(28) + ` ${s.help}${d}`);
  }
  return lines.join('\n');
}

/** Parses argv against spec; `--help` sets `help: true`. Throws UsageError on bad input. */
export function parseArgs(argv: string[], spec: OptionSpec): Parsed {
  const out: Parsed = { _: [] };
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out[k] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') { out.help = true; continue; }
    if (!a.startsWith('--')) { out._.push(a); continue; }
    let name = a.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    const s = spec[name];
    if (!s) throw new UsageError(`unknown option --${name} (known: ${Object.keys(spec).map((k) => '--' + k).join(', ')})`);
    if (s.type === 'boolean') {
      out[name] = value === undefined ? true : !/^(0|false|no)$/i.test(value);
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`--${name} needs a value`);
    }
    if (s.type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new UsageError(`--${name} expects a number, got '${value}'`);
      out[name] = n;
    } else out[name] = value;
  }
  return out;
}
