/**
 * Who may talk to the server: API key rules, and the Origin / Host checks that keep web pages the
 * user visits from driving a loopback server (cross-origin `text/plain` POSTs) or reading its
 * replies through DNS rebinding — the class of hole Ollama fixed as CVE-2024-28224.
 *
 * Contract:
 * - `checkApiKey(key)`: surrounding whitespace is trimmed (a key read from a file keeps working);
 *   a key shorter than MIN_API_KEY_LENGTH or holding anything but visible ASCII is refused with
 *   the fix. `Authorization` is matched with a case-insensitive `Bearer` scheme, in constant time.
 * - `Origin`: absent (curl, SDKs, servers) is allowed; a loopback origin (http(s)://localhost,
 *   127.x.x.x, [::1], any port) is allowed; anything else only when listed in `allowedOrigins`
 *   (exact `scheme://host[:port]`, or `*`). Allowed origins get CORS headers.
 * - `Host`: on a loopback-bound server only loopback names (localhost, *.localhost, 127.x.x.x,
 *   [::1], any port) and `allowedHosts` entries are accepted; a non-loopback server (which always
 *   has an API key) checks Host only when `allowedHosts` is given.
 * - The key is required on every path but /health and `openPaths` (static pages and scripts that
 *   hold no data: a browser loads them, then sends the key with its API requests). Host and Origin
 *   are checked on every path.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { ApiError } from './openai.js';

/** Shortest API key accepted (16 characters: e.g. `openssl rand -hex 16` gives 32). */
export const MIN_API_KEY_LENGTH = 16;

/** Validates and normalises a configured API key; throws an Error naming the fix. */
export function checkApiKey(key: string): string {
  const k = key.trim();
  if (!/^[\x21-\x7e]*$/.test(k)) throw new Error('API key must be visible ASCII characters without spaces (e.g. the output of `openssl rand -hex 16`)');
  if (k.length < MIN_API_KEY_LENGTH) throw new Error(`API key is ${k.length} character${k.length === 1 ? '' : 's'} long; use at least ${MIN_API_KEY_LENGTH} (e.g. \`openssl rand -hex 16\`)`);
  return k;
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

/** True when the Authorization header carries `Bearer <key>` (scheme in any case). */
export function keyMatches(header: string | undefined, key: string): boolean {
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header ?? '');
  // Compare digests: constant time and constant length whatever the client sent.
  return timingSafeEqual(digest(m?.[1] ?? ''), digest(key)) && m !== null;
}

/** A loopback host name or address, without port. */
export function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** `host[:port]` from a Host header → host (IPv6 brackets kept out). */
function hostOf(hostHeader: string): string {
  const v = hostHeader.trim();
  if (v.startsWith('[')) return v.slice(1, v.indexOf(']') > 0 ? v.indexOf(']') : undefined);
  const colon = v.lastIndexOf(':');
  return colon >= 0 && v.indexOf(':') === colon ? v.slice(0, colon) : v;
}

export interface AccessOptions {
  apiKey: string | null;
  /** Origins allowed besides loopback ones: `scheme://host[:port]`, or `*` for any. */
  allowedOrigins: string[];
  /** Host names allowed besides loopback names (checked on loopback servers, or when given). */
  allowedHosts: string[];
  /** The server listens on a loopback address. */
  loopback: boolean;
  /** Paths answered without the API key besides /health (static assets; never data). */
  openPaths?: readonly string[];
}

/** Origin of the request when it is a browser's cross-site one we allow; null when absent. */
export class AccessPolicy {
  private readonly origins: Set<string>;
  private readonly hosts: Set<string>;
  private readonly open: Set<string>;
  constructor(private readonly o: AccessOptions) {
    this.open = new Set(['/health', ...(o.openPaths ?? [])]);
    this.origins = new Set(o.allowedOrigins.map((x) => x.trim().replace(/\/+$/, '').toLowerCase()).filter(Boolean));
    this.hosts = new Set(o.allowedHosts.map((x) => x.trim().toLowerCase()).filter(Boolean));
  }

  /** Is this Origin header value allowed? */
  originAllowed(origin: string): boolean {
    const o = origin.trim().toLowerCase();
    if (this.origins.has('*') || this.origins.has(o)) return true;
    try {
      const u = new URL(o);
      return (u.protocol === 'http:' || u.protocol === 'https:') && isLoopbackName(u.hostname);
    } catch {
      return false;
    }
  }

  /** Is this Host header value allowed? */
  hostAllowed(hostHeader: string): boolean {
    if (!this.o.loopback && this.hosts.size === 0) return true;
    const h = hostOf(hostHeader).toLowerCase();
    return isLoopbackName(h) || this.hosts.has(h) || this.hosts.has(hostHeader.trim().toLowerCase()) || this.hosts.has('*');
  }

  /**
   * Checks Host, Origin and (except on open paths) the API key; throws ApiError 403/401. Returns the
   * Origin to echo in CORS headers, or null.
   */
  check(req: http.IncomingMessage, pathname: string): string | null {
    const host = req.headers.host;
    if (host !== undefined && !this.hostAllowed(host)) {
      throw new ApiError(403, `Host '${host.slice(0, 100)}' is not allowed (this server answers to localhost names; add it with --allowed-hosts)`, 'permission_error', null, 'host_not_allowed');
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !this.originAllowed(origin)) {
      throw new ApiError(403, `Origin '${origin.slice(0, 100)}' is not allowed (allow it with --allowed-origins)`, 'permission_error', null, 'origin_not_allowed');
    }
    if (this.o.apiKey && !this.open.has(pathname) && req.method !== 'OPTIONS' && !keyMatches(req.headers.authorization, this.o.apiKey)) {
      throw new ApiError(401, 'missing or wrong API key (send Authorization: Bearer <key>)', 'authentication_error', null, 'invalid_api_key');
    }
    return origin ?? null;
  }
}
