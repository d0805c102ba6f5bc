/**
 * The HTTP server behind `frugal web`: the in-browser lab page (src/web/lab.html + the bundles in
 * dist/browser), a slice of the bundled corpus, and optionally one local model folder.
 *
 * Contract:
 * - Only a fixed table of paths is served; a request path never becomes a file path. The model
 *   folder (when given) is served as exactly /model/config.json, /model/model.safetensors and
 *   /model/tokenizer.json.
 * - Every response is cross-origin isolated (COOP same-origin, COEP require-corp, CORP
 *   same-origin), which SharedArrayBuffer — and so threaded wasm and the webgpu backend — needs.
 *   Pages carry a CSP: scripts from this origin (and wasm compilation), workers from this origin
 *   and blob: (the backends' helper threads), fetches to this origin and to http(s) model hosts.
 * - Access follows `frugal serve` (access.ts): loopback by default; Host and Origin checked on
 *   every path; with an API key (required off loopback) the page, its scripts and the corpus are
 *   open and the model files need `Authorization: Bearer <key>`.
 * - GET and HEAD only (405 otherwise); unknown paths 404; a missing bundle is a 500 naming
 *   `npm run build`.
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AccessPolicy } from './access.js';
import { ApiError } from './openai.js';

/** Options of startWebServer. */
export interface WebServerOptions {
  host: string; port: number; apiKey: string | null;
  allowedOrigins: string[]; allowedHosts: string[];
  /** Documents for /corpus.json (the page trains on them). */
  corpus: string[];
  /** A model folder served under /model/ (config.json, model.safetensors, tokenizer.json), or null. */
  modelDir: string | null;
  loopback: boolean;
}

/** A running web server. */
export interface WebServer { url: string; close(): Promise<void> }

const here = path.dirname(fileURLToPath(import.meta.url));
/** src/web (from src/serve under tsx, or dist/src/serve when built) and dist/browser. */
const WEB_DIRS = [path.join(here, '..', 'web'), path.join(here, '..', '..', '..', 'src', 'web')];
const BUNDLE_DIRS = [path.join(here, '..', '..', 'dist', 'browser'), path.join(here, '..', '..', 'browser')];
const STATIC: Record<string, { file: string; dirs: string[]; type: string }> = {
  '/': { file: 'lab.html', dirs: WEB_DIRS, type: 'text/html; charset=utf-8' },
  '/lab.css': { file: 'lab.css', dirs: WEB_DIRS, type: 'text/css; charset=utf-8' },
  '/lab.js': { file: 'lab.js', dirs: BUNDLE_DIRS, type: 'text/javascript; charset=utf-8' },
  '/lab-worker.js': { file: 'lab-worker.js', dirs: BUNDLE_DIRS, type: 'text/javascript; charset=utf-8' },
  '/frugal.js': { file: 'frugal.js', dirs: BUNDLE_DIRS, type: 'text/javascript; charset=utf-8' },
};
const MODEL_FILES: Record<string, string> = { '/model/config.json': 'config.json', '/model/model.safetensors': 'model.safetensors', '/model/tokenizer.json': 'tokenizer.json' };
/** Paths answered without the API key: static files and the public-domain corpus. */
export const WEB_OPEN_PATHS: readonly string[] = [...Object.keys(STATIC), '/corpus.json'];

const CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self' https: http://127.0.0.1:* http://localhost:*; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' };

const cache = new Map<string, Buffer>();
function staticFile(p: string): Buffer {
  const s = STATIC[p]!;
  let b = cache.get(p);
  if (b) return b;
  const dir = s.dirs.find((d) => existsSync(path.join(d, s.file)));
  if (!dir) throw new ApiError(500, `${s.file} not found (looked in ${s.dirs.join(', ')}): run \`npm run build\` to make the browser bundles`, 'server_error', null, 'bundle_missing');
  b = readFileSync(path.join(dir, s.file));
  if (!s.file.endsWith('.html')) cache.set(p, b); // the page is re-read (cheap) so edits show; bundles are cached
  return b;
}

function send(res: http.ServerResponse, status: number, headers: Record<string, string | number>, body?: Buffer | string): void {
  res.writeHead(status, { ...ISOLATION, 'Cache-Control': 'no-cache', ...headers });
  res.end(body);
}

/** Starts the server (see the contract). */
export async function startWebServer(o: WebServerOptions): Promise<WebServer> {
  const policy = new AccessPolicy({ apiKey: o.apiKey, allowedOrigins: o.allowedOrigins, allowedHosts: o.allowedHosts, loopback: o.loopback, openPaths: WEB_OPEN_PATHS });
  const corpus = Buffer.from(JSON.stringify(o.corpus));
  const server = http.createServer((req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://x');
      const p = url.pathname;
      const origin = policy.check(req, p);
      if (origin) res.setHeader('Access-Control-Allow-Origin', origin);
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, `method ${req.method} is not allowed on ${p}`, 'invalid_request_error', null, 'method_not_allowed');
      const head = req.method === 'HEAD';
      if (STATIC[p]) {
        const b = staticFile(p);
        send(res, 200, { 'Content-Type': STATIC[p]!.type, 'Content-Length': b.length, ...(p === '/' ? { 'Content-Security-Policy': CSP, 'X-Frame-Options': 'DENY' } : {}) }, head ? undefined : b);
        return;
      }
      if (p === '/corpus.json') { send(res, 200, { 'Content-Type': 'application/json', 'Content-Length': corpus.length }, head ? undefined : corpus); return; }
      const mf = MODEL_FILES[p];
      if (mf && o.modelDir && existsSync(path.join(o.modelDir, mf))) {
        const file = path.join(o.modelDir, mf);
        const size = statSync(file).size;
        res.writeHead(200, { ...ISOLATION, 'Content-Type': mf.endsWith('.json') ? 'application/json' : 'application/octet-stream', 'Content-Length': size, 'Cache-Control': 'no-cache' });
        if (head) { res.end(); return; }
        createReadStream(file).on('error', () => res.destroy()).pipe(res);
        return;
      }
      throw new ApiError(404, `no such page: ${p.slice(0, 100)}${mf ? ' (start frugal web with --model DIR to serve a model folder)' : ''}`, 'invalid_request_error', null, 'not_found');
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(500, (e as Error).message, 'server_error', null, 'internal');
      send(res, err.status, { 'Content-Type': 'application/json' }, JSON.stringify({ error: { message: err.message, type: err.type, code: err.code } }));
    }
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(o.port, o.host, () => resolve()); });
  const a = server.address() as AddressInfo;
  const hostPart = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${hostPart}:${a.port}`,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
