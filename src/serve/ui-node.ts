/**
 * The web pages Frugal serves — the training dashboard and the chat playground — as static files
 * from the package's `src/web/` folder. Nothing comes from a CDN or the network: every script and
 * style the pages use is one of the files listed here.
 *
 * Contract:
 * - Only the fixed table of paths below is served; a request path never becomes a file path.
 * - Files are read once (on first use) and kept in memory; a missing file is a clear error naming
 *   the folder searched, not a crash of the server (500 for that request).
 * - Every page is sent with a Content-Security-Policy that allows scripts, styles and connections
 *   to this origin only (no inline script), `X-Content-Type-Options: nosniff`, no referrer, and
 *   `frame-ancestors 'none'` (no clickjacking of the send button).
 * - GET and HEAD only; any other method on these paths is a 405.
 */
import { existsSync, readFileSync } from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiError } from './openai.js';

/** Which page `/` is. */
export type UiPage = 'dashboard' | 'playground';

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };
/** Shared assets (URL path → file in src/web). */
const SHARED: Record<string, string> = { '/ui/style.css': 'style.css', '/ui/common.js': 'common.js', '/ui/chart.js': 'chart.js', '/ui/icon.svg': 'icon.svg' };
const PAGES: Record<UiPage, { html: string; assets: Record<string, string> }> = {
  dashboard: { html: 'dashboard.html', assets: { ...SHARED, '/ui/dashboard.js': 'dashboard.js' } },
  playground: { html: 'playground.html', assets: { ...SHARED, '/ui/playground.js': 'playground.js' } },
};

/** Every path the page's static files answer on (open without an API key). */
export function uiPaths(page: UiPage): string[] { return ['/', ...Object.keys(PAGES[page].assets)]; }
/** The playground's paths (the server's open paths). */
export const PLAYGROUND_PATHS: readonly string[] = uiPaths('playground');
/** The dashboard's static paths. */
export const DASHBOARD_PATHS: readonly string[] = uiPaths('dashboard');

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** src/web, whether this module runs from src/serve (tsx) or dist/src/serve (built). */
function webDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const tried = [path.join(here, '..', 'web'), path.join(here, '..', '..', '..', 'src', 'web')];
  const dir = tried.find((d) => existsSync(path.join(d, 'dashboard.html')));
  if (!dir) throw new ApiError(500, `web pages not found (looked in ${tried.join(', ')}); reinstall the package`, 'server_error', null, 'ui_missing');
  return dir;
}

const cache = new Map<string, Buffer>();
function file(name: string): Buffer {
  let b = cache.get(name);
  if (!b) { b = readFileSync(path.join(webDir(), name)); cache.set(name, b); }
  return b;
}

/**
 * Answers `pathname` when it is one of `page`'s static files (then returns true); returns false
 * for any other path, leaving it to the API routes.
 */
export function serveUi(req: http.IncomingMessage, res: http.ServerResponse, pathname: string, page: UiPage): boolean {
  const p = PAGES[page];
  const name = pathname === '/' ? p.html : p.assets[pathname];
  if (name === undefined) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new ApiError(405, `method ${req.method} is not allowed on ${pathname}`, 'invalid_request_error', null, 'method_not_allowed');
  const body = file(name);
  res.writeHead(200, {
    'Content-Type': TYPES[path.extname(name)] ?? 'application/octet-stream', 'Content-Length': body.length, 'Cache-Control': 'no-cache',
    'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer', 'X-Frame-Options': 'DENY',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
