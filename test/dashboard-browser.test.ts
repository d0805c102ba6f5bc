// The training dashboard in a real browser (Debian chromium + playwright-core; see
// browser.test-helper.ts for when these run): a real `frugal train --dashboard` child is watched
// while it trains — the loss chart gains points without a reload, one heatmap per MoE layer — then
// stopped with SIGTERM, after which the page says the run stopped and holds exactly one loss point
// per logged step. `frugal dashboard` over two finished runs (fp32 and fp8) overlays their losses,
// shows the FP8 panel, fits a phone's width, and works from the keyboard. Every request the page
// makes goes to the dashboard's own origin (nothing from a CDN).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeCorpus } from './corpus.js';
import type { Page } from 'playwright-core';
import { readMetrics } from '../src/train/metrics-node.js';
import { startDashboard } from '../src/serve/dashboard-node.js';
import { browserSkip, openBrowser, screenshot } from './browser.test-helper.js';

const skip = browserSkip();
const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-dash-'));
after(() => rmSync(work, { recursive: true, force: true }));

const corpusFile = (): string => writeCorpus(work);
const common = ['--config', 'tiny', '--batch', '4', '--seq', '32', '--lr', '0.01', '--warmup', '5', '--log-every', '1', '--quiet'];

/** `frugal train ARGS` in a child process (through tsx). */
function trainChild(args: string[]): { child: ReturnType<typeof spawn>; out: () => string; exit: Promise<number | null> } {
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['train', ...args])});`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b) => { out += String(b); });
  child.stderr!.on('data', (b) => { out += String(b); });
  return { child, out: () => out, exit: new Promise((res) => child.on('close', (code) => res(code))) };
}

/** Points the page drew for one series of the loss chart. */
const drawn = (page: Page, series: string): Promise<number> =>
  page.locator(`[data-testid=loss-chart] polyline[data-series="${series}"]`).getAttribute('data-points').then(Number);
const pointsAttr = (page: Page, series: string): Promise<number> =>
  page.locator(`[data-testid=loss-chart] polyline[data-series="${series}"]`).getAttribute('points').then((p) => (p ?? '').trim().split(/\s+/).filter(Boolean).length);
/** Waits until the chart shows `n` points for a series (events may land over several frames), then checks it. */
async function expectDrawn(page: Page, series: string, n: number, what: string): Promise<void> {
  await page.waitForFunction(([s, k]) => Number(document.querySelector(`[data-testid=loss-chart] polyline[data-series="${s}"]`)?.getAttribute('data-points') ?? -1) === k, [series, n] as const, { timeout: 10_000 })
    .catch(() => undefined);
  assert.equal(await drawn(page, series), n, what);
}
const sameOrigin = (requests: string[], url: string): void => {
  const bad = requests.filter((r) => new URL(r).origin !== new URL(url).origin);
  assert.deepEqual(bad, [], 'the page fetched something from another origin');
};

test('train --dashboard: live updates while training, one heatmap per MoE layer, stopped state, one point per logged step', { skip, timeout: 120_000 }, async () => {
  const data = corpusFile();
  const out = path.join(work, 'live');
  const b = await openBrowser(); // first: a browser that cannot start leaves nothing running
  // Far more steps than can run before the test stops it (the SIGTERM pattern of train-signals).
  const t = trainChild([...common, '--data', data, '--steps', '100000', '--eval-every', '5', '--save-every', '0', '--out', out, '--dashboard', '--dashboard-port', '0']);
  try {
    const deadline = Date.now() + 60_000;
    let url = '';
    while (!(url = /dashboard: (http:\/\/\S+?)\/\s/.exec(t.out())?.[1] ?? '')) {
      assert.ok(Date.now() < deadline, `no dashboard URL printed:\n${t.out()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await b.page.goto(`${url}/`);
    const status = b.page.getByTestId('run-status');
    await b.page.waitForSelector('[data-testid=run-status][data-state=running]');
    await b.page.waitForFunction(() => Number(document.querySelector('[data-testid=loss-chart] polyline[data-series="live train"]')?.getAttribute('data-points') ?? 0) >= 3);
    const early = await drawn(b.page, 'live train');
    // Without a reload, the chart grows while the run goes on.
    await b.page.waitForFunction((n) => Number(document.querySelector('[data-testid=loss-chart] polyline[data-series="live train"]')?.getAttribute('data-points') ?? 0) > n, early);
    assert.match((await status.textContent()) ?? '', /running — step \d+ \/ 100000/);
    const info = JSON.parse(readFileSync(path.join(out, 'run.json'), 'utf8')) as { model: { moeLayers: number[] } };
    assert.deepEqual(info.model.moeLayers, [1, 2, 3], 'tiny: MoE layers 1, 2 and the MTP layer');
    const layers = await b.page.getByTestId('heatmap-layer').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-layer'))));
    assert.deepEqual(layers, info.model.moeLayers, 'one expert-load heatmap per MoE layer');
    assert.equal(await b.page.getByTestId('bias-layer').count(), info.model.moeLayers.length);

    t.child.kill('SIGTERM');
    assert.equal(await t.exit, 143, t.out());
    // The page says the run stopped and that its server went away; it keeps the data.
    await b.page.waitForSelector('[data-testid=run-status][data-state=disconnected][data-run-state=interrupted]');
    assert.match((await status.textContent()) ?? '', /stopped \(interrupted\) — step (\d+)/);
    const rows = readMetrics(path.join(out, 'metrics.jsonl'));
    const losses = rows.filter((r) => typeof r.loss === 'number').length, vals = rows.filter((r) => typeof r.valLoss === 'number').length;
    assert.ok(losses > early && vals >= 1, `${losses} logged steps, ${vals} evaluations`);
    assert.equal(await drawn(b.page, 'live train'), losses, 'one train-loss point per logged step');
    assert.equal(await pointsAttr(b.page, 'live train'), losses, 'the polyline holds those points');
    assert.equal(await drawn(b.page, 'live validation'), vals, 'one validation point per evaluation');
    const steps = await b.page.getByTestId('heatmap-layer').first().locator('canvas').getAttribute('data-steps');
    assert.equal(Number(steps), rows.filter((r) => r.moe).length, 'one heatmap column per logged step');
    assert.ok((await b.page.getByTestId('samples').locator('li q').count()) >= 1, 'the eval samples are listed');
    sameOrigin(b.requests, url);
  } finally {
    if (t.child.exitCode === null) t.child.kill('SIGKILL');
    await b.close();
  }
});

test('frugal dashboard over fp32 and fp8 runs: overlaid losses, FP8 panel, phone width, keyboard', { skip, timeout: 120_000 }, async () => {
  const b = await openBrowser();
  const data = corpusFile();
  const runs = ['fp32', 'fp8'].map((p) => path.join(work, 'cmp', p));
  const children = ['fp32', 'fp8'].map((p, i) => trainChild([...common, '--data', data, '--steps', '24', '--eval-every', '8', '--precision', p, '--out', runs[i]!]));
  const codes = await Promise.all(children.map((t) => t.exit));
  if (codes.some((c) => c !== 0)) { await b.close(); assert.fail(`training failed:\n${children.map((t) => t.out()).join('\n')}`); }
  const dash = await startDashboard({ runs, port: 0 }).catch(async (e: unknown) => { await b.close(); throw e; });
  try {
    await b.page.goto(`${dash.url}/`);
    await b.page.waitForSelector('[data-testid=run-status][data-state=finished]');
    for (const [i, name] of ['fp32', 'fp8'].entries()) {
      const rows = readMetrics(path.join(runs[i]!, 'metrics.jsonl'));
      await expectDrawn(b.page, `${name} train`, rows.length, `${name}: one point per logged step`);
    }
    // FP8 statistics appear for the fp8 run (select it with the keyboard).
    const select = b.page.getByTestId('run-select');
    await select.focus();
    await b.page.keyboard.press('ArrowDown');
    await b.page.waitForSelector('#fp8-panel:not([hidden])');
    const fp8Rows = readMetrics(path.join(runs[1]!, 'metrics.jsonl')).filter((r) => r.fp8);
    assert.equal(fp8Rows.length, 24, 'every fp8 row carries FP8 statistics');
    assert.match((await b.page.getByTestId('fp8').textContent()) ?? '', /quantising.*% of step time/);
    // Log scale from the keyboard: Tab to the checkbox, Space toggles it.
    await b.page.getByTestId('log-scale').focus();
    await b.page.keyboard.press('Space');
    assert.equal(await b.page.getByTestId('log-scale').isChecked(), true);
    await b.page.waitForFunction(() => /log scale/.test(document.querySelector('[data-testid=loss-chart]')?.getAttribute('aria-label') ?? '')); // redrawn on the next frame
    await screenshot(b.page, 'dashboard.png', work);
    // A phone's width: no sideways scrolling.
    await b.page.setViewportSize({ width: 390, height: 844 });
    await b.page.waitForTimeout(100);
    assert.ok(await b.page.evaluate(() => document.documentElement.scrollWidth <= 390), 'the page fits 390 px');
    sameOrigin(b.requests, dash.url);
  } finally {
    await b.close();
    await dash.close();
  }
});
