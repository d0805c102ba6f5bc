// What the dashboard is built on, without a browser: the expert statistics the trainer logs (exact
// routing counts, per-layer MaxVio, current biases) and their bounded metrics.jsonl form; run.json
// states; the dashboard server's incremental reading of metrics.jsonl over SSE (torn, malformed,
// over-long and rewritten files) and its access rules (open page, keyed data, Origin and Host);
// and the playground's static files on `frugal serve` (strict CSP, key rules, fixed paths).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import path from 'node:path';
import '../src/backend/index.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { gateBias, layerMaxVio } from '../src/train/balance.js';
import { Trainer, defaultTrainerOptions, type ExpertStats, type LogEntry } from '../src/train/trainer.js';
import { MOE_MAX_COLUMNS, MOE_MAX_LAYERS, metricsRecord, moeRecord, type MoeRecord } from '../src/train/metrics-node.js';
import { runState, writeRunInfo, type RunInfo } from '../src/train/run-info-node.js';
import { MAX_LINE_BYTES, expandRunDirs, startDashboard, type RunningDashboard } from '../src/serve/dashboard-node.js';
import { startServer } from '../src/serve/server.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { loadModel } from '../src/model/load-node.js';

const work = mkdtempSync(path.join(tmpdir(), 'frugal-dashboard-'));
after(() => rmSync(work, { recursive: true, force: true }));
const KEY = 'k'.repeat(8) + '0123456789abcdef';

test('trainer: expert statistics per MoE layer count every routed token of the interval, MaxVio per layer, biases as they are', async () => {
  const cfg = structuredClone(presets.tiny!);
  const params = initParams(cfg, { seed: 3 });
  const toks = Int32Array.from({ length: 2000 }, (_, i) => (i * 7 + (i >> 3)) % 60);
  const logs: LogEntry[] = [], biasAtLog: (Float32Array | undefined)[][] = [];
  const B = 2, T = 16, every = 3;
  const tr = new Trainer({ cfg, params, train: toks, val: toks, options: { ...defaultTrainerOptions, steps: 6, batch: B, seq: T, logEvery: every, evalEvery: 6, sampleTokens: 2 }, meter: { flopsPerToken: 1, peakFlops: 1, usdPerToken: 0 } },
    { onLog: (e) => { logs.push(e); biasAtLog.push(e.experts!.layers.map((l) => gateBias(params, cfg, l)?.f32.slice())); }, decode: (ids) => ids.join(',') });
  await tr.run();
  assert.equal(logs.length, 2);
  const moeLayers = params.layers.flatMap((l, i) => (l.moe ? [i] : []));
  for (const [n, e] of logs.entries()) {
    const s = e.experts!;
    assert.deepEqual(s.layers.filter((l) => l < cfg.numHiddenLayers), moeLayers, 'every main MoE layer is reported, in order');
    assert.ok(s.layers.length > moeLayers.length, 'and the MTP layer after them');
    for (const [i, layer] of s.layers.entries()) {
      const sum = s.loads[i]!.reduce((a, b) => a + b, 0);
      if (layer < cfg.numHiddenLayers) assert.equal(sum, every * B * T * cfg.numExpertsPerTok, `layer ${layer}: k routes per token over the interval's ${every} steps`);
      assert.deepEqual(s.bias[i], biasAtLog[n]![i], 'the bias as it stands after the interval');
      assert.notEqual(s.bias[i], gateBias(params, cfg, layer)!.f32, 'a copy, not the live tensor');
      assert.ok(s.maxVio[i]! >= 0 && s.maxVio[i]! <= cfg.nRoutedExperts / cfg.numExpertsPerTok - 1 + 1e-9);
    }
    const mean = s.maxVio.reduce((a, b) => a + b, 0) / s.maxVio.length;
    assert.ok(Math.abs(mean - e.maxVio) < 1e-12, 'the logged MaxVio is the mean of the per-layer ones');
    if (e.step === 6) assert.match(e.sample ?? '', /^\d+(,\d+)*$/, 'the eval sample rides on the eval step\'s log');
    else assert.equal(e.sample, null, 'no sample on a step without evaluation');
  }
});

test('metrics rows: moe load relative to the mean, biases, and a bounded size for any model', () => {
  const one: ExpertStats = { layers: [1], loads: [Float64Array.from([4, 0, 2, 2])], maxVio: [1], bias: [Float32Array.from([0.001, -0.002, 0, 0.0005])] };
  assert.deepEqual(moeRecord(one), { layers: [1], group: 1, load: [[2, 0, 1, 1]], maxVio: [1], bias: [[0.001, -0.002, 0, 0.0005]] });
  assert.equal(layerMaxVio(one.loads[0]!), 1);
  // 100 layers × 256 experts: 64 layers, experts summed in groups of 4, well under 64 KiB a row.
  const E = 256, L = 100;
  const big: ExpertStats = {
    layers: Array.from({ length: L }, (_, i) => i + 3), maxVio: Array.from({ length: L }, () => 0.123456789),
    loads: Array.from({ length: L }, () => Float64Array.from({ length: E }, (_, e) => (e < 4 ? 4 : 1))),
    bias: Array.from({ length: L }, () => Float32Array.from({ length: E }, (_, e) => (e % 4) * 0.001)),
  };
  const m = moeRecord(big)! as MoeRecord;
  assert.equal(m.layers.length, MOE_MAX_LAYERS);
  assert.equal(m.omittedLayers, L - MOE_MAX_LAYERS);
  assert.equal(m.group, 4);
  assert.equal(m.load[0]!.length, MOE_MAX_COLUMNS);
  const mean = (4 * 4 + 252) / E;
  assert.equal(m.load[0]![0], Number((4 / mean).toPrecision(3)), 'column 0 = experts 0..3 (load 4 each) over the mean');
  assert.equal(m.load[0]![1], Number((1 / mean).toPrecision(3)));
  assert.equal(m.bias[0]![5], 0.0015, 'a column\'s bias is its experts\' mean');
  const entry = { step: 1, loss: 1, mainLoss: 1, mtpLoss: null, valLoss: null, lr: 1, gradNorm: 1, tokensPerSec: 1, mfu: 1, maxVio: 1, tokensSeen: 1, usd: 1, skippedSteps: 0, elapsedSec: 1, experts: big, sample: 'x'.repeat(10_000) } satisfies LogEntry;
  const row = JSON.stringify(metricsRecord(entry));
  assert.ok(row.length < 64 * 1024, `row is ${row.length} bytes`);
  assert.equal((JSON.parse(row) as { sample: string }).sample.length, 400);
});

const runInfo = (over: Partial<RunInfo>): RunInfo => ({
  format: 1, status: 'running', pid: process.pid, host: hostname(), startedAt: '2026-01-01T00:00:00Z', steps: 10, tokensPerStep: 64, options: {}, precision: 'fp32', data: 'd', unigramEntropy: 3, backend: 'ts',
  model: { config: 'tiny', layers: 3, experts: 8, expertsPerToken: 2, paramsTotal: 1, paramsActive: 1, moeLayers: [1, 2, 3] }, cost: { gpu: 'H800', pricePerHour: 2, usdPerToken: 1e-12, mfuAssumed: 0.39 }, ...over,
});

test('run.json: running while the process lives, stopped when it vanished, as written when it ended; unknown without one', async () => {
  const dir = path.join(work, 'states');
  mkdirSync(dir, { recursive: true });
  assert.equal(runState(dir).state, 'unknown');
  await writeRunInfo(dir, runInfo({}));
  assert.equal(runState(dir).state, 'running');
  const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
  await writeRunInfo(dir, runInfo({ pid: Number(gone.stdout.trim()) }));
  assert.deepEqual(runState(dir).state, 'stopped');
  await writeRunInfo(dir, runInfo({ status: 'interrupted', note: 'stopped by SIGTERM at step 4' }));
  assert.deepEqual(runState(dir), { state: 'interrupted', note: 'stopped by SIGTERM at step 4' });
  writeFileSync(path.join(dir, 'run.json'), '{"format":1,'); // torn: treated as absent, never a crash
  assert.equal(runState(dir).state, 'unknown');
});

/** Collects SSE events from a dashboard stream. */
async function stream(url: string, headers: Record<string, string> = {}): Promise<{ events: { name: string; data: any }[]; next: (pred: (e: { name: string; data: any }) => boolean, what?: string) => Promise<{ name: string; data: any }>; stop: () => void }> {
  const ctl = new AbortController();
  const res = await fetch(`${url}/api/stream`, { headers, signal: ctl.signal });
  assert.equal(res.status, 200);
  const events: { name: string; data: any }[] = [];
  const waiters: { pred: (e: { name: string; data: any }) => boolean; resolve: (e: { name: string; data: any }) => void }[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const name = /^event: (.*)$/m.exec(block)?.[1]; const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!name || data === undefined) continue;
          const e = { name, data: JSON.parse(data) };
          events.push(e);
          for (const w of waiters.splice(0)) { if (w.pred(e)) w.resolve(e); else waiters.push(w); }
        }
      }
    } catch { /* aborted */ }
  })();
  // An expected event that never comes fails the test in seconds instead of hanging it.
  const next = (pred: (e: { name: string; data: any }) => boolean, what = 'the expected event'): Promise<{ name: string; data: any }> =>
    new Promise((resolve, reject) => {
      const seen = events.find(pred);
      if (seen) return resolve(seen);
      const timer = setTimeout(() => reject(new Error(`no ${what} within 10 s (got: ${events.map((e) => e.name).join(', ')})`)), 10_000);
      waiters.push({ pred, resolve: (e) => { clearTimeout(timer); resolve(e); } });
    });
  return { events, next, stop: () => ctl.abort() };
}

test('dashboard server: rows arrive as appended (torn, malformed and over-long lines skipped), a rewritten file resets, bye on close', { timeout: 60_000 }, async () => {
  const dir = path.join(work, 'runA');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'metrics.jsonl');
  writeFileSync(file, '{"step":1,"loss":5}\n{"step":2,"loss":4}\n');
  await writeRunInfo(dir, runInfo({}));
  const dash: RunningDashboard = await startDashboard({ runs: [dir], port: 0, pollMs: 60_000 }); // polled by hand below
  try {
    const s = await stream(dash.url);
    const first = await s.next((e) => e.name === 'rows');
    assert.deepEqual(first.data, { id: 0, reset: true, rows: [{ step: 1, loss: 5 }, { step: 2, loss: 4 }] });
    assert.equal((await s.next((e) => e.name === 'runs')).data[0].state, 'running');
    appendFileSync(file, 'not json\n{"loss":1}\n' + '{"step":3,"x":"' + 'y'.repeat(MAX_LINE_BYTES) + '"}\n{"step":4,"loss":3}\n{"step":5,"lo');
    dash.poll();
    const more = await s.next((e) => e.name === 'rows' && !e.data.reset, 'rows event for the appended lines');
    assert.deepEqual(more.data.rows, [{ step: 4, loss: 3 }], 'only whole, valid, bounded lines; the torn tail waits');
    appendFileSync(file, 'ss":2.5}\n');
    dash.poll();
    assert.deepEqual((await s.next((e) => e.name === 'rows' && e.data.rows[0]?.step === 5)).data.rows, [{ step: 5, loss: 2.5 }]);
    // A resume truncates metrics.jsonl to the checkpoint and appends again: the page gets it all anew.
    writeFileSync(file, '{"step":1,"loss":5}\n{"step":2,"loss":4}\n{"step":3,"loss":3.5}\n{"step":4,"loss":3.25}\n{"step":5,"loss":3.1}\n{"step":6,"loss":3}\n');
    dash.poll();
    const reset = await s.next((e) => e.name === 'rows' && e.data.reset && e.data.rows.length === 6);
    assert.equal(reset.data.rows[5].loss, 3);
    await writeRunInfo(dir, runInfo({ status: 'finished' }));
    dash.poll();
    assert.equal((await s.next((e) => e.name === 'runs' && e.data[0].state === 'finished')).data[0].lastStep, 6);
    const api = await (await fetch(`${dash.url}/api/runs`)).json() as { runs: { metrics: unknown[]; name: string }[] };
    assert.equal(api.runs[0]!.metrics.length, 6);
    assert.equal(api.runs[0]!.name, 'runA');
    const closing = dash.close();
    await s.next((e) => e.name === 'bye');
    await closing;
    s.stop();
  } finally {
    await dash.close().catch(() => {});
  }
});

test('dashboard access: page open, data needs the key; foreign Origin and Host refused; fixed paths only', async () => {
  const dir = path.join(work, 'runB');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'metrics.jsonl'), '{"step":1,"loss":5}\n');
  const dash = await startDashboard({ runs: [dir], port: 0, apiKey: KEY });
  try {
    const page = await fetch(`${dash.url}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /data-testid="loss-chart"/);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'; script-src 'self'/);
    assert.equal((await fetch(`${dash.url}/ui/dashboard.js`)).status, 200);
    const auth = { headers: { Authorization: `Bearer ${KEY}` } };
    assert.equal((await fetch(`${dash.url}/ui/playground.js`)).status, 401, 'not an open path');
    assert.equal((await fetch(`${dash.url}/ui/playground.js`, auth)).status, 404, 'the dashboard serves only its own files');
    assert.equal((await fetch(`${dash.url}/ui/..%2fpackage.json`, auth)).status, 404);
    assert.equal((await fetch(`${dash.url}/api/runs`)).status, 401);
    assert.equal((await fetch(`${dash.url}/api/stream`)).status, 401);
    assert.equal((await fetch(`${dash.url}/api/runs`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 200);
    assert.equal((await fetch(`${dash.url}/`, { headers: { Origin: 'https://evil.example' } })).status, 403);
    assert.equal((await fetch(`${dash.url}/api/runs`, { headers: { Authorization: `Bearer ${KEY}`, Origin: 'https://evil.example' } })).status, 403);
    assert.equal((await fetch(`${dash.url}/`, { method: 'POST' })).status, 405);
  } finally {
    await dash.close();
  }
  // DNS rebinding: a loopback dashboard answers only loopback Host names (fetch cannot set Host; use node:http).
  const d2 = await startDashboard({ runs: [dir], port: 0 });
  try {
    const http = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(d2.url);
      http.get({ host: u.hostname, port: u.port, path: '/', headers: { Host: 'attacker.example' } }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject);
    });
    assert.equal(status, 403);
  } finally {
    await d2.close();
  }
  assert.throws(() => expandRunDirs(path.join(work, 'nope')), /no such folder/);
  assert.deepEqual(expandRunDirs(work).map((d) => path.basename(d)), ['runA', 'runB', 'states'], 'a folder of runs: each subfolder with metrics.jsonl or run.json');
  assert.deepEqual(expandRunDirs(dir), [dir]);
  await assert.rejects(startDashboard({ runs: [dir], host: '0.0.0.0', port: 0 }), /API key is required/);
});

const REF = path.resolve(process.cwd(), '../shared/reference/tiny-dsv3');
test('frugal serve answers / with the playground: strict CSP, open without the key while the API needs it', { skip: existsSync(REF) ? false : 'no reference model' }, async () => {
  const dir = path.join(work, 'model');
  mkdirSync(dir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(path.join(REF, f), path.join(dir, f));
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(trainBpe(['hello world, hello tokens. '.repeat(20)], { vocabSize: 300 })));
  const srv = await startServer({ model: await loadModel(dir), tokenizer: await loadTokenizer(dir), modelName: 'tiny', port: 0, apiKey: KEY, log: () => {} });
  try {
    const page = await fetch(`${srv.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    const html = await page.text();
    assert.match(html, /data-testid="chat-input"/);
    assert.doesNotMatch(html, /<script(?![^>]*src="\/ui\/)/, 'no inline script, nothing from elsewhere');
    for (const p of ['/ui/playground.js', '/ui/common.js', '/ui/style.css', '/ui/icon.svg']) assert.equal((await fetch(`${srv.url}${p}`)).status, 200, p);
    assert.equal((await fetch(`${srv.url}/ui/dashboard.js`)).status, 401, 'not a playground file: an API route, which needs the key');
    assert.equal((await fetch(`${srv.url}/v1/models`)).status, 401, 'the API still needs the key');
    assert.equal((await fetch(`${srv.url}/`, { method: 'HEAD' })).status, 200);
    assert.equal((await fetch(`${srv.url}/`, { headers: { Origin: 'https://evil.example' } })).status, 403);
  } finally {
    await srv.close();
  }
});

test('frugal dashboard CLI: serves run folders until SIGTERM; refuses a public host without a key, and missing folders', { timeout: 60_000 }, async () => {
  const dir = path.join(work, 'cliRun');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'metrics.jsonl'), '{"step":1,"loss":5}\n{"step":2,"loss":4.5}\n');
  const noKeyEnv = { ...process.env };
  delete noKeyEnv.FRUGAL_API_KEY;
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    `import { runCli } from ${JSON.stringify(path.join(process.cwd(), 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(args)});`],
    { encoding: 'utf8', env: noKeyEnv, timeout: 30_000 });
  const pub = cli(['dashboard', '--host', '0.0.0.0', '--port', '0', dir]);
  assert.equal(pub.status, 2);
  assert.match(pub.stderr, /--host 0\.0\.0\.0 is reachable from other machines: set --api-key/);
  const missing = cli(['dashboard', path.join(work, 'absent')]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /no such folder/);
  const train = cli(['train', '--dashboard', '--dashboard-host', '0.0.0.0', '--steps', '1', '--out', path.join(work, 'never')]);
  assert.equal(train.status, 2, 'refused before any work');
  assert.match(train.stderr, /reachable from other machines/);
  assert.equal(existsSync(path.join(work, 'never')), false);
  // A real one: prints its URL, serves the run, exits 0 on SIGTERM.
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e',
    `import { runCli } from ${JSON.stringify(path.join(process.cwd(), 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['dashboard', '--port', '0', dir])});`], { stdio: ['ignore', 'pipe', 'pipe'], env: noKeyEnv });
  let out = '';
  child.stdout!.on('data', (b) => { out += String(b); });
  const exit = new Promise<number | null>((res) => child.on('close', res));
  try {
    const deadline = Date.now() + 30_000;
    let url = '';
    while (!(url = /dashboard: (http:\/\/\S+?)\/\s/.exec(out)?.[1] ?? '')) {
      assert.ok(Date.now() < deadline, `no URL printed: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const runs = await (await fetch(`${url}/api/runs`)).json() as { runs: { name: string; state: string; metrics: unknown[] }[] };
    assert.deepEqual(runs.runs.map((r) => [r.name, r.state, r.metrics.length]), [['cliRun', 'unknown', 2]]);
    child.kill('SIGTERM');
    assert.equal(await exit, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
