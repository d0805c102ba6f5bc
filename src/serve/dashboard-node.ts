/**
 * The training dashboard's server: watches run folders (their metrics.jsonl and run.json) and
 * serves the dashboard page (src/web/dashboard.*) with live updates over Server-Sent Events.
 *
 * Routes: GET / and /ui/* (static page, ui-node.ts), GET /api/runs (everything as JSON, for
 * scripts), GET /api/stream (SSE: `runs` events with each run's state, `rows` events with new
 * metrics rows, `bye` when the dashboard closes), GET /health.
 *
 * Contract:
 * - Read-only: the dashboard never writes into a run folder. Run folders are fixed at start; a
 *   request names a run by its index, never by a path.
 * - Same access rules as `frugal serve` (access.ts): loopback by default, an API key for any
 *   other host (the static page is open, data routes need the key), Origin and Host allow-lists.
 * - metrics.jsonl is read incrementally (every `pollMs`): only whole lines; a torn or malformed
 *   line is skipped; a file that shrank or restarted its steps (a resumed run truncates it) is
 *   re-read from the start and sent with `reset`. Bounded: lines over MAX_LINE_BYTES are skipped,
 *   at most MAX_ROWS rows are kept per run, at most READ_CHUNK bytes are read per poll.
 * - `close()` polls once more, tells every client `bye` (the page then says the dashboard
 *   stopped), and closes every connection.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AccessPolicy, checkApiKey, isLoopbackName } from './access.js';
import { ApiError } from './openai.js';
import { DASHBOARD_PATHS, serveUi } from './ui-node.js';
import { readRunInfo, runState, type RunInfo } from '../train/run-info-node.js';

/** Longest metrics line read (a row is a few KiB at most; see metrics-node.ts). */
export const MAX_LINE_BYTES = 1 << 20;
/** Rows kept per run. */
export const MAX_ROWS = 200_000;
/** Bytes of metrics.jsonl read per poll (a long file arrives over several polls). */
export const READ_CHUNK = 16 << 20;

export interface DashboardOptions {
  /** Run folders (each holds metrics.jsonl). */
  runs: string[];
  host?: string;
  /** 0 = any free port. */
  port?: number;
  apiKey?: string | null;
  allowedOrigins?: string[];
  allowedHosts?: string[];
  /** How often files are checked for new rows (default 1000 ms). */
  pollMs?: number;
  log?: (msg: string) => void;
}

export interface RunningDashboard {
  url: string;
  server: http.Server;
  /** Checks every run now and pushes what changed. */
  poll(): void;
  close(): Promise<void>;
}

/** A run's summary as the page gets it. */
interface RunSummary { id: number; name: string; state: string; note: string; info: RunInfo | null; rows: number; lastStep: number | null }

/** One watched run folder. */
class RunWatch {
  rows: Record<string, unknown>[] = [];
  private offset = 0;
  private rest: Buffer = Buffer.alloc(0);
  private skipping = false;
  private summaryJson = '';
  constructor(readonly id: number, readonly dir: string, readonly name: string) {}

  /** Reads what was appended; returns the new rows (reset: the file was rewritten, rows are all of them). */
  readRows(): { rows: Record<string, unknown>[]; reset: boolean } {
    const r = this.readAppended();
    if (r !== 'rewritten') return r;
    // Steps only grow within one run, so the file was rewritten (a resume truncates it): again from the start.
    this.restart();
    this.readAppended();
    return { rows: this.rows.slice(), reset: true };
  }

  private readAppended(): { rows: Record<string, unknown>[]; reset: boolean } | 'rewritten' {
    let fd: number;
    try { fd = openSync(path.join(this.dir, 'metrics.jsonl'), 'r'); } catch { return { rows: [], reset: false }; }
    try {
      let reset = false;
      const size = fstatSync(fd).size;
      if (size < this.offset) { this.restart(); reset = true; }
      const fresh: Record<string, unknown>[] = [];
      const n = Math.min(size - this.offset, READ_CHUNK);
      if (n <= 0) return { rows: reset ? this.rows.slice() : fresh, reset };
      const buf = Buffer.alloc(n);
      const got = readSync(fd, buf, 0, n, this.offset);
      this.offset += got;
      let data = Buffer.concat([this.rest, buf.subarray(0, got)]);
      let nl: number;
      while ((nl = data.indexOf(10)) >= 0) {
        const line = data.subarray(0, nl);
        data = data.subarray(nl + 1);
        if (this.skipping) { this.skipping = false; continue; } // the tail of an over-long line
        const row = parseRow(line);
        if (!row) continue;
        const last = this.rows[this.rows.length - 1];
        if (last && (row.step as number) <= (last.step as number)) return 'rewritten';
        if (this.rows.length < MAX_ROWS) { this.rows.push(row); fresh.push(row); }
      }
      if (data.length > MAX_LINE_BYTES) { this.skipping = true; data = Buffer.alloc(0); }
      this.rest = Buffer.from(data);
      return { rows: reset ? this.rows.slice() : fresh, reset };
    } finally {
      closeSync(fd);
    }
  }

  private restart(): void { this.offset = 0; this.rest = Buffer.alloc(0); this.skipping = false; this.rows = []; }

  summary(): RunSummary {
    const info = readRunInfo(this.dir);
    const st = runState(this.dir, info);
    const last = this.rows[this.rows.length - 1];
    return { id: this.id, name: this.name, state: st.state, note: st.note, info, rows: this.rows.length, lastStep: last ? (last.step as number) : null };
  }

  /** The summary when it changed since the last call, else null. */
  changedSummary(): RunSummary | null {
    const s = this.summary();
    const j = JSON.stringify(s);
    if (j === this.summaryJson) return null;
    this.summaryJson = j;
    return s;
  }
}

/** One metrics line → a row with a numeric step, or null. */
function parseRow(line: Buffer): Record<string, unknown> | null {
  if (line.length === 0 || line.length > MAX_LINE_BYTES) return null;
  try {
    const r = JSON.parse(line.toString('utf8')) as unknown;
    return r && typeof r === 'object' && !Array.isArray(r) && typeof (r as { step?: unknown }).step === 'number' ? (r as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * The run folders a command-line argument names: the folder itself when it holds metrics.jsonl
 * (or run.json), else its subfolders that do (a `runs/` folder). Throws naming the problem.
 */
export function expandRunDirs(arg: string): string[] {
  const isRun = (d: string): boolean => existsSync(path.join(d, 'metrics.jsonl')) || existsSync(path.join(d, 'run.json'));
  let st;
  try { st = statSync(arg); } catch { throw new Error(`${arg}: no such folder (give a run folder written by 'frugal train', or a folder of them)`); }
  if (!st.isDirectory()) throw new Error(`${arg} is not a folder (give a run folder written by 'frugal train', or a folder of them)`);
  if (isRun(arg)) return [arg];
  const subs = readdirSync(arg).map((n) => path.join(arg, n)).filter((d) => { try { return statSync(d).isDirectory() && isRun(d); } catch { return false; } }).sort();
  if (subs.length === 0) throw new Error(`${arg} holds no metrics.jsonl, nor do its subfolders (is it a 'frugal train' run folder?)`);
  return subs;
}

/** Distinct display names: the folder name, with its parent's when two runs share one. */
function runNames(dirs: string[]): string[] {
  const base = dirs.map((d) => path.basename(path.resolve(d)));
  return base.map((b, i) => (base.indexOf(b) !== base.lastIndexOf(b) ? `${path.basename(path.dirname(path.resolve(dirs[i]!)))}/${b}` : b));
}

/** Starts the dashboard; resolves once it listens. */
export async function startDashboard(o: DashboardOptions): Promise<RunningDashboard> {
  if (o.runs.length === 0) throw new Error('dashboard: no run folders given');
  const host = o.host ?? '127.0.0.1';
  const apiKey = o.apiKey ? checkApiKey(o.apiKey) : null;
  if (!isLoopbackName(host) && !apiKey) throw new Error(`dashboard: host ${host} is reachable from other machines; an API key is required`);
  const access = new AccessPolicy({ apiKey, allowedOrigins: o.allowedOrigins ?? [], allowedHosts: o.allowedHosts ?? [], loopback: isLoopbackName(host), openPaths: DASHBOARD_PATHS });
  const names = runNames(o.runs);
  const watches = o.runs.map((d, i) => new RunWatch(i, d, names[i]!));
  const clients = new Set<http.ServerResponse>();
  const log = o.log ?? ((m: string) => console.error(m));

  const event = (name: string, data: unknown): string => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  const broadcast = (text: string): void => { for (const c of clients) if (!c.destroyed) c.write(text); };
  const poll = (): void => {
    for (const w of watches) {
      const r = w.readRows();
      if (r.rows.length || r.reset) broadcast(event('rows', { id: w.id, reset: r.reset, rows: r.rows }));
    }
    const changed = watches.map((w) => w.changedSummary()).filter((s) => s !== null);
    if (changed.length) broadcast(event('runs', changed));
  };
  poll();
  const timer = setInterval(() => { try { poll(); } catch (e) { log(`dashboard: ${(e as Error).message}`); } }, o.pollMs ?? 1000);
  const heartbeat = setInterval(() => broadcast(': ping\n\n'), 15_000);

  const send = (res: http.ServerResponse, status: number, body: unknown): void => {
    if (res.headersSent) { res.end(); return; }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
    res.end(text);
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let url: URL;
    try { url = new URL(req.url ?? '/', 'http://localhost'); } catch { throw new ApiError(400, 'malformed request URL'); }
    const origin = access.check(req, url.pathname);
    if (origin) res.setHeader('Access-Control-Allow-Origin', origin).setHeader('Vary', 'Origin');
    if (serveUi(req, res, url.pathname, 'dashboard')) return;
    const routes = ['/health', '/api/runs', '/api/stream'];
    if (!routes.includes(url.pathname)) throw new ApiError(404, `no route ${url.pathname} (routes: /, ${routes.join(', ')})`, 'invalid_request_error', null, 'not_found');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { Allow: 'GET, HEAD, OPTIONS', 'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization', 'Access-Control-Max-Age': '600' });
      return void res.end();
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, `method ${req.method} is not allowed on ${url.pathname}`, 'invalid_request_error', null, 'method_not_allowed');
    if (url.pathname === '/health') return send(res, 200, { status: 'ok', runs: watches.length, clients: clients.size });
    if (url.pathname === '/api/runs') return send(res, 200, { runs: watches.map((w) => ({ ...w.summary(), metrics: w.rows })) });
    // /api/stream: everything so far, then changes as they come.
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    if (req.method === 'HEAD') return void res.end();
    res.write(event('runs', watches.map((w) => w.summary())));
    for (const w of watches) res.write(event('rows', { id: w.id, reset: true, rows: w.rows }));
    clients.add(res);
    res.on('close', () => clients.delete(res));
  };

  const server = http.createServer((req, res) => {
    try { handle(req, res); } catch (e) {
      if (e instanceof ApiError) return send(res, e.status, e.body());
      log(`dashboard: internal error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
      send(res, 500, new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`, 'server_error', null, 'internal_error').body());
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 6006, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${urlHost}:${addr.port}`,
    server,
    poll,
    close: async () => {
      clearInterval(timer);
      clearInterval(heartbeat);
      try { poll(); } catch { /* the final state is best effort */ }
      const bye = event('bye', { reason: 'the dashboard server stopped' });
      for (const c of clients) if (!c.destroyed) c.end(bye);
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await done;
    },
  };
}
