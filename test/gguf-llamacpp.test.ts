// GGUF out and in, with llama.cpp (node-llama-cpp's prebuilt binary) as the judge: the f32 GGUF of
// every reference model, run in llama.cpp, gives the official-code logits within 1e-4 and the
// reference greedy tokens; Frugal reading the GGUF back gives the folder's logits within 1e-5; a
// model trained by `frugal train` (with its tokenizer) and the dense model do the same; bf16 and
// q8_0 files agree between Frugal and llama.cpp within the tolerances measured (docs/gguf.md).
// Skips, printing why, only where the llama.cpp binary cannot load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { forward, greedyGenerate, KVCache } from '../src/model/deepseek.js';
import { loadModel } from '../src/model/load-node.js';
import { exportGguf, loadGguf } from '../src/model/gguf-node.js';
import { denseConfigs, denseForward, denseHFConfig, denseParamEntries, initDenseParams, DenseKVCache, type DenseConfig } from '../src/model/dense.js';
import { writeSafetensors } from '../src/io/safetensors-node.js';
import { q8Linear } from '../src/infer/q8-node.js';
import { bf16Linear } from '../src/infer/bf16-node.js';
import { useBackend, disposeBackends } from '../src/backend/setup-node.js';
import { run as trainCli } from '../src/cli/train.js';
import { LlamaCppRun, loadLlamaCpp, maxAbsDiff } from './llamacpp.test-helper.js';
import type { Llama } from 'node-llama-cpp';

const REF = path.resolve(import.meta.dirname, '../../shared/reference');
const work = mkdtempSync(path.join(tmpdir(), 'frugal-gguf-'));
let llama: Llama | null = null;
let why = '';

before(async () => {
  await useBackend('auto');
  const r = await loadLlamaCpp();
  llama = r.llama;
  if (!llama) { why = r.why ?? ''; console.log(`# llama.cpp tests skipped: ${why}`); }
});
after(async () => { await llama?.dispose(); await disposeBackends(); rmSync(work, { recursive: true, force: true }); });

interface Seq { tokens: number[]; logits_full_absorb: { shape: number[]; data: number[] } }
interface Vectors { sequences: Seq[]; greedy: { prompt: number[]; new_tokens: number[] } }
const rows = (flat: ArrayLike<number>, V: number): Float32Array[] => Array.from({ length: flat.length / V }, (_, i) => Float32Array.from(Array.prototype.slice.call(flat, i * V, (i + 1) * V) as number[]));

/** Frugal's logits of a DeepSeek folder or GGUF model (one prefill). */
function frugalLogits(m: { cfg: Parameters<typeof forward>[1]; params: Parameters<typeof forward>[0] }, ids: number[]): Float32Array[] {
  return rows(noGrad(() => forward(m.params, m.cfg, Tensor.ints(ids, [1, ids.length])).logits.f32), m.cfg.vocabSize);
}

/** Frugal's logits with one token per step through the cache, each step's linears `linear`. */
function frugalSteps(m: { cfg: Parameters<typeof forward>[1]; params: Parameters<typeof forward>[0] }, ids: number[], linear: (x: Tensor, w: Tensor) => Tensor): Float32Array[] {
  const cache = new KVCache(m.cfg, 1, ids.length, 'absorb');
  return noGrad(() => ids.map((t, i) => forward(m.params, m.cfg, Tensor.ints([t], [1, 1]), { cache, startPos: i, linear }).logits.f32.slice()));
}

for (const name of ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8']) {
  test(`${name}: the f32 GGUF in llama.cpp matches the official logits (1e-4) and greedy tokens; read back by Frugal, the folder's logits (1e-5)`, async (t) => {
    const dir = path.join(REF, name), file = path.join(work, `${name}.gguf`);
    await exportGguf(dir, file, 'f32');
    const vec = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8')) as Vectors;
    const folder = await loadModel(dir), back = await loadGguf(file);
    assert.equal(back.kind, 'deepseek');
    assert.deepEqual(back.unused, []);
    for (const s of vec.sequences) {
      const d = maxAbsDiff(frugalLogits(back as unknown as typeof folder, s.tokens), frugalLogits(folder, s.tokens));
      assert.ok(d <= 1e-5, `Frugal GGUF vs folder, len ${s.tokens.length}: ${d}`);
    }
    if (!llama) return t.skip(why);
    const run = await LlamaCppRun.open(llama, file);
    try {
      let worst = 0;
      for (const s of vec.sequences) worst = Math.max(worst, maxAbsDiff(await run.logits(s.tokens), rows(s.logits_full_absorb.data, s.logits_full_absorb.shape[1]!)));
      t.diagnostic(`llama.cpp vs official logits: max |Δ| ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `llama.cpp vs official: ${worst}`);
      assert.deepEqual(await run.greedy(vec.greedy.prompt, vec.greedy.new_tokens.length), vec.greedy.new_tokens);
    } finally { await run.dispose(); }
  });
}

/** Writes Frugal's dense model (as the benchmarks save it) into dir. */
async function saveDense(dir: string, cfg: DenseConfig, seed: number): Promise<ReturnType<typeof initDenseParams>> {
  mkdirSync(dir, { recursive: true });
  const p = initDenseParams(cfg, { seed });
  await writeSafetensors(path.join(dir, 'model.safetensors'), denseParamEntries(p).map(([n, x]) => ({ name: n, dtype: 'F32' as const, shape: x.shape.slice(), data: x.f32 })));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(denseHFConfig(cfg)));
  return p;
}

test('dense model: the llama-architecture f32 GGUF matches Frugal in llama.cpp (1e-4) and read back (1e-5)', async (t) => {
  const cfg = denseConfigs['dense-tiny']!, dir = path.join(work, 'dense'), file = path.join(work, 'dense.gguf');
  const p = await saveDense(dir, cfg, 3);
  await exportGguf(dir, file, 'f32');
  const ids = [1, 5, 9, 13, 2, 40, 7, 7, 33, 21];
  const want = rows(noGrad(() => denseForward(p, cfg, Tensor.ints(ids, [1, ids.length])).f32), cfg.vocabSize);
  const back = await loadGguf(file);
  assert.equal(back.kind, 'dense');
  if (back.kind !== 'dense') return;
  assert.ok(maxAbsDiff(rows(noGrad(() => denseForward(back.params, back.cfg, Tensor.ints(ids, [1, ids.length])).f32), cfg.vocabSize), want) <= 1e-5);
  if (!llama) return t.skip(why);
  const run = await LlamaCppRun.open(llama, file, 64);
  try {
    const d = maxAbsDiff(await run.logits(ids), want);
    t.diagnostic(`llama.cpp vs Frugal (dense): max |Δ| ${d.toExponential(2)}`);
    assert.ok(d <= 1e-4, `llama.cpp vs Frugal dense: ${d}`);
  } finally { await run.dispose(); }
});

/** Runs `frugal train` on a tiny model briefly; returns the final folder (with tokenizer.json). */
async function trainedModel(): Promise<string> {
  const lines = Array.from({ length: 30 }, (_, d) => JSON.stringify({ text: `the people ${d} must protect the union. our nation will build schools, ${d * 7} times over!` }));
  const data = path.join(work, 'corpus.jsonl');
  writeFileSync(data, lines.join('\n') + '\n');
  const out = path.join(work, 'run');
  const code = await trainCli(['--config', 'tiny', '--data', data, '--steps', '6', '--batch', '2', '--seq', '32', '--warmup', '2', '--eval-every', '100', '--save-every', '0', '--quiet', '--out', out]);
  assert.equal(code, 0);
  return path.join(out, 'final');
}

let trained = '';
test('a model trained by frugal train: GGUF with its tokenizer; llama.cpp logits (1e-4), greedy tokens and text tokenization match Frugal', async (t) => {
  trained = await trainedModel();
  const file = path.join(work, 'trained.gguf');
  await exportGguf(trained, file, 'f32');
  const folder = await loadModel(trained), back = await loadGguf(file);
  assert.ok(back.tokenizer, back.tokenizerNote ?? '');
  const text = 'the people must protect the union. our nation, 1234 times!';
  const { loadTokenizer } = await import('../src/io/tokenizer-node.js');
  const tok = await loadTokenizer(trained);
  const ids = tok.encode(text, { addSpecialTokens: false });
  assert.deepEqual(back.tokenizer!.encode(text, { addSpecialTokens: false }), ids);
  assert.ok(maxAbsDiff(frugalLogits(back as unknown as typeof folder, ids), frugalLogits(folder, ids)) <= 1e-5);
  if (!llama) return t.skip(why);
  const run = await LlamaCppRun.open(llama, file);
  try {
    assert.deepEqual(run.tokenize(text), ids, 'llama.cpp tokenizes the text as Frugal does');
    assert.equal(run.detokenize(ids), text);
    const d = maxAbsDiff(await run.logits(ids), frugalLogits(folder, ids));
    t.diagnostic(`llama.cpp vs Frugal (trained): max |Δ| ${d.toExponential(2)}`);
    assert.ok(d <= 1e-4, `llama.cpp vs Frugal: ${d}`);
    const prompt = ids.slice(0, 6);
    assert.deepEqual(await run.greedy(prompt, 12), greedyGenerate(folder.params, folder.cfg, prompt, 12));
  } finally { await run.dispose(); }
});

/**
 * bf16 / q8_0 files: Frugal reading the file (prefill on the dequantised weights; decode steps
 * with the bf16 / Q8_0 kernels) against llama.cpp running it. Rounding random weights moves logits
 * by whole units against f32, so the comparison is file vs file. Both sides round activations at
 * 8 (q8_0) or 16 (bf16) bits, so a 1e-7 difference upstream can flip a rounding and, through a
 * routing near-tie, an expert: per-position differences are printed, and bounded where measured
 * (docs/gguf.md).
 */
const argmaxOf = (r: ArrayLike<number>): number => { let b = 0; for (let j = 1; j < r.length; j++) if (r[j]! > r[b]!) b = j; return b; };
for (const type of ['bf16', 'q8_0'] as const) {
  test(`${type} GGUF: Frugal reading the file vs llama.cpp running it (measured; argmax agreement)`, async (t) => {
    if (!llama) return t.skip(why);
    await useBackend('auto'); // `frugal train` above disposed the backends
    for (const dir of [path.join(REF, 'tiny-dsv3'), trained]) {
      if (!dir) continue;
      const file = path.join(work, `${path.basename(path.dirname(dir))}-${path.basename(dir)}-${type}.gguf`);
      await exportGguf(dir, file, type);
      const g = await loadGguf(file);
      if (g.kind !== 'deepseek') throw new Error('expected deepseek2');
      const ids = [3, 17, 42, 99, 7, 250, 11, 64, 8, 300, 5, 6, 77, 120, 1, 2];
      const run = await LlamaCppRun.open(llama, file);
      try {
        const ref = await run.logits(ids);
        const pre = frugalLogits(g, ids);
        const lin = type === 'q8_0' ? q8Linear({ blocks: g.q8 }).linear : bf16Linear().linear;
        const steps = lin ? frugalSteps(g, ids, lin) : null;
        const per = (a: Float32Array[]): string => a.map((r, i) => maxAbsDiff([r], [ref[i]!]).toFixed(3)).join(' ');
        const agree = (a: Float32Array[]): number => a.filter((r, i) => argmaxOf(r) === argmaxOf(ref[i]!)).length;
        t.diagnostic(`${path.basename(dir)} ${type} per-position max |Δ| vs llama.cpp — prefill: ${per(pre)}${steps ? ` — decode steps: ${per(steps)}` : ''}`);
        t.diagnostic(`${path.basename(dir)} ${type} argmax agreement: prefill ${agree(pre)}/16${steps ? `, steps ${agree(steps)}/16` : ''}`);
        assert.ok(agree(pre) >= 14, `prefill argmax agreement ${agree(pre)}/16`);
        if (steps) assert.ok(agree(steps) >= 13, `steps argmax agreement ${agree(steps)}/16`);
      } finally { await run.dispose(); }
    }
  });
}

test('Q8_0 decode kernel = llama.cpp\'s Q8_0 arithmetic: a one-layer q8_0 model, decode steps within 1e-5 of llama.cpp', async (t) => {
  if (!llama) return t.skip(why);
  const cfg: DenseConfig = { vocabSize: 96, hiddenSize: 64, numHiddenLayers: 1, numAttentionHeads: 2, intermediateSize: 128, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 64 };
  const dir = path.join(work, 'dense-q8'), file = path.join(work, 'dense-q8.gguf');
  await saveDense(dir, cfg, 5);
  await exportGguf(dir, file, 'q8_0');
  const g = await loadGguf(file);
  if (g.kind !== 'dense') throw new Error('expected llama');
  const ids = [1, 5, 9, 13, 2, 40, 7, 7, 33, 21];
  const lin = q8Linear({ blocks: g.q8 }).linear;
  const cache = new DenseKVCache(g.cfg, ids.length);
  const steps = noGrad(() => ids.map((tk, i) => denseForward(g.params, g.cfg, Tensor.ints([tk], [1, 1]), { cache, startPos: i, linear: lin }).f32.slice()));
  const f32act = rows(noGrad(() => denseForward(g.params, g.cfg, Tensor.ints(ids, [1, ids.length])).f32), cfg.vocabSize);
  const run = await LlamaCppRun.open(llama, file, 64);
  try {
    const ref = await run.logits(ids);
    const d = maxAbsDiff(steps, ref), dF = maxAbsDiff(f32act, ref);
    t.diagnostic(`one-layer q8_0: Frugal gemvQ8 steps vs llama.cpp ${d.toExponential(2)}; f32 activations vs llama.cpp ${dF.toExponential(2)}`);
    assert.ok(d <= 1e-5, `q8 steps vs llama.cpp: ${d}`);
    assert.ok(dF > 100 * d, 'the test can tell activation quantisation apart');
  } finally { await run.dispose(); }
});
