// `frugal train` never loses the run a user stops (issue #18, items 8–11): SIGTERM saves like
// SIGINT and the printed resume command finishes the planned steps; a resumed run keeps every
// option (defaults included) and `--extend` keeps the learning-rate schedule instead of
// re-warming it; temp folders of killed checkpoint writes are removed; a tokenizer/ left in --out
// by another run is not reused; the written config.json carries the tokenizer's BOS/EOS ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run } from '../src/cli/train.js';
import { trainBpe } from '../src/io/bpe.js';
import { loadTokenizer } from '../src/io/tokenizer-node.js';
import { readMetrics } from '../src/train/metrics-node.js';

const root = process.cwd();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-train-sig-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

const data = path.join(work, 'corpus.jsonl');
{
  const words = ['the people', 'our nation', 'must protect', 'will build', 'the union', 'our schools', 'the laws', 'shall defend'];
  let s = 11;
  const r = (): string => { s = (s * 1103515245 + 12345) % 2147483648; return words[s % words.length]!; };
  const lines: string[] = [];
  for (let d = 0; d < 30; d++) lines.push(JSON.stringify({ text: Array.from({ length: 60 }, r).join(' ') + '.' }));
  writeFileSync(data, lines.join('\n') + '\n');
}
const common = ['--config', 'tiny', '--data', data, '--batch', '2', '--seq', '16', '--lr', '0.01', '--backend', 'ts', '--log-every', '1', '--eval-every', '1000', '--quiet'];

/** `frugal train` in a child process (through tsx). */
function child(args: string[]): { proc: ReturnType<typeof spawn>; done: Promise<{ code: number | null; signal: string | null; out: string; err: string }> } {
  const script = `import { runCli } from ${JSON.stringify(path.join(root, 'src/cli/main.ts'))}; process.exitCode = await runCli(${JSON.stringify(['train', ...args])});`;
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stdout!.on('data', (b) => { out += String(b); });
  proc.stderr!.on('data', (b) => { err += String(b); });
  const done = new Promise<{ code: number | null; signal: string | null; out: string; err: string }>((res) => proc.on('close', (code, signal) => res({ code, signal, out, err })));
  return { proc, done };
}
const metricsRows = (dir: string): Array<Record<string, unknown>> => (existsSync(path.join(dir, 'metrics.jsonl')) ? readMetrics(path.join(dir, 'metrics.jsonl')) : []);
const ckptState = (dir: string): { step: number } => (JSON.parse(readFileSync(path.join(dir, 'checkpoint', 'trainer_state.json'), 'utf8')) as { state: { step: number } }).state;

test('SIGTERM saves a checkpoint and exits 143; the printed resume command finishes the planned steps', { timeout: 180_000 }, async () => {
  const out = path.join(work, 'sigterm');
  const c = child([...common, '--steps', '120', '--save-every', '0', '--out', out]);
  const t0 = Date.now();
  while (metricsRows(out).length < 3 && Date.now() - t0 < 90_000) await new Promise((r) => setTimeout(r, 20));
  c.proc.kill('SIGTERM');
  const r = await c.done;
  assert.equal(r.signal, null, `killed by the signal instead of saving: ${r.err}`);
  assert.equal(r.code, 143, r.err);
  assert.match(r.err, /SIGTERM — saving a checkpoint/);
  const at = ckptState(out).step;
  assert.ok(at >= 3 && at < 120, `checkpoint at step ${at}`);
  const cmd = /npx frugal train (--resume --out \S+)/.exec(r.out);
  assert.ok(cmd, `no resume command in: ${r.out}`);
  assert.equal(cmd[1], `--resume --out ${out}`);
  // Resume exactly as printed (plus test-only quiet/backend): the run ends at its planned 120, not the default 250.
  assert.equal(await run(['--resume', '--out', out, '--quiet', '--backend', 'auto']), 0);
  assert.equal(ckptState(out).step, 120);
  assert.equal(metricsRows(out).length, 120);
});

test('resume keeps every option; --extend keeps the lr schedule (no re-warmup); config carries the tokenizer EOS', { timeout: 120_000 }, async () => {
  const quick = common.map((x) => (x === 'ts' ? 'auto' : x));
  // Constant schedule, 10 steps: the default warmup is min(20, steps) = 10 and must stay 10 on resume.
  const flat = path.join(work, 'extend-constant');
  assert.equal(await run([...quick, '--steps', '10', '--schedule', 'constant', '--out', flat]), 0);
  await assert.rejects(run([...quick, '--steps', '14', '--resume', '--out', flat]), /--steps 14 differs from the run's 10.*add --extend/);
  await assert.rejects(run([...quick, '--steps', '14', '--extend', '--out', path.join(work, 'fresh')]), /--extend continues a checkpointed run/);
  assert.equal(await run([...quick, '--steps', '14', '--resume', '--extend', '--out', flat]), 0);
  const lrFlat = new Map(metricsRows(flat).map((m) => [m.step as number, m.lr as number]));
  assert.equal(lrFlat.size, 14);
  for (let s = 10; s <= 14; s++) assert.equal(lrFlat.get(s), 0.01, `step ${s}: the peak rate, not a new warmup`);
  // WSD decaying to its minimum by step 24: the extra steps stay at that minimum instead of jumping back up.
  const wsd = path.join(work, 'extend-wsd');
  assert.equal(await run([...quick, '--steps', '24', '--warmup', '2', '--out', wsd]), 0);
  assert.equal(await run([...quick, '--steps', '28', '--resume', '--extend', '--out', wsd]), 0);
  const lr = new Map(metricsRows(wsd).map((m) => [m.step as number, m.lr as number]));
  const final = lr.get(24)!;
  assert.ok(Math.abs(final - 0.001) < 1e-12, `the planned schedule ends at 0.1 × peak: ${final}`);
  for (let s = 25; s <= 28; s++) assert.equal(lr.get(s), final, `step ${s} runs at the schedule's final rate`);
  // Item 8: the model's config.json names the tokenizer's EOS (and no BOS: the trained BPE has none).
  const cfg = JSON.parse(readFileSync(path.join(wsd, 'final', 'config.json'), 'utf8')) as { eos_token_id: unknown; bos_token_id: unknown };
  const tok = await loadTokenizer(path.join(wsd, 'final'));
  assert.notEqual(tok.eosId, null);
  assert.equal(cfg.eos_token_id, tok.eosId);
  assert.equal(cfg.bos_token_id, tok.bosId);
});

test('temp folders of killed checkpoint writes are removed; a tokenizer/ left by another run is not reused', { timeout: 120_000 }, async () => {
  const out = path.join(work, 'leftovers');
  mkdirSync(path.join(out, 'tokenizer'), { recursive: true });
  // A dead process id: a child that has exited.
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  const stale = path.join(out, `.checkpoint.tmp-${dead}`);
  mkdirSync(stale);
  writeFileSync(path.join(stale, 'model.safetensors'), Buffer.alloc(4096));
  // A tokenizer from another corpus and vocabulary, as a failed run would leave it.
  const foreign = trainBpe(['completely different words: zebra quartz jungle vortex '.repeat(40)], { vocabSize: 300 });
  assert.notEqual((foreign as { model: { vocab: Record<string, number> } }).model.vocab['Ġzebra'], undefined);
  writeFileSync(path.join(out, 'tokenizer', 'tokenizer.json'), JSON.stringify(foreign));
  assert.equal(await run([...common, '--steps', '2', '--out', out]), 0);
  assert.ok(!existsSync(stale), 'stale temp folder removed');
  assert.deepEqual(readdirSync(out).filter((n) => n.includes('.tmp-')), []);
  assert.notEqual(readFileSync(path.join(out, 'tokenizer', 'tokenizer.json'), 'utf8'), JSON.stringify(foreign), 'the foreign tokenizer was replaced');
  const tok = await loadTokenizer(path.join(out, 'tokenizer'));
  assert.equal(tok.tokenToId('Ġzebra'), undefined, "the run's tokenizer was trained on its own data");
});
