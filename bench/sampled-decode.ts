/**
 * Greedy vs sampled decoding of a trained model, plain and speculative, interleaved: what the
 * sampler costs per token next to the decode pass. Each round generates `tokens` new tokens per
 * setting (one warm-up round first); medians over rounds.
 * Run: `npx tsx bench/sampled-decode.ts MODEL_DIR [threads] [rounds] [tokens]`.
 */
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { Generation, type Model } from '../src/infer/generate.js';
import { withQ8Drafts } from '../src/infer/q8-node.js';
import { openModel } from '../src/serve/model-node.js';
import { stats } from './common.js';

const [dir, thArg = '2', rArg = '5', nArg = '300'] = process.argv.slice(2);
if (!dir) throw new Error('usage: npx tsx bench/sampled-decode.ts MODEL_DIR [threads] [rounds] [tokens]');
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const opened = await openModel(dir);
const model: Model = withQ8Drafts(opened.model).model;
const prompt = opened.tokenizer ? opened.tokenizer.encode('The Congress of the United States') : [1, 2, 3];
const vocabLimit = opened.tokenizer?.vocabSize ?? model.cfg.vocabSize;
const settings: Array<[string, object]> = [
  ['greedy', { greedy: true }], ['greedy, speculative', { greedy: true, speculative: true }],
  ['temperature 0.8', { temperature: 0.8 }], ['temperature 0.8, speculative', { temperature: 0.8, speculative: true }],
  ['temperature 0.8, top-p 0.95', { temperature: 0.8, topP: 0.95 }],
];
const rows = new Map<string, number[]>();
for (let r = 0; r <= Number(rArg); r++) {
  for (const [name, o] of settings) {
    const g = new Generation(model, prompt, { ...o, seed: r + 1, maxTokens: Number(nArg), vocabLimit, stopTokenIds: [] });
    while (!g.done) g.step();
    const res = g.result();
    if (r > 0) (rows.get(name) ?? rows.set(name, []).get(name)!).push((res.tokens.length / res.decodeMs) * 1000);
  }
}
for (const [name, v] of rows) { const s = stats(v); console.log(`${name.padEnd(32)} ${s.median.toFixed(0).padStart(7)} tok/s (${s.min.toFixed(0)}–${s.max.toFixed(0)})`); }
await disposeBackends();
