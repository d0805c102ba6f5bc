// Real-browser tests: Debian's chromium driven by playwright-core (no downloaded browser). Local
// runs without chromium skip these tests and say why; CI sets FRUGAL_EXPECT_BROWSER=1 (.ci/run
// installs the apt package first), and then a missing or broken browser fails them instead.
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** The browser binary (Debian's package; FRUGAL_CHROMIUM overrides). */
export const CHROMIUM = process.env.FRUGAL_CHROMIUM ?? '/usr/bin/chromium';
const expected = process.env.FRUGAL_EXPECT_BROWSER === '1';

/**
 * The skip reason for browser tests, or false when they must run. With FRUGAL_EXPECT_BROWSER=1
 * they always run (and fail in `openBrowser` when the browser is missing).
 */
export function browserSkip(): string | false {
  if (expected || existsSync(CHROMIUM)) return false;
  const why = `browser tests skipped: ${CHROMIUM} not found (apt-get install chromium; CI sets FRUGAL_EXPECT_BROWSER=1 and fails instead)`;
  console.log(`# ${why}`);
  return why;
}

/** A fresh headless chromium (own empty profile), and the origins every page request went to. */
export interface TestBrowser { context: BrowserContext; page: Page; requests: string[]; close(): Promise<void> }

/** Starts chromium with the flags this machine needs (no sandbox as root, no background network). */
export async function openBrowser(viewport = { width: 1280, height: 900 }): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`FRUGAL_EXPECT_BROWSER=1 but ${CHROMIUM} does not exist: install Debian's chromium (apt-get install -y chromium), or set FRUGAL_CHROMIUM`);
  const profile = mkdtempSync(path.join(tmpdir(), 'frugal-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const requests: string[] = [];
  context.on('request', (r) => { requests.push(r.url()); });
  const page = context.pages()[0] ?? await context.newPage();
  return { context, page, requests, close: async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); } };
}

/**
 * Saves a screenshot: into docs/img when FRUGAL_UPDATE_SCREENSHOTS=1 (to refresh the committed
 * ones), else into `scratch`. Returns the PNG's bytes.
 */
export async function screenshot(page: Page, name: string, scratch: string): Promise<Buffer> {
  const png = await page.screenshot({ fullPage: true });
  const dir = process.env.FRUGAL_UPDATE_SCREENSHOTS === '1' ? path.join(process.cwd(), 'docs', 'img') : scratch;
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, name), png);
  return png;
}
