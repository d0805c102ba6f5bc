// `frugal web`'s server without a browser: cross-origin isolation headers and the page's CSP, the
// fixed path table, the access rules shared with `frugal serve` (Host, Origin, API key on the model
// files only), method and path errors, and the CLI's refusals.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { startWebServer, type WebServer } from '../src/serve/web-node.js';
import { run as web, corpusSlice } from '../src/cli/web.js';
import { UsageError } from '../src/errors.js';

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
const KEY = 'k'.repeat(8) + '0123456789abcdef';
const servers: WebServer[] = [];
after(async () => { for (const s of servers) await s.close(); });

async function start(o: { apiKey?: string | null; modelDir?: string | null } = {}): Promise<WebServer> {
  const s = await startWebServer({ host: '127.0.0.1', port: 0, apiKey: o.apiKey ?? null, allowedOrigins: [], allowedHosts: [], corpus: ['one doc', 'two doc'], modelDir: o.modelDir ?? null, loopback: true });
  servers.push(s);
  return s;
}

/** A raw request (so Host and Origin can be anything). */
function req(url: string, o: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const r = http.request(url, { method: o.method ?? 'GET', headers: o.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

test('every response is cross-origin isolated; the page has a CSP that allows only its own scripts, blob: workers and wasm', async () => {
  const s = await start();
  for (const p of ['/', '/corpus.json', '/nope']) {
    const r = await req(s.url + p);
    assert.equal(r.headers['cross-origin-opener-policy'], 'same-origin', p);
    assert.equal(r.headers['cross-origin-embedder-policy'], 'require-corp', p);
    assert.equal(r.headers['cross-origin-resource-policy'], 'same-origin', p);
  }
  const page = await req(s.url + '/');
  assert.equal(page.status, 200);
  assert.match(page.body, /<script type="module" src="\/lab.js">/);
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/);
  assert.match(csp, /worker-src 'self' blob:;/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.deepEqual(JSON.parse((await req(s.url + '/corpus.json')).body), ['one doc', 'two doc']);
});

test('only fixed paths: unknown ones are 404, /model without --model says how, other methods 405', async () => {
  const s = await start();
  assert.equal((await req(s.url + '/../package.json')).status, 404);
  assert.equal((await req(s.url + '/src/web/lab.ts')).status, 404);
  const m = await req(s.url + '/model/config.json');
  assert.equal(m.status, 404);
  assert.match(m.body, /--model DIR/);
  assert.equal((await req(s.url + '/', { method: 'POST' })).status, 405);
});

test('Host and Origin rules as for frugal serve; with a key the page is open and the model files are not', { skip: !existsSync(REF) }, async () => {
  const s = await start({ apiKey: KEY, modelDir: REF });
  assert.equal((await req(s.url + '/', { headers: { Host: 'evil.example:80' } })).status, 403, 'DNS rebinding: foreign Host');
  assert.equal((await req(s.url + '/corpus.json', { headers: { Origin: 'https://evil.example' } })).status, 403, 'foreign Origin');
  assert.equal((await req(s.url + '/')).status, 200, 'the page needs no key');
  assert.equal((await req(s.url + '/lab.js')).status === 401, false, 'scripts need no key');
  assert.equal((await req(s.url + '/model/config.json')).status, 401, 'model files need the key');
  const ok = await req(s.url + '/model/model.safetensors', { headers: { Authorization: `Bearer ${KEY}` } });
  assert.equal(ok.status, 200);
  assert.equal(Number(ok.headers['content-length']), (await import('node:fs')).statSync(path.join(REF, 'model.safetensors')).size);
  assert.equal((await req(s.url + '/model/tokenizer.json', { headers: { Authorization: `Bearer ${KEY}` } })).status, 404, 'absent tokenizer.json');
});

test('the CLI refuses a reachable host without a key, a bad port and a folder without a model', async () => {
  const refuses = (argv: string[], re: RegExp): Promise<void> => assert.rejects(web(argv), (e: unknown) => e instanceof UsageError && re.test(e.message));
  await refuses(['--host', '0.0.0.0', '--port', '0'], /--api-key/);
  await refuses(['--port', '70000'], /--port must be 0\.\.65535/);
  await refuses(['--model', process.cwd(), '--port', '0'], /no config\.json/);
});

test('the corpus slice takes the newest documents up to the size asked, and at least two', () => {
  const docs = ['a'.repeat(3000), 'b'.repeat(3000), 'c'.repeat(3000)];
  assert.deepEqual(corpusSlice(docs, 4).map((d) => d[0]), ['c', 'b']);
  assert.deepEqual(corpusSlice(docs, 1).map((d) => d[0]), ['c', 'b']);
  assert.deepEqual(corpusSlice(docs, 100).map((d) => d[0]), ['c', 'b', 'a']);
});
