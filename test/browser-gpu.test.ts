// The browser build in a real browser (Debian chromium + playwright-core, WebGPU on SwiftShader):
// every kernel case agrees with ts on webgpu and on wasm inside a page's Worker; the official
// reference vectors pass on webgpu and wasm in the page (logits ≤ 1e-4 absolute, routing and greedy
// tokens exact); an in-tab training run on webgpu matches the Node run's losses (native, else ts
// with the grouped MoE kernels' ts twin: the same sums in the same structure as native and webgpu);
// and the `frugal web` page answers its test hook and trains and chats in the tab.
// SwiftShader runs every kernel call in milliseconds: cases are the reference models' sizes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { useBackend, disposeBackends } from '../src/backend/setup-node.js';
import { getBackend, registerBackend, setBackend } from '../src/backend/registry.js';
import { tsMoeFfnBackward, tsMoeFfnForward } from '../src/backend/ts-moe.js';
import { trainTiny } from '../src/web/tab-train.js';
import { startWebServer } from '../src/serve/web-node.js';
import { browserSkip } from './browser.test-helper.js';
import { bundle, inWorker, openGpuBrowser, staticServer, type Route } from './browser-gpu.test-helper.js';

const skip = browserSkip();
const root = process.cwd();
const REF = path.resolve(root, '../shared/reference');
const SETS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8'].filter((s) => existsSync(path.join(REF, s)));
let work = '';
let srv: Awaited<ReturnType<typeof staticServer>>;
let b: Awaited<ReturnType<typeof openGpuBrowser>>;

/** A small deterministic corpus (documents of simple sentences). */
export function toyDocs(n = 24, seed = 11): string[] {
  const subj = ['the people', 'our nation', 'the congress', 'every citizen'], verb = ['must protect', 'will build', 'shall defend', 'can improve'], obj = ['the union', 'our schools', 'the laws', 'our freedom'];
  let s = seed;
  const r = (k: number): number => { s = (s * 1103515245 + 12345) % 2147483648; return s % k; };
  return Array.from({ length: n }, () => Array.from({ length: 16 }, () => `${subj[r(4)]} ${verb[r(4)]} ${obj[r(4)]}.`).join(' '));
}

before(async () => {
  if (skip) return;
  work = mkdtempSync(path.join(tmpdir(), 'frugal-browser-gpu-'));
  // The page's bundles (dist/browser) from the current sources, as `npm run build` makes them.
  const built = spawnSync(process.execPath, [path.join(root, 'scripts/build-browser.mjs'), '--quiet'], { encoding: 'utf8' });
  assert.equal(built.status, 0, `scripts/build-browser.mjs failed: ${built.stderr}`);
  await bundle(path.join(root, 'test/browser/harness-worker.ts'), path.join(work, 'harness.js'));
  const routes: Record<string, Route> = { '/': { body: '<!doctype html><title>frugal harness</title>', type: 'text/html' }, '/harness-worker.js': { file: path.join(work, 'harness.js') } };
  for (const set of SETS) for (const f of ['config.json', 'model.safetensors', 'vectors.json']) routes[`/ref/${set}/${f}`] = { file: path.join(REF, set, f) };
  srv = await staticServer(routes);
  b = await openGpuBrowser();
  await b.page.goto(srv.url + '/');
});
after(async () => {
  await b?.close();
  await srv?.close();
  await disposeBackends();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the page is cross-origin isolated and has a WebGPU adapter', { skip }, async () => {
  const r = await b.page.evaluate(async () => ({ coi: crossOriginIsolated, adapter: !!(await (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu?.requestAdapter()) }));
  assert.deepEqual(r, { coi: true, adapter: true }, `chromium without WebGPU (flags?): ${b.logs.join('\n')}`);
});

for (const backend of ['webgpu', 'wasm']) {
  test(`every kernel case agrees with ts on ${backend} in the page`, { skip, timeout: 300_000 }, async () => {
    const r = await inWorker(b.page, '/harness-worker.js', { task: 'kernels', backend }, 280_000);
    assert.ok(r.ok, `harness: ${String(r.error)}`);
    const ok = r.ok as { describe: string; outputs: number; refOutputs: number; worst: number[]; ran: string[] };
    assert.match(ok.describe, new RegExp(`^${backend}`));
    assert.ok(ok.ran.length > 0, `${backend} ran none of its kernels`);
    assert.equal(ok.outputs, ok.refOutputs);
    ok.worst.forEach((w, i) => assert.ok(w <= 1, `${backend} output ${i}: off by ${w}× tolerance`));
    console.log(`# ${ok.describe}: ${ok.outputs} outputs, kernels ${ok.ran.join(' ')}`);
  });

  test(`official reference vectors on ${backend} in the page`, { skip: skip || SETS.length === 0, timeout: 600_000 }, async () => {
    const r = await inWorker(b.page, '/harness-worker.js', { task: 'reference', backend, sets: SETS }, 580_000);
    assert.ok(r.ok, `harness: ${String(r.error)}`);
    const sets = (r.ok as { sets: Record<string, { full: number; decode: number; routingWeight: number; greedy: boolean; routingErrors: string[] }> }).sets;
    for (const set of SETS) {
      const s = sets[set]!;
      assert.ok(s.full <= 1e-4, `${set} [${backend}] full-forward logits off by ${s.full}`);
      assert.ok(s.decode <= 1e-4, `${set} [${backend}] incremental logits off by ${s.decode}`);
      assert.deepEqual(s.routingErrors, [], `${set} [${backend}] routing`);
      assert.ok(s.routingWeight <= 1e-5, `${set} [${backend}] routing weights off by ${s.routingWeight}`);
      assert.equal(s.greedy, true, `${set} [${backend}] greedy tokens differ from the reference`);
    }
  });
}

test('in-tab training on webgpu matches the Node run within float noise', { skip, timeout: 600_000 }, async () => {
  const docs = toyDocs();
  const options = { steps: 6, batch: 2, seq: 32, warmup: 2, evalEvery: 1000, seed: 7 };
  const r = await inWorker(b.page, '/harness-worker.js', { task: 'train', backend: 'webgpu', docs, options }, 580_000);
  assert.ok(r.ok, `harness: ${String(r.error)}`);
  const { losses: tab, ran } = r.ok as { losses: number[]; ran: string[] };
  assert.ok(ran.includes('webgpu:MatMul') && (ran.includes('webgpu:AdamW') || ran.includes('webgpu:AdamWBatch')) && ran.includes('webgpu:AttentionBackward') && ran.includes('webgpu:MoeFfnBackward'), `the tab run did not train on webgpu: ${ran}`);
  const prev = getBackend().name;
  const node: Record<string, number[]> = {};
  // Without native: ts with the ts twin of the grouped MoE kernels, which sums each layer as native
  // and webgpu do (the composed ops' order can flip a near-tied routing choice: a 2e-3 loss step).
  registerBackend({ name: 'ts-grouped', fallback: 'ts', threads: 1, kernels: { MoeFfnForward: tsMoeFfnForward, MoeFfnBackward: tsMoeFfnBackward } });
  try {
    for (const be of ['native', 'ts', 'ts-grouped'] as const) {
      if (be === 'ts-grouped') { if (node.native) continue; setBackend(be); } else { try { await useBackend(be); } catch { continue; } }
      node[be] = (await trainTiny(docs, options)).losses;
    }
  } finally { setBackend(prev); }
  const ref = node.native ?? node['ts-grouped']!;
  assert.equal(tab.length, options.steps);
  // Float noise: the backends sum in different orders; the spread between two CPU backends (ts and
  // native) is the yardstick, with a floor for runs where they happen to agree more closely.
  const spread = node.native && node.ts ? Math.max(...node.native.map((v, i) => Math.abs(v - node.ts![i]!))) : 0;
  const tol = Math.max(4 * spread, 2e-4);
  const worst = Math.max(...tab.map((v, i) => Math.abs(v - ref[i]!)));
  console.log(`# in-tab webgpu losses ${tab.map((x) => x.toFixed(5)).join(' ')}; Node ${node.native ? 'native' : 'ts-grouped'} worst |Δ| ${worst.toExponential(2)} (ts–native spread ${spread.toExponential(2)})`);
  assert.ok(worst <= tol, `in-tab webgpu losses differ from Node by ${worst} (> ${tol}): ${tab} vs ${ref}`);
  assert.ok(tab[tab.length - 1]! < tab[0]!, `loss did not fall in the tab: ${tab}`);
});

test('frugal web: the test hook answers the reference logits on webgpu, wasm and ts', { skip: skip || !SETS.includes('tiny-dsv3'), timeout: 300_000 }, async () => {
  const web = await startWebServer({ host: '127.0.0.1', port: 0, apiKey: null, allowedOrigins: [], allowedHosts: [], corpus: toyDocs(), modelDir: path.join(REF, 'tiny-dsv3'), loopback: true });
  try {
    const v = JSON.parse(readFileSync(path.join(REF, 'tiny-dsv3', 'vectors.json'), 'utf8'));
    const s = v.sequences.find((x: { tokens: number[] }) => x.tokens.length === 7);
    for (const backend of ['webgpu', 'wasm', 'ts']) {
      await b.page.goto(`${web.url}/?model=/model&tokens=${s.tokens.join(',')}&backend=${backend}`);
      await b.page.waitForSelector('#result[data-done]', { state: 'attached', timeout: 120_000 });
      const out = JSON.parse((await b.page.textContent('#result')) ?? '{}') as { backend?: string; logits?: number[][]; error?: string };
      assert.equal(out.error, undefined, `hook error on ${backend}: ${out.error}`);
      assert.equal(out.backend, backend);
      assert.equal(out.logits!.length, 7, 'one row per position');
      const flat = out.logits!.flat();
      const want: number[] = s.logits_full_absorb.data;
      assert.equal(flat.length, want.length);
      const d = Math.max(...flat.map((x, i) => Math.abs(x - want[i]!)));
      assert.ok(d <= 1e-4, `${backend} hook logits off by ${d}`);
    }
  } finally { await web.close(); }
});

test('frugal web: the page trains tiny in the tab (loss curve, status) and chats with it', { skip, timeout: 600_000 }, async () => {
  const web = await startWebServer({ host: '127.0.0.1', port: 0, apiKey: null, allowedOrigins: [], allowedHosts: [], corpus: toyDocs(), modelDir: null, loopback: true });
  try {
    const p = b.page;
    await p.goto(`${web.url}/`);
    await p.selectOption('#backend', 'webgpu');
    await p.waitForFunction(() => /^webgpu/.test(document.getElementById('backend-info')?.textContent ?? ''), null, { timeout: 120_000 });
    for (const [id, val] of [['steps', '4'], ['batch', '2'], ['seq', '16']] as const) await p.fill(`#${id}`, val);
    await p.getByTestId('train-start').click();
    await p.waitForSelector('#train-status[data-done]', { state: 'attached', timeout: 500_000 });
    assert.match((await p.textContent('#train-status')) ?? '', /trained 4 steps/);
    const inked = await p.evaluate(() => {
      const c = document.getElementById('loss') as HTMLCanvasElement;
      const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) n++;
      return n;
    });
    assert.ok(inked > 200, `the loss chart is blank (${inked} pixels drawn)`);
    await p.fill('#prompt', 'the people');
    await p.getByTestId('chat-send').click();
    await p.waitForSelector('[data-testid=chat-reply][data-done]', { timeout: 120_000 });
    const reply = (await p.getByTestId('chat-reply').last().textContent()) ?? '';
    assert.ok(reply.startsWith('the people') && reply.length > 'the people'.length, `no reply: '${reply}'`);
  } finally { await web.close(); }
});
