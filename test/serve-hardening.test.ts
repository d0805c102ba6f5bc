// The server against hostile templates, web pages and clients (issue #18, items 1, 12, 13), over
// 127.0.0.1 only, with a bounded number of requests: a looping or exploding chat template is a
// 500 within its budget while /health keeps answering; cross-origin POSTs and foreign Host
// headers (DNS rebinding) get 403; key rules (trimmed, ≥ 16 characters, any-case Bearer);
// HEAD /health; 413 for an oversize chunked body; --max-queue 0; a run folder served under the
// run's name; --served-model-name and --threads accepted by the verbs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { loadModel, saveModel } from '../src/model/load-node.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { startServer, type ServerOptions } from '../src/serve/server.js';
import { resolveModelDir } from '../src/serve/model-node.js';
import { runCli } from '../src/cli/main.js';

const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-serve-hard-'));
const run = path.join(work, 'my-run');
const modelDir = path.join(run, 'final');
let base: Omit<ServerOptions, 'modelName'>;

before(async () => {
  const cfg = structuredClone(presets.tiny!);
  const tok = trainBpe(['The quick brown fox jumps over the lazy dog. Congress shall make no law.\n'.repeat(20)], { vocabSize: 300 });
  await saveModel(modelDir, cfg, initParams(cfg, { seed: 3 }), { 'tokenizer.json': JSON.stringify(tok) });
  base = { model: await loadModel(modelDir), tokenizer: await loadTokenizer(modelDir), port: 0, log: () => undefined };
});
after(() => rmSync(work, { recursive: true, force: true }));

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }
/** One request with full control of the headers (Host and Origin included). */
function request(url: string, o: { method?: string; path: string; headers?: Record<string, string>; body?: string }): Promise<Reply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, method: o.method ?? 'GET', path: o.path, headers: o.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}
const completion = JSON.stringify({ prompt: 'The quick brown', max_tokens: 2, temperature: 0 });
const chat = JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 });
const errorCode = (r: Reply): string => (JSON.parse(r.body) as { error: { code: string } }).error.code;

const badTemplates: Array<[string, string]> = [['loops', '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}'], ['allocates', '{% for i in range(100000000) %}x{% endfor %}']];
for (const [what, template] of badTemplates) {
  test(`a chat template that ${what} is a 500 within its budget while /health keeps answering (item 1)`, { timeout: 30_000 }, async () => {
    const srv = await startServer({ ...base, modelName: 'm', chatTemplate: template, templateBudget: { timeMs: 1500, maxHeapMb: 64 } });
    try {
      let done = false, healthy = 0;
      const pending = request(srv.url, { method: 'POST', path: '/v1/chat/completions', headers: { 'Content-Type': 'application/json' }, body: chat }).finally(() => { done = true; });
      while (!done) {
        const h = await request(srv.url, { path: '/health' });
        assert.equal(h.status, 200);
        if (!done) healthy++;
        await new Promise((r) => setTimeout(r, 50));
      }
      const r = await pending;
      assert.equal(r.status, 500, r.body);
      assert.equal(errorCode(r), 'chat_template_budget');
      assert.ok(healthy >= 2, `/health answered ${healthy} times while the template ran`);
      // Completions do not use the template and keep working.
      assert.equal((await request(srv.url, { method: 'POST', path: '/v1/completions', body: completion })).status, 200);
    } finally {
      await srv.close();
    }
  });
}

test('a template that raises is a 400 naming the message', { timeout: 20_000 }, async () => {
  const srv = await startServer({ ...base, modelName: 'm', chatTemplate: "{{ raise_exception('only user turns') }}" });
  try {
    const r = await request(srv.url, { method: 'POST', path: '/v1/chat/completions', body: chat });
    assert.equal(r.status, 400);
    assert.match(r.body, /chat template rejected the messages: only user turns/);
  } finally {
    await srv.close();
  }
});

test('cross-origin requests and foreign Host headers are refused; loopback and allow-listed ones pass (item 12)', async () => {
  const srv = await startServer({ ...base, modelName: 'm', allowedOrigins: ['https://app.example'], allowedHosts: ['box.lan'] });
  const port = new URL(srv.url).port;
  try {
    // A web page's "simple" cross-origin POST (text/plain needs no preflight).
    const evil = await request(srv.url, { method: 'POST', path: '/v1/completions', headers: { Origin: 'https://evil.example', 'Content-Type': 'text/plain' }, body: completion });
    assert.equal(evil.status, 403);
    assert.equal(errorCode(evil), 'origin_not_allowed');
    assert.equal((await request(srv.url, { path: '/v1/models', headers: { Origin: 'null' } })).status, 403);
    // DNS rebinding: the browser sends the attacker's name as Host.
    const rebound = await request(srv.url, { path: '/v1/models', headers: { Host: `attacker.example:${port}` } });
    assert.equal(rebound.status, 403);
    assert.equal(errorCode(rebound), 'host_not_allowed');
    assert.equal((await request(srv.url, { path: '/health', headers: { Host: 'attacker.example' } })).status, 403);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'box.lan:8080', 'app.localhost']) {
      assert.equal((await request(srv.url, { path: '/v1/models', headers: { Host: host } })).status, 200, host);
    }
    const allowed = await request(srv.url, { method: 'POST', path: '/v1/completions', headers: { Origin: 'https://app.example' }, body: completion });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example');
    assert.equal((await request(srv.url, { path: '/v1/models', headers: { Origin: 'http://localhost:5173' } })).status, 200);
    const pre = await request(srv.url, { method: 'OPTIONS', path: '/v1/chat/completions', headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(pre.status, 204);
    assert.match(String(pre.headers['access-control-allow-headers']), /Authorization/);
    assert.equal((await request(srv.url, { method: 'OPTIONS', path: '/v1/chat/completions', headers: { Origin: 'https://evil.example' } })).status, 403);
  } finally {
    await srv.close();
  }
});

test('API keys: a short key is refused; surrounding whitespace is trimmed; Bearer in any case (item 12)', async () => {
  await assert.rejects(startServer({ ...base, modelName: 'm', apiKey: 'k' }), /API key is 1 character long; use at least 16/);
  await assert.rejects(startServer({ ...base, modelName: 'm', apiKey: 'has a space in the middle' }), /visible ASCII characters without spaces/);
  const key = 'correct-horse-battery-staple';
  const srv = await startServer({ ...base, modelName: 'm', apiKey: `${key}\n` });
  try {
    for (const auth of [`Bearer ${key}`, `bearer ${key}`, `BEARER   ${key}  `]) {
      assert.equal((await request(srv.url, { path: '/v1/models', headers: { Authorization: auth } })).status, 200, auth);
    }
    for (const auth of [`Bearer ${key}x`, key, `Basic ${key}`, '']) {
      assert.equal((await request(srv.url, { path: '/v1/models', headers: { Authorization: auth } })).status, 401, auth);
    }
    assert.equal((await request(srv.url, { path: '/health' })).status, 200, '/health needs no key');
  } finally {
    await srv.close();
  }
});

test('HEAD /health, 413 for an oversize chunked body, --max-queue 0 means no bound (item 13)', { timeout: 20_000 }, async () => {
  const srv = await startServer({ ...base, modelName: 'm', maxBodyBytes: 1024, maxQueue: 0 });
  try {
    const head = await request(srv.url, { method: 'HEAD', path: '/health' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.ok(Number(head.headers['content-length']) > 0);
    // A chunked body (no Content-Length) that passes the limit: the client gets a 413, not a reset.
    const u = new URL(srv.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/v1/completions', headers: { 'Transfer-Encoding': 'chunked' } }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      const chunk = Buffer.alloc(512, 0x61);
      let sent = 0;
      const pump = (): void => { while (sent < 200 && req.write(chunk)) sent++; if (sent < 200) req.once('drain', pump); else req.end(); };
      pump();
    });
    assert.equal(status, 413);
    assert.equal((await request(srv.url, { path: '/health' })).status, 200, 'still serving');
    const ok = await Promise.all([0, 1, 2].map(() => request(srv.url, { method: 'POST', path: '/v1/completions', body: completion })));
    assert.deepEqual(ok.map((r) => r.status), [200, 200, 200], 'maxQueue 0: nothing is refused as busy');
  } finally {
    await srv.close();
  }
});

test('a run folder resolves to its final model (else its checkpoint) and is named after the run (item 13)', () => {
  assert.deepEqual(resolveModelDir(run), { dir: modelDir, name: 'my-run', note: `${run} is a run folder; using its final model ${modelDir}` });
  assert.equal(resolveModelDir(modelDir).name, 'my-run', 'RUN/final is served as the run, not as "final"');
  const unfinished = path.join(work, 'unfinished');
  mkdirSync(path.join(unfinished, 'checkpoint'), { recursive: true });
  writeFileSync(path.join(unfinished, 'checkpoint', 'config.json'), '{}');
  writeFileSync(path.join(unfinished, 'checkpoint', 'trainer_state.json'), '{}');
  assert.equal(resolveModelDir(unfinished).dir, path.join(unfinished, 'checkpoint'));
  assert.throws(() => resolveModelDir(work), /no config\.json there, nor a run's final\/ or checkpoint\//);
});

test('frugal serve --model RUN --served-model-name --threads --max-queue 0; generate and logits take --threads (item 13)', { timeout: 60_000 }, async () => {
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['serve', '--model', run, '--port', '0', '--served-model-name', 'tiny-chat', '--threads', '1', '--max-queue', '0'])});`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (b) => { err += String(b); const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(err); if (m) resolve(m[1]!); });
    proc.on('exit', () => reject(new Error(`serve exited: ${err}`)));
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  try {
    const models = JSON.parse((await request(url, { path: '/v1/models' })).body) as { data: Array<{ id: string }> };
    assert.deepEqual(models.data.map((m) => m.id), ['tiny-chat']);
    assert.match(err, /is a run folder; using its final model/);
  } finally {
    proc.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => { out.push(String(s)); return true; }) as typeof process.stdout.write;
  let codes: number[];
  try {
    codes = [await runCli(['logits', '--model', run, '--tokens', '5,6,7', '--threads', '1', '--json']),
      await runCli(['generate', '--model', run, '--tokens', '5,6,7', '--max-tokens', '2', '--greedy', '--threads', '1'])];
  } finally {
    process.stdout.write = write;
  }
  assert.deepEqual(codes, [0, 0]);
  assert.equal((JSON.parse(out[0]!) as { logits: number[][] }).logits.length, 3);
});
