// Browser tests of the browser build (bundle, webgpu, wasm in a page): Debian's chromium with WebGPU
// on its built-in SwiftShader (software Vulkan), a cross-origin-isolated static server, and esbuild
// bundles made from the current sources. When tests run and fail on a missing browser follows
// browser.test-helper.ts (FRUGAL_EXPECT_BROWSER=1 in CI).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { CHROMIUM } from './browser.test-helper.js';

/** A headless chromium with WebGPU enabled (SwiftShader without a GPU) and a fresh profile. */
export async function openGpuBrowser(): Promise<{ context: BrowserContext; page: Page; logs: string[]; close(): Promise<void> }> {
  const profile = mkdtempSync(path.join(tmpdir(), 'frugal-chromium-gpu-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = context.pages()[0] ?? await context.newPage();
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  return { context, page, logs, close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}

/** A route: a file on disk or an in-memory body. */
export type Route = { file: string } | { body: string | Buffer; type?: string };

/** A loopback static server answering only `routes`, every response cross-origin isolated. */
export async function staticServer(routes: Record<string, Route>): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    const r = routes[p];
    const iso = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cross-Origin-Resource-Policy': 'same-origin', 'Cache-Control': 'no-store' };
    if (!r) { res.writeHead(404, iso); res.end(); return; }
    const body = 'file' in r ? readFileSync(r.file) : r.body;
    const name = 'file' in r ? r.file : p;
    const type = ('type' in r && r.type) || (name.endsWith('.js') ? 'text/javascript' : name.endsWith('.json') ? 'application/json' : name.endsWith('.html') || p === '/' ? 'text/html' : 'application/octet-stream');
    res.writeHead(200, { ...iso, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }) };
}

/** Bundles `entry` for the browser (ES module); a `node:*` import anywhere fails the build. */
export async function bundle(entry: string, outfile: string): Promise<string> {
  await build({ entryPoints: [entry], outfile, bundle: true, format: 'esm', platform: 'browser', target: 'es2022', logLevel: 'silent' });
  return readFileSync(outfile, 'utf8');
}

/** Runs one task in a fresh module Worker loaded from `script`; resolves with its reply. */
export async function inWorker(page: Page, script: string, msg: unknown, timeoutMs: number): Promise<Record<string, unknown>> {
  return page.evaluate(async ([src, m, t]) => {
    const w = new Worker(src as string, { type: 'module' });
    try {
      return await new Promise<Record<string, unknown>>((resolve) => {
        const timer = setTimeout(() => resolve({ error: `no answer within ${t} ms` }), t as number);
        w.onmessage = (e) => { clearTimeout(timer); resolve(e.data as Record<string, unknown>); };
        w.onerror = (e) => { clearTimeout(timer); resolve({ error: `worker error: ${e.message}` }); };
        w.postMessage(m);
      });
    } finally { w.terminate(); }
  }, [script, msg, timeoutMs] as const);
}
