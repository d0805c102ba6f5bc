/**
 * Fuzz runner for one loader, run as a child process by test/loaders-fuzz.test.ts (so a hang is a
 * killed child and a failed test, never a stuck suite). `node --import tsx test/fuzz/run-fuzz.ts
 * TARGET [iterations] [maxMs] [seed]` mutates valid files made here and feeds each to the loader;
 * every input must end in a load that checks out or an error of the loader's own kind (message
 * prefix), never another exception. Prints one JSON line: counts, error classes, failures (with
 * the iteration to replay), the slowest input and the peak RSS. The input being tried is written
 * to `<work>/current` first, so a hang leaves it behind.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import '../../src/backend/index.js';
import { makeConfig, toHFConfig } from '../../src/model/config.js';
import { initParams } from '../../src/model/deepseek.js';
import { loadModel, saveModel } from '../../src/model/load-node.js';
import { SafetensorsModel, writeSafetensors } from '../../src/io/safetensors-node.js';
import { serialize } from '../../src/io/safetensors.js';
import { encodeBf16 } from '../../src/fp8/codec.js';
import { trainBpe } from '../../src/io/bpe.js';
import { loadTokenizer } from '../../src/io/tokenizer-node.js';
import { DiskCache } from '../../src/infer/disk-cache-node.js';
import { readTokenizerConfig } from '../../src/serve/model-node.js';
import { mutateBytes, mutateJson, rng } from './mutate.js';

const [target = '', itersArg = '2000', maxMsArg = '6000', seedArg = '1'] = process.argv.slice(2);
const iterations = Number(itersArg), maxMs = Number(maxMsArg), seed = Number(seedArg);
const work = mkdtempSync(path.join(tmpdir(), `frugal-fuzz-${target}-`));
const r = rng(seed);
const enc = new TextEncoder();

/** Writes a fresh file (truncating one in place costs milliseconds on some filesystems). */
function put(file: string, data: Uint8Array | string): void {
  try { unlinkSync(file); } catch { /* not there yet */ }
  writeFileSync(file, data);
}

/** One attempt: 'loaded' after checking the result, or throws. */
type Attempt = (input: Uint8Array) => Promise<'loaded'>;
interface Target { seedInput: Uint8Array; mutate: (b: Uint8Array) => Uint8Array; attempt: Attempt; clear: RegExp }

/** Structure-level mutation of a JSON file (70%) or byte-level (30%). */
const jsonMutator = (json: unknown) => (b: Uint8Array): Uint8Array => (r() < 0.7 ? enc.encode(JSON.stringify(mutateJson(json, r))) : mutateBytes(b, r));

async function safetensorsTarget(): Promise<Target> {
  const dir = path.join(work, 'st');
  mkdirSync(dir);
  const w = new Float32Array(6 * 4).map((_, i) => i / 7 - 1);
  const tensors = [
    { name: 'a.weight', dtype: 'F32' as const, shape: [6, 4], data: w },
    { name: 'b.weight', dtype: 'BF16' as const, shape: [3, 5], data: encodeBf16(new Float32Array(15).map((_, i) => i - 3)) },
    { name: 'c.weight', dtype: 'F8_E4M3' as const, shape: [4, 4], data: new Uint8Array(16).map((_, i) => i * 9) },
    { name: 'c.weight_scale_inv', dtype: 'F32' as const, shape: [1, 1], data: new Float32Array([0.5]) },
    { name: 'd.ids', dtype: 'I32' as const, shape: [3], data: new Int32Array([1, -2, 3]) },
  ];
  const chunks = serialize(tensors, { format: 'pt' });
  const file = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) { file.set(c, off); off += c.length; }
  const headerLen = Number(new DataView(file.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLen))) as unknown;
  const data = file.subarray(8 + headerLen);
  return {
    seedInput: file,
    mutate: (b) => {
      if (r() < 0.5) return mutateBytes(b, r);
      // A mutated header, re-framed with its new length (or, sometimes, the old one).
      const h = enc.encode(JSON.stringify(mutateJson(header, r)));
      const out = new Uint8Array(8 + h.length + data.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(r() < 0.8 ? h.length : headerLen), true);
      out.set(h, 8);
      out.set(data, 8 + h.length);
      return out;
    },
    attempt: async (input) => {
      put(path.join(dir, 'model.safetensors'), input);
      const m = await SafetensorsModel.open(dir);
      try {
        for (const n of m.names()) {
          const info = m.info(n);
          const x = await m.float32(n);
          const want = info.shape.reduce((a, b) => a * b, 1);
          if (x.length !== want) throw new Error(`CHECK: ${n} gave ${x.length} values for shape [${info.shape}]`);
        }
      } finally {
        m.close();
      }
      return 'loaded';
    },
    clear: /^safetensors: /,
  };
}

async function configTarget(): Promise<Target> {
  const dir = path.join(work, 'model');
  const cfg = makeConfig({ vocabSize: 40, hiddenSize: 8, intermediateSize: 12, moeIntermediateSize: 4, numHiddenLayers: 2, firstKDenseReplace: 1,
    numAttentionHeads: 2, nRoutedExperts: 4, nSharedExperts: 1, numExpertsPerTok: 2, nGroup: 2, topkGroup: 1, qLoraRank: 4, kvLoraRank: 4,
    qkNopeHeadDim: 4, qkRopeHeadDim: 2, vHeadDim: 4, maxPositionEmbeddings: 32, numNextnPredictLayers: 1, torchDtype: 'float32' });
  await saveModel(dir, cfg, initParams(cfg, { seed: 1 }));
  const json = toHFConfig(cfg);
  return {
    seedInput: enc.encode(JSON.stringify(json)),
    mutate: jsonMutator(json),
    attempt: async (input) => {
      put(path.join(dir, 'config.json'), input);
      const m = await loadModel(dir, { maxBytes: 256 * 2 ** 20 });
      if (m.params.layers.length !== m.cfg.numHiddenLayers) throw new Error('CHECK: layer count');
      return 'loaded';
    },
    clear: /^(model|config|safetensors): /,
  };
}

function tokenizerJson(): Record<string, unknown> {
  return trainBpe(['The quick brown fox jumps over the lazy dog. 0123456789 ünïcødé €.\n'.repeat(10)], { vocabSize: 290 }) as Record<string, unknown>;
}

/** After a load, the tokenizer must round-trip text (what a server does with it). */
async function useTokenizer(dir: string): Promise<'loaded'> {
  const t = await loadTokenizer(dir);
  const ids = t.encode('The quick brown fox, 42 €', { addSpecialTokens: false });
  if (!ids.every((id) => Number.isInteger(id) && id >= 0 && id < t.vocabSize)) throw new Error(`CHECK: ids out of range ${ids}`);
  t.decode(ids.filter((id) => t.idToToken(id) !== undefined));
  return 'loaded';
}

async function tokenizerTarget(): Promise<Target> {
  const dir = path.join(work, 'tok');
  mkdirSync(dir);
  const json = tokenizerJson();
  return {
    seedInput: enc.encode(JSON.stringify(json)),
    mutate: jsonMutator(json),
    attempt: async (input) => { put(path.join(dir, 'tokenizer.json'), input); return useTokenizer(dir); },
    clear: /^tokenizer(\.json)?: /,
  };
}

async function tokenizerConfigTarget(): Promise<Target> {
  const dir = path.join(work, 'tokcfg');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson()));
  const json = { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: { content: '<s>' }, eos_token: '<|endoftext|>', add_bos_token: false, add_eos_token: true,
    clean_up_tokenization_spaces: false, chat_template: [{ name: 'default', template: "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}" }] };
  return {
    seedInput: enc.encode(JSON.stringify(json)),
    mutate: jsonMutator(json),
    attempt: async (input) => {
      put(path.join(dir, 'tokenizer_config.json'), input);
      const tc = readTokenizerConfig(dir);
      // Parsing is bounded by the template's length; rendering runs under a budget in the server.
      if (tc.chatTemplate !== null) try { new Template(tc.chatTemplate); } catch { /* the server reports it per request */ }
      return useTokenizer(dir);
    },
    clear: /^tokenizer(\.json)?: |tokenizer_config\.json (is not|must)/,
  };
}

async function diskCacheTarget(): Promise<Target> {
  const dir = path.join(work, 'kv');
  const W = 6, U = 4;
  const tokens = Array.from({ length: 13 }, (_, i) => (i * 5) % 11);
  const rowsOf = (a: number, b: number): Float32Array => new Float32Array((b - a) * W).map((_, i) => a * 10 + i / 3);
  const logs: string[] = [];
  new DiskCache({ dir, modelId: 'fuzz', rowWidth: W, unit: U, log: () => undefined }).save(tokens, rowsOf);
  const files = readdirSync(dir).sort();
  const originals = files.map((f) => readFileSync(path.join(dir, f)));
  let which = 0;
  return {
    seedInput: originals[0]!,
    mutate: (b) => mutateBytes(b, r),
    attempt: async (input) => {
      put(path.join(dir, files[which]!), originals[which]!);
      which = (which + 1) % files.length;
      put(path.join(dir, files[which]!), input);
      const cache = new DiskCache({ dir, modelId: 'fuzz', rowWidth: W, unit: U, log: (m) => logs.push(m) });
      const got = cache.lookup(tokens, tokens.length, 0);
      const units = (got?.length ?? 0) / U;
      const want = new Float32Array(units * U * W);
      for (let u = 0; u < units; u++) want.set(rowsOf(u * U, (u + 1) * U), u * U * W); // as save() wrote them, unit by unit
      if (got && (got.rows.length !== want.length || got.rows.some((v, i) => v !== want[i]))) throw new Error('CHECK: the cache returned rows that were never saved');
      if (logs.length > 1000) logs.length = 0;
      return 'loaded';
    },
    clear: /^$/, // the cache never throws: a bad file is a logged miss
  };
}

const targets: Record<string, () => Promise<Target>> = {
  safetensors: safetensorsTarget, config: configTarget, tokenizer: tokenizerTarget, 'tokenizer-config': tokenizerConfigTarget, 'disk-cache': diskCacheTarget,
};

async function main(): Promise<void> {
  const make = targets[target];
  if (!make) throw new Error(`unknown target '${target}' (${Object.keys(targets).join(', ')})`);
  const t = await make();
  const stats = { target, seed, tried: 0, loaded: 0, errors: {} as Record<string, number>, failures: [] as string[], slowestMs: 0, peakRssMb: 0, ms: 0 };
  const t0 = performance.now();
  // The unmutated input must load: the harness itself is sound.
  await t.attempt(t.seedInput);
  let input = t.seedInput;
  for (let i = 0; i < iterations && performance.now() - t0 < maxMs; i++) {
    // Mostly fresh mutations of the valid input, sometimes a mutation of the last one (deeper).
    input = t.mutate(r() < 0.8 ? t.seedInput : input);
    put(path.join(work, 'current'), input);
    const a = performance.now();
    try {
      await t.attempt(input);
      stats.loaded++;
    } catch (e) {
      const msg = e instanceof Error ? e.message : `non-Error thrown: ${String(e)}`;
      if (e instanceof Error && t.clear.test(msg) && !msg.startsWith('CHECK')) {
        const cls = msg.replace(/\/tmp\/\S+/g, '<path>').replace(/"(?:[^"\\]|\\.)*"/g, 'S').replace(/\[.*\]|\{.*\}/g, 'V').replace(/[\d.e+-]{2,}|\d/g, 'N').slice(0, 60);
        stats.errors[cls] = (stats.errors[cls] ?? 0) + 1;
      } else if (stats.failures.length < 10) {
        stats.failures.push(`iteration ${i}: ${(e as Error)?.constructor?.name}: ${msg.slice(0, 300)}`);
      }
    }
    stats.tried++;
    stats.slowestMs = Math.max(stats.slowestMs, performance.now() - a);
    if (i % 32 === 0) stats.peakRssMb = Math.max(stats.peakRssMb, process.memoryUsage.rss() / 2 ** 20);
  }
  stats.ms = Math.round(performance.now() - t0);
  stats.slowestMs = Math.round(stats.slowestMs);
  stats.peakRssMb = Math.round(Math.max(stats.peakRssMb, process.memoryUsage.rss() / 2 ** 20));
  process.stdout.write(JSON.stringify(stats) + '\n');
}

main().finally(() => rmSync(work, { recursive: true, force: true })).catch((e: unknown) => {
  process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
  process.exitCode = 1;
});
