// Training pipeline, end to end: optimizer/schedule/balancing units, a tiny `frugal train` run whose
// loss falls below the unigram entropy, SIGKILL + --resume equivalence, refusal of corrupt and
// mismatched checkpoints, and NaN handling (skip, then stop with the last good checkpoint intact).
// Each test stands alone: the uninterrupted reference run is made once on first use (baseRun),
// tests that damage a run work on their own copy, and no test leaves another backend active.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeCorpus } from './corpus.js';
import { Tensor } from '../src/autograd/tensor.js';
import '../src/backend/index.js';
import { getBackend, setBackend } from '../src/backend/registry.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { loadModel } from '../src/model/load-node.js';
import { AdamW, clipGradNorm, gradNorm } from '../src/train/optim.js';
import { lrAt, type Schedule } from '../src/train/schedule.js';
import { countLoads, layerMaxVio, updateGateBias } from '../src/train/balance.js';
import { Trainer, TrainingDivergedError, defaultTrainerOptions } from '../src/train/trainer.js';
import { readMetrics } from '../src/train/metrics-node.js';
import { run } from '../src/cli/train.js';

const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-train-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const corpusFile = (): string => writeCorpus(work);
const data = corpusFile();
const common = ['--config', 'tiny', '--data', data, '--batch', '4', '--seq', '32', '--lr', '0.01', '--warmup', '5', '--backend', 'auto', '--log-every', '1', '--eval-every', '15', '--quiet'];

/** Runs `frugal train` in a child process (through tsx, so no build is needed). */
function cliChild(args: string[]): ReturnType<typeof spawn> {
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['train', ...args])});`;
  return spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
}
async function finish(child: ReturnType<typeof spawn>): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  let out = '', err = '';
  child.stdout!.on('data', (b) => { out += String(b); });
  child.stderr!.on('data', (b) => { err += String(b); });
  return new Promise((res) => child.on('close', (code, signal) => res({ code, signal, out, err })));
}
const losses = (dir: string): Map<number, number> => new Map(readMetrics(path.join(dir, 'metrics.jsonl')).map((r) => [r.step as number, r.totalLoss as number]));
/** The uninterrupted 30-step run (checkpoints every 10), made once by whichever test needs it first. */
let base: Promise<string> | null = null;
function baseRun(): Promise<string> {
  base ??= (async () => {
    const dir = path.join(work, 'a');
    const code = await run([...common, '--steps', '30', '--save-every', '10', '--out', dir]);
    assert.equal(code, 0, 'the reference run failed');
    return dir;
  })();
  return base;
}
const ckptStep = (dir: string): number => (JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'trainer_state.json'), 'utf8')) as { state: { step: number } }).state.step;

test('wsd schedule: linear warmup, constant, cosine down to minRatio', () => {
  const s: Schedule = { kind: 'wsd', peak: 1, warmup: 10, total: 100, minRatio: 0.1, decayStart: 0.5 };
  assert.equal(lrAt(s, 5), 0.5);
  assert.equal(lrAt(s, 10), 1);
  assert.equal(lrAt(s, 50), 1);
  assert.ok(lrAt(s, 75) < 1 && lrAt(s, 75) > 0.1);
  assert.ok(Math.abs(lrAt(s, 100) - 0.1) < 1e-12);
  assert.ok(lrAt({ ...s, kind: 'cosine' }, 30) < 1);
});

test('AdamW: decay on matrices only, bf16 moments track f32, clipping', () => {
  const mk = (): Tensor[] => [Tensor.from([1, -2, 3, 4], [2, 2]).param(), Tensor.from([1, 1]).param()];
  const a = mk(), b = mk();
  for (const ps of [a, b]) { ps[0]!.grad = Float32Array.from([0, 0, 0, 0]); ps[1]!.grad = Float32Array.from([0, 0]); }
  new AdamW(a, { weightDecay: 0.5 }).step(0.1);
  assert.deepEqual(Array.from(a[0]!.f32), [0.95, -1.9, 2.85, 3.8].map(Math.fround)); // decayed
  assert.deepEqual(Array.from(a[1]!.f32), [1, 1]); // vector: not decayed
  const f = mk(), h = mk();
  const of = new AdamW(f), oh = new AdamW(h, { momentDtype: 'bf16' });
  for (let i = 0; i < 5; i++) {
    for (const ps of [f, h]) { ps[0]!.grad = Float32Array.from([0.3, -0.1, 0.2, i]); ps[1]!.grad = Float32Array.from([1, -1]); }
    of.step(0.01); oh.step(0.01);
  }
  f[0]!.f32.forEach((x, i) => assert.ok(Math.abs(x - h[0]!.f32[i]!) < 1e-3, `bf16 moments drift at ${i}`));
  assert.equal(oh.stateBytes() * 2, of.stateBytes());
  f[0]!.grad = Float32Array.from([3, 4, 0, 0]); f[1]!.grad = null;
  assert.equal(clipGradNorm(f, 1), 5);
  assert.ok(Math.abs(gradNorm(f) - 1) < 1e-5);
});

test('AdamW lrScale: a parameter group steps at lr·scale (decay too); the trainer scales only the routers', () => {
  const mk = (): Tensor[] => [Tensor.from([1, 2], [1, 2]).param(), Tensor.from([1, 2], [1, 2]).param()];
  const ps = mk();
  for (const t of ps) t.grad = Float32Array.from([1, -1]);
  new AdamW(ps, { weightDecay: 0, lrScale: [1, 0.1] }).step(0.1);
  assert.ok(Math.abs(ps[0]!.f32[0]! - 0.9) < 1e-6 && Math.abs(ps[1]!.f32[0]! - 0.99) < 1e-6);
  const cfg = structuredClone(presets.tiny!);
  const params = initParams(cfg, { seed: 1 });
  const toks = Int32Array.from({ length: 400 }, (_, i) => (i * 7) % 50);
  const before = params.layers[1]!.moe!.router.f32.slice(), beforeUp = params.layers[1]!.moe!.shared!.up.f32.slice();
  const tr = new Trainer({ cfg, params, train: toks, val: toks, options: { ...defaultTrainerOptions, steps: 1, batch: 2, seq: 16, routerLrScale: 0, evalEvery: 100, sampleTokens: 1 }, meter: { flopsPerToken: 1, peakFlops: 1, usdPerToken: 0 } });
  tr.trainStep();
  assert.deepEqual(params.layers[1]!.moe!.router.f32, before); // frozen router
  assert.notDeepEqual(params.layers[1]!.moe!.shared!.up.f32, beforeUp); // the rest trains
});

test('aux-loss-free bias, relative rule: steps in proportion to the relative load error', () => {
  const cfg = structuredClone(presets.tiny!);
  const p = initParams(cfg, { seed: 1 });
  const loads = countLoads([{ layer: 1, ids: Int32Array.from([0, 1, 0, 1, 0, 2, 0, 3]), weights: new Float32Array(8), tokens: 4, k: 2 }], 8);
  updateGateBias(p, cfg, loads, 0.01, 'relative');
  const b = p.layers[1]!.moe!.bias!.f32; // mean load 1: expert 0 (load 4) → −0.03, expert 7 (load 0) → +0.01
  assert.ok(Math.abs(b[0]! + 0.03) < 1e-7 && Math.abs(b[7]! - 0.01) < 1e-7 && b[2] === 0);
});

test('aux-loss-free bias: overloaded experts go down, idle ones up; MaxVio', () => {
  const cfg = structuredClone(presets.tiny!);
  const p = initParams(cfg, { seed: 1 });
  const ids = Int32Array.from([0, 1, 0, 1, 0, 2, 0, 3]); // expert 0 chosen 4 times, 4..7 never
  const loads = countLoads([{ layer: 1, ids, weights: new Float32Array(8), tokens: 4, k: 2 }], 8);
  assert.equal(layerMaxVio(loads.get(1)!), (4 - 1) / 1);
  updateGateBias(p, cfg, loads, 0.01);
  const b = p.layers[1]!.moe!.bias!.f32;
  assert.ok(b[0]! < 0 && b[1]! < 0 && b[7]! > 0);
  assert.ok(Math.abs(b[2]! - 0) < 1e-12); // load 1 = mean: unchanged
});

test('frugal train (tiny): loss falls below the unigram entropy; HF files written', async () => {
  const dir = await baseRun();
  const rows = readMetrics(path.join(dir, 'metrics.jsonl'));
  assert.equal(rows.length, 30);
  const svg = readFileSync(path.join(dir, 'loss-curve.svg'), 'utf8');
  const entropy = Number(/unigram entropy ([\d.]+)/.exec(svg)?.[1]);
  assert.ok(entropy > 1, `entropy ${entropy}`);
  const tail = rows.slice(-5).map((r) => r.loss as number);
  const mean = tail.reduce((x, y) => x + y, 0) / tail.length;
  assert.ok(mean < entropy - 0.5, `final loss ${mean} not clearly below unigram entropy ${entropy}`);
  assert.ok(typeof rows[rows.length - 1]!.valLoss === 'number');
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) assert.ok(existsSync(path.join(dir, 'final', f)), f);
  const m = await loadModel(path.join(dir, 'final'));
  assert.equal(m.cfg.vocabSize, 512);
});

test('SIGKILL then --resume gives the same losses as the uninterrupted run', async () => {
  const a = await baseRun(), b = path.join(work, 'b');
  const child = cliChild([...common, '--steps', '30', '--save-every', '5', '--out', b]);
  const done = finish(child);
  const t0 = Date.now();
  while (!existsSync(path.join(b, 'checkpoint', 'trainer_state.json')) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGKILL');
  const killed = await done;
  assert.equal(killed.signal, 'SIGKILL', `child ended before the kill: ${killed.err}`);
  const at = ckptStep(b);
  assert.ok(at >= 5 && at < 30, `checkpoint step ${at}`);
  const code = await run([...common, '--steps', '30', '--resume', '--out', b]);
  assert.equal(code, 0);
  const la = losses(a), lb = losses(b);
  assert.equal(lb.size, 30);
  for (let s = at + 1; s <= 30; s++) assert.ok(Math.abs(la.get(s)! - lb.get(s)!) < 1e-6, `step ${s}: ${la.get(s)} vs ${lb.get(s)}`);
});

test('corrupt or mismatched checkpoints are refused and left as they are', async () => {
  const a = path.join(work, 'corrupt');
  cpSync(await baseRun(), a, { recursive: true }); // damage a copy, never the shared reference run
  const errs: string[] = [];
  const origErr = console.error;
  console.error = (...x: unknown[]) => { errs.push(x.join(' ')); };
  try {
    await assert.rejects(run([...common, '--steps', '50', '--out', a]), /already holds a checkpoint/);
    await assert.rejects(run([...common, '--steps', '50', '--resume', '--out', a, '--seq', '16']), /--seq 16 differs/);
    const file = path.join(a, 'checkpoint', 'model.safetensors');
    const bytes = readFileSync(file);
    bytes[bytes.length - 3] = bytes[bytes.length - 3]! ^ 0xff;
    writeFileSync(file, bytes);
    assert.equal(await run([...common, '--steps', '50', '--resume', '--extend', '--out', a]), 1);
    assert.match(errs.join('\n'), /corrupt: model\.safetensors does not match its checksum/);
    assert.ok(readFileSync(file).equals(bytes), 'the corrupt checkpoint must not be overwritten');
  } finally {
    console.error = origErr;
  }
});

test('NaN: a bad step is skipped; three in a row stop with the last good checkpoint intact', async () => {
  const prev = getBackend().name;
  setBackend('ts');
  try {
    const cfg = structuredClone(presets.tiny!);
    const params = initParams(cfg, { seed: 3 });
    const toks = Int32Array.from({ length: 4000 }, (_, i) => (i * 7 + (i >> 3)) % 500);
    const saves: number[] = [];
    const poison = new Set([3, 6, 7, 8]);
    const tr = new Trainer({ cfg, params, train: toks, val: toks, options: { ...defaultTrainerOptions, steps: 12, batch: 2, seq: 16, evalEvery: 100, saveEvery: 1, sampleTokens: 2 }, meter: { flopsPerToken: 1, peakFlops: 1, usdPerToken: 0 } }, {
      afterBackward: (step, ps) => { if (poison.has(step)) ps[0]!.grad![0] = NaN; },
      save: async (_r, snap) => { saves.push(snap.state.step); },
    });
    const before = params.embed.f32.slice();
    await assert.rejects(tr.run(), (e: unknown) => e instanceof TrainingDivergedError && /3 consecutive/.test((e as Error).message));
    assert.deepEqual(saves, [1, 2, 4, 5]); // no checkpoint after a skipped step
    assert.equal(tr.progress.skippedSteps, 4);
    assert.ok(!params.embed.f32.some((x) => !Number.isFinite(x)), 'skipped steps must not touch the parameters');
    assert.ok(params.embed.f32.some((x, i) => x !== before[i]));
  } finally { setBackend(prev); }
});

test('frugal train --lr 1e30 stops with a clear error, keeping the last good checkpoint', () => {
  const dir = path.join(work, 'nan');
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['train', ...common, '--steps', '20', '--lr', '1e30', '--warmup', '0', '--save-every', '1', '--out', dir])});`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /diverged: 3 consecutive steps/);
  assert.match(r.stderr, /last good checkpoint is .*step \d+/);
  assert.ok(ckptStep(dir) >= 1 && ckptStep(dir) < 20);
});

test('SIGINT saves a checkpoint and exits with 130', async () => {
  const dir = path.join(work, 'int');
  // 10,000 steps: the child cannot finish before the signal arrives, however loaded the machine.
  const child = cliChild([...common, '--steps', '10000', '--save-every', '0', '--out', dir]);
  const done = finish(child);
  const t0 = Date.now();
  while (readMetrics(path.join(dir, 'metrics.jsonl')).length < 2 && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGINT');
  const r = await done;
  assert.equal(r.code, 130, r.err);
  assert.match(r.out, /interrupted at step \d+\/10000; checkpoint saved/);
  const at = ckptStep(dir);
  assert.ok(at >= 2 && at < 10000, `checkpoint step ${at}`);
});
