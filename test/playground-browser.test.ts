// The chat playground at `frugal serve`'s / in a real browser (Debian chromium + playwright-core;
// see browser.test-helper.ts for when these run), on a tiny model `frugal train` makes here in a
// few seconds (so replies read like its corpus). A real `frugal serve` child process answers: the page streams a greedy reply that
// equals the engine's own (serve-oracle.ts), shows no cache hit the first time and a hit of all but
// the last prompt token on the second identical prompt, and says "stopped" once the server is
// gone. An in-process server holds the generation (beforeStep) to prove the reply is shown while
// it is still being generated. The page uses the keyboard only, and fetches nothing elsewhere.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Page } from 'playwright-core';
import '../src/backend/index.js';
import { getBackend, setBackend } from '../src/backend/registry.js';
import { run as train } from '../src/cli/train.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { loadModel } from '../src/model/load-node.js';
import { startServer } from '../src/serve/server.js';
import type { Model } from '../src/infer/generate.js';
import type { Tokenizer } from '../src/io/tokenizer.js';
import { CHAT_STOPS, chatPrompt, expected } from './serve-oracle.js';
import { browserSkip, openBrowser, screenshot } from './browser.test-helper.js';

const skip = browserSkip();
const root = process.cwd();
let work = '', dir = '';
let model: Model, tok: Tokenizer;

before(async () => {
  if (skip) return;
  work = mkdtempSync(path.join(tmpdir(), 'frugal-play-'));
  const subj = ['the people', 'our nation', 'the congress', 'every citizen'], verb = ['must protect', 'will build', 'shall defend', 'can improve'], obj = ['the union', 'our schools', 'the laws', 'our freedom'];
  let s = 11;
  const r = (n: number): number => { s = (s * 1103515245 + 12345) % 2147483648; return s % n; };
  const docs = Array.from({ length: 30 }, () => JSON.stringify({ text: Array.from({ length: 20 }, () => `${subj[r(4)]} ${verb[r(4)]} ${obj[r(4)]}.`).join(' ') }));
  writeFileSync(path.join(work, 'corpus.jsonl'), docs.join('\n') + '\n');
  dir = path.join(work, 'run');
  const saved = getBackend().name;
  const code = await train(['--config', 'tiny', '--data', path.join(work, 'corpus.jsonl'), '--steps', '40', '--batch', '4', '--seq', '32', '--lr', '0.01', '--warmup', '5', '--quiet', '--out', dir]);
  setBackend(saved);
  assert.equal(code, 0, 'training the model to serve failed');
  model = await loadModel(path.join(dir, 'final'));
  tok = await loadTokenizer(path.join(dir, 'final'));
});
after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

/** Greedy settings through the page's form (keyboard: focus, select all, type). */
async function greedy(page: Page, maxTokens: number): Promise<void> {
  await page.locator('#settings summary').focus();
  await page.keyboard.press('Enter'); // opens the <details>
  for (const [id, v] of [['temperature', '0'], ['max-tokens', String(maxTokens)]] as const) {
    await page.getByTestId(id).focus();
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.type(v);
  }
}
/** Types a prompt and sends it (Enter, or the Send button); resolves when the reply has ended. */
async function ask(page: Page, text: string, via: 'enter' | 'click' = 'enter'): Promise<void> {
  const before = await page.getByTestId('chat-reply').count();
  await page.getByTestId('chat-input').focus();
  await page.keyboard.type(text);
  if (via === 'enter') await page.keyboard.press('Enter');
  else await page.getByTestId('chat-send').click();
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid=chat-reply][data-done]').length > n, before);
}
const last = async (page: Page, id: string): Promise<string> => (await page.getByTestId(id).last().textContent()) ?? '';

test('playground on a real `frugal serve`: streamed greedy reply equals the engine, cache hit on the repeated prompt, stopped state', { skip, timeout: 120_000 }, async () => {
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['serve', '--model', dir, '--port', '0', '--name', 'tiny'])});`;
  const b = await openBrowser(); // first: a browser that cannot start leaves nothing running
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b) => { err += String(b); });
  const exited = new Promise((res) => child.on('close', res));
  try {
    const deadline = Date.now() + 60_000;
    let url = '';
    while (!(url = / on (http:\/\/\S+) /.exec(err)?.[1] ?? '')) {
      assert.ok(Date.now() < deadline, `serve printed no URL:\n${err}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await b.page.goto(`${url}/`);
    await b.page.waitForSelector('[data-testid=server-status][data-state=connected]');
    assert.equal(await b.page.getByTestId('model-name').textContent(), 'tiny');
    // The page came from the package with a strict Content-Security-Policy (no inline or foreign script).
    const page = await fetch(`${url}/`);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    await greedy(b.page, 12);
    const prompt = 'the people must protect';
    const ids = tok.encode(chatPrompt([{ role: 'user', content: prompt }]), { addSpecialTokens: false });
    const want = expected(model, tok, ids, 12, { temperature: 0, topP: 0.95, topK: 40 }, CHAT_STOPS);

    await ask(b.page, prompt);
    assert.equal(await last(b.page, 'chat-reply'), want.text, 'the streamed reply is the engine\'s greedy output');
    assert.ok(Number(await b.page.getByTestId('chat-reply').last().getAttribute('data-chunks')) >= 2, 'the reply arrived in several chunks');
    assert.equal(await last(b.page, 'prompt-tokens'), String(want.promptTokens));
    assert.equal(await last(b.page, 'completion-tokens'), String(want.completionTokens));
    assert.equal(await last(b.page, 'cache-hit-tokens'), '0', 'a fresh server has nothing cached');
    assert.equal(await last(b.page, 'cache-miss-tokens'), String(want.promptTokens));
    assert.match(await last(b.page, 'ttft'), /^\d+ ms$/);

    // New chat, the same prompt: everything but the last prompt token comes from the prefix cache.
    await b.page.getByTestId('chat-new').focus();
    await b.page.keyboard.press('Enter');
    await ask(b.page, prompt, 'click');
    assert.equal(await last(b.page, 'chat-reply'), want.text);
    assert.equal(await last(b.page, 'cache-hit-tokens'), String(want.promptTokens - 1), 'the repeated prompt is a cache hit');
    assert.equal(await last(b.page, 'cache-miss-tokens'), '1');
    // A second turn: the first turn's tokens come from the cache too.
    await ask(b.page, 'our nation will build');
    assert.ok(Number(await last(b.page, 'cache-hit-tokens')) >= want.promptTokens, 'the follow-up reuses the first turn');
    await screenshot(b.page, 'playground.png', work);

    const bad = b.requests.filter((r) => new URL(r).origin !== new URL(url).origin);
    assert.deepEqual(bad, [], 'the page fetched something from another origin');
    child.kill('SIGTERM');
    await exited;
    await b.page.waitForSelector('[data-testid=server-status][data-state=stopped]', { timeout: 10_000 });
    assert.match(await last(b.page, 'server-status'), /server stopped/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await b.close();
  }
});

test('playground shows the reply while it is being generated (generation held mid-way by beforeStep)', { skip, timeout: 60_000 }, async () => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => { release = r; });
  const srv = await startServer({
    model, tokenizer: tok, modelName: 'tiny', port: 0, log: () => {},
    beforeStep: async (s) => { if (s.tokens === 4) await held; },
  });
  const b = await openBrowser({ width: 390, height: 844 }).catch(async (e: unknown) => { await srv.close(); throw e; }); // a phone's width
  try {
    await b.page.goto(`${srv.url}/`);
    await b.page.waitForSelector('[data-testid=server-status][data-state=connected]');
    await greedy(b.page, 10);
    await b.page.getByTestId('chat-input').focus();
    await b.page.keyboard.type('In the beginning');
    await b.page.keyboard.press('Enter');
    // Four tokens are out and the engine waits: the page already shows text, and no end.
    await b.page.waitForFunction(() => (document.querySelector('[data-testid=chat-reply]')?.textContent ?? '').length > 0);
    const partial = await b.page.getByTestId('chat-reply').textContent();
    assert.equal(await b.page.getByTestId('chat-reply').getAttribute('data-done'), null, 'still streaming');
    assert.equal(await b.page.getByTestId('chat-stop').isEnabled(), true, 'Stop is offered while streaming');
    release();
    await b.page.waitForSelector('[data-testid=chat-reply][data-done]');
    const full = (await b.page.getByTestId('chat-reply').textContent()) ?? '';
    assert.ok(full.startsWith(partial ?? '\u0000') && full.length > (partial ?? '').length, `the reply grew from ${JSON.stringify(partial)} to ${JSON.stringify(full)}`);
    assert.ok(await b.page.evaluate(() => document.documentElement.scrollWidth <= 390), 'the page fits 390 px');
  } finally {
    release();
    await b.close();
    await srv.close();
  }
});
