// GGUF loading under hostile input: a valid small deepseek2 file (with a real BPE vocabulary), its Q8_0 twin and a q8_0 llama (dense) file is
// mutated for a fixed time budget (byte flips in the header and anywhere, truncations, huge
// counts/lengths/offsets, random type ids); every load either succeeds (and the model then runs)
// or fails with an Error whose message starts with "gguf" — never another exception, a crash, a
// hang or an allocation the file does not justify. Deterministic seeds: a failure names its case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GgufReader, serializeGguf } from '../src/io/gguf.js';
import { memorySource } from '../src/io/safetensors.js';
import { vocabFromTokenizerJson } from '../src/io/gguf-vocab.js';
import { trainBpe } from '../src/io/bpe.js';
import { makeConfig } from '../src/model/config.js';
import { forward, initParams } from '../src/model/deepseek.js';
import { deepseekGguf } from '../src/model/gguf.js';
import { denseGguf } from '../src/model/gguf-dense.js';
import { denseForward, initDenseParams } from '../src/model/dense.js';
import { generatedVocab } from '../src/io/gguf-vocab.js';
import { readGgufModel } from '../src/model/gguf-node.js';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import '../src/index.js'; // registers the ts backend

// FRUGAL_FUZZ_MS / FRUGAL_FUZZ_SEED run it longer or elsewhere (e.g. 60000 ms before a release).
const BUDGET_MS = Number(process.env.FRUGAL_FUZZ_MS ?? 2500);
const SEED = Number(process.env.FRUGAL_FUZZ_SEED ?? 12345);

function seedFile(type: 'f32' | 'q8_0'): Uint8Array {
  const cfg = makeConfig({
    vocabSize: 320, hiddenSize: 32, intermediateSize: 64, moeIntermediateSize: 32, numHiddenLayers: 2, firstKDenseReplace: 1,
    numAttentionHeads: 2, nRoutedExperts: 4, nSharedExperts: 1, numExpertsPerTok: 2, nGroup: 2, topkGroup: 1, qLoraRank: 32,
    kvLoraRank: 32, qkNopeHeadDim: 32, qkRopeHeadDim: 8, vHeadDim: 32, maxPositionEmbeddings: 64, torchDtype: 'float32',
  });
  const json = trainBpe(['the people and the nation, 1234 times; the people!'], { vocabSize: 300 }) as unknown as Record<string, unknown>;
  const vocab = vocabFromTokenizerJson(json, {}, 320, { bos: null, eos: 0 });
  const plan = deepseekGguf(cfg, initParams(cfg, { seed: 3 }), { type, vocab });
  return serializeGguf(plan.kvs, plan.tensors);
}

function denseSeed(): Uint8Array {
  const cfg = { vocabSize: 40, hiddenSize: 32, numHiddenLayers: 2, numAttentionHeads: 2, intermediateSize: 64, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 32 };
  const plan = denseGguf(cfg, initDenseParams(cfg, { seed: 4 }), { type: 'q8_0', vocab: generatedVocab(40, 0, 1) });
  return serializeGguf(plan.kvs, plan.tensors);
}

/** One load: 'ok' or 'rejected'; throws (failing the test) on anything else. */
async function load(bytes: Uint8Array, label: string): Promise<'ok' | 'rejected'> {
  try {
    const g = await readGgufModel(await GgufReader.open(memorySource(bytes)), label);
    if (g.kind === 'deepseek') noGrad(() => forward(g.params, g.cfg, Tensor.ints([1, 2, 3], [1, 3])));
    else noGrad(() => denseForward(g.params, g.cfg, Tensor.ints([1, 2, 3], [1, 3])));
    return 'ok';
  } catch (e) {
    if (!(e instanceof Error) || !/^gguf/.test(e.message)) {
      assert.fail(`${label}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} (expected an Error starting "gguf")`);
    }
    return 'rejected';
  }
}

test(`mutated GGUF files load or fail with a clear gguf error (${BUDGET_MS} ms budget)`, async () => {
  const seeds = [seedFile('f32'), seedFile('q8_0'), denseSeed()];
  for (const s of seeds) assert.equal(await load(s, 'seed'), 'ok');
  const headerEnds = await Promise.all(seeds.map(async (s) => (await GgufReader.open(memorySource(s))).header.dataStart));
  let state = SEED;
  const rnd = (n: number): number => { state = (Math.imul(state, 1103515245) + 12345) >>> 0; return state % n; };
  const big = [0xffffffffffffffffn, 1n << 63n, 1n << 53n, 1n << 40n, 1n << 31n, 0xffffffffn, 65536n, 0n, 1n];
  const counts = { ok: 0, rejected: 0 };
  const t0 = performance.now();
  let i = 0;
  for (; performance.now() - t0 < BUDGET_MS; i++) {
    const src = seeds[i % seeds.length]!, headerEnd = headerEnds[i % seeds.length]!;
    let b = src.slice();
    const kind = rnd(5);
    if (kind === 0) for (let k = 1 + rnd(8); k > 0; k--) b[rnd(headerEnd)] = rnd(256);
    else if (kind === 1) for (let k = 1 + rnd(8); k > 0; k--) b[rnd(b.length)] = rnd(256);
    else if (kind === 2) b = b.subarray(0, rnd(b.length));
    else if (kind === 3) new DataView(b.buffer).setBigUint64(rnd(headerEnd - 8), big[rnd(big.length)]!, true);
    else new DataView(b.buffer).setUint32(rnd(headerEnd - 4) & ~3, rnd(40), true);
    counts[await load(b, `case ${i} (mutation ${kind})`)]++;
  }
  console.log(`# gguf fuzz (seed ${SEED}): ${i} mutated files in ${BUDGET_MS} ms: ${counts.ok} loaded, ${counts.rejected} rejected with gguf errors`);
  assert.ok(counts.rejected > 50 && counts.ok > 5, `the mutations explored both outcomes (${JSON.stringify(counts)})`);
});
