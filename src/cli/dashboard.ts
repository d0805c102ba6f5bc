/**
 * `frugal dashboard [RUN_DIR ...] [--port 6006] [--host 127.0.0.1] [--api-key K]`: a live web
 * dashboard of training runs (src/serve/dashboard-node.ts, page in src/web/). Each RUN_DIR is a
 * `frugal train` run folder or a folder of them (default: runs/). `frugal train --dashboard`
 * serves the same page for the run in progress (`startRunDashboard`).
 *
 * Contract:
 * - Binds loopback by default; any other host requires an API key (`--api-key` or
 *   FRUGAL_API_KEY), exactly as `frugal serve`; `--allowed-origins` / `--allowed-hosts` as there.
 * - Never writes into a run folder. SIGINT/SIGTERM close it (clients are told it stopped).
 */
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { checkApiKey, isLoopbackName } from '../serve/access.js';
import { expandRunDirs, startDashboard, type RunningDashboard } from '../serve/dashboard-node.js';

export const summary = 'live web dashboard of training runs (loss, lr, throughput, cost, expert load, samples)';

/** Default port (TensorBoard's, so a forwarded port habit carries over). */
export const DASHBOARD_PORT = 6006;

const spec: OptionSpec = {
  host: { type: 'string', help: 'address to bind (non-loopback needs --api-key)', default: '127.0.0.1' },
  port: { type: 'number', help: `TCP port (0 = any free port) (default ${DASHBOARD_PORT})`, default: DASHBOARD_PORT },
  'api-key': { type: 'string', help: 'require Authorization: Bearer <key> on data routes, at least 16 characters (or set FRUGAL_API_KEY)' },
  'allowed-origins': { type: 'string', help: 'comma-separated browser origins allowed besides localhost ones (scheme://host[:port], or *)' },
  'allowed-hosts': { type: 'string', help: 'comma-separated Host names allowed besides localhost names (DNS-rebinding guard)' },
  'poll-ms': { type: 'number', help: 'how often run files are checked, in ms (default 1000)', default: 1000 },
};

const list = (v: unknown): string[] => (typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : []);

/** API key from an option or FRUGAL_API_KEY, checked; required for a non-loopback host. */
export function resolveKey(host: string, given: string | undefined): string | null {
  let key = given ?? process.env.FRUGAL_API_KEY ?? null;
  if (key !== null) { try { key = checkApiKey(key); } catch (e) { throw new UsageError(`--api-key: ${(e as Error).message}`); } }
  if (!isLoopbackName(host) && !key) throw new UsageError(`--host ${host} is reachable from other machines: set --api-key KEY (or FRUGAL_API_KEY) so requests must send Authorization: Bearer KEY`);
  return key;
}

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('dashboard', '[RUN_DIR ...] [options]', spec)); return 0; }
  const args = a._.length ? a._.map(String) : ['runs'];
  const dirs: string[] = [];
  for (const d of args) { try { dirs.push(...expandRunDirs(d)); } catch (e) { throw new UsageError((e as Error).message); } }
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new UsageError(`--port must be 0..65535, got ${a.port}`);
  if (!(Number.isFinite(a['poll-ms']) && a['poll-ms'] >= 50)) throw new UsageError(`--poll-ms must be at least 50, got ${a['poll-ms']}`);
  const apiKey = resolveKey(a.host, a['api-key']);
  let dash: RunningDashboard;
  try {
    dash = await startDashboard({ runs: dirs, host: a.host, port: a.port, apiKey, allowedOrigins: list(a['allowed-origins']), allowedHosts: list(a['allowed-hosts']), pollMs: a['poll-ms'] });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`port ${a.port} is in use (another dashboard?); choose another with --port N, or --port 0 for any free one`);
    throw e;
  }
  console.error(`frugal dashboard: ${dirs.length} run${dirs.length === 1 ? '' : 's'} (${dirs.join(', ')})`);
  console.log(`dashboard: ${dash.url}/${apiKey ? '  (API key required: enter it on the page)' : ''}`);
  await new Promise<void>((resolve) => {
    const stop = (): void => { process.off('SIGINT', stop); process.off('SIGTERM', stop); resolve(); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await dash.close();
  return 0;
}

/** The dashboard of one run, as `frugal train --dashboard` serves it. */
export interface RunDashboard { url: string; close(): Promise<void> }

/**
 * Starts the dashboard for the run being trained in `dir` (default port 6006; a busy default port
 * falls back to any free one, so a second training run still gets its dashboard).
 */
export async function startRunDashboard(dir: string, o: { host?: string | undefined; port?: number | undefined }): Promise<RunDashboard> {
  const host = o.host ?? '127.0.0.1';
  const apiKey = resolveKey(host, undefined);
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port <= 65535)) throw new UsageError(`--dashboard-port must be 0..65535, got ${o.port}`);
  const start = (port: number): Promise<RunningDashboard> => startDashboard({ runs: [dir], host, port, apiKey });
  try {
    return await start(o.port ?? DASHBOARD_PORT);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    if (o.port !== undefined) throw new UsageError(`--dashboard-port ${o.port} is in use; choose another, or 0 for any free port`);
    return start(0);
  }
}
