/**
 * How often the MTP draft equals the main model's next token on held-out text (teacher forcing:
 * every position of the corpus's last documents, not greedy output, which for a small model loops
 * and is drafted perfectly), per draft attention window: what a cheaper draft costs in acceptance.
 * At position t the MTP layer reads (h_t, token t+1) and its argmax is compared with the main
 * model's argmax at t+1 (its prediction of token t+2); positions with at least `min` of context.
 * Run: `npx tsx bench/draft-agreement.ts MODEL_DIR [windows=0,64,128] [min=256] [docs=3]`
 * (native backend; corpus: the bundled one, or --data as `frugal train` takes it).
 */
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { RowDecoder, f32RowsLinear } from '../src/model/decode.js';
import { KVCache } from '../src/model/deepseek.js';
import { openModel } from '../src/serve/model-node.js';
import { loadCorpus } from '../src/train/data-node.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const dataArg = process.argv.find((a) => a.startsWith('--data='))?.slice(7);
const [dir, wArg = '0,64,128', minArg = '256', docsArg = '3'] = args;
if (!dir) throw new Error('usage: npx tsx bench/draft-agreement.ts MODEL_DIR [windows=0,64,128] [min=256] [docs=3] [--data=SPEC]');
await useBackend('native', { threads: 1 });
console.log(describeBackend());
const opened = await openModel(dir);
if (!opened.tokenizer) throw new Error(`${dir}: no tokenizer.json`);
const { model } = opened, cfg = model.cfg, H = cfg.hiddenSize, V = cfg.vocabSize;
if (model.params.mtp.length === 0) throw new Error(`${dir}: no MTP layer`);
const dec = new RowDecoder(model.params, cfg, { linear: f32RowsLinear });
const corpus = await loadCorpus(dataArg);
const docs = corpus.documents.slice(-Number(docsArg));
const minCtx = Number(minArg), maxLen = cfg.maxPositionEmbeddings - 2;
const argmax = (a: Float32Array, off: number): number => { let b = 0; for (let j = 1; j < V; j++) if (a[off + j]! > a[off + b]!) b = j; return b; };
for (const window of wArg.split(',').map(Number)) {
  let agree = 0, total = 0;
  for (const doc of docs) {
    const ids = opened.tokenizer.encode(doc).slice(0, maxLen), N = ids.length;
    if (N < minCtx + 3) continue;
    const cache = new KVCache(cfg, 1, N + 2, 'absorb', 1);
    const hid = new Float32Array(N * H), next = new Int32Array(N);
    for (let s = 0; s < N; s += 64) {
      const e = Math.min(N, s + 64), r = dec.main(ids.slice(s, e), [{ cache, start: s, rows: e - s }]);
      hid.set(r.hidden.subarray(0, (e - s) * H), s * H);
      for (let i = 0; i < e - s; i++) next[s + i] = argmax(r.logits, i * V);
    }
    for (let t = 0; t + 2 < N; t++) {
      const r = dec.mtp(0, hid.subarray(t * H, (t + 1) * H), [ids[t + 1]!], [{ cache, start: t, rows: 1 }], 0, window);
      if (t >= minCtx) { total++; if (argmax(r.logits, 0) === next[t + 1]) agree++; }
    }
  }
  console.log(`draft window ${window || 'all'}: the MTP draft equals the main model's next token at ${(100 * agree / Math.max(1, total)).toFixed(1)}% of ${total} positions (context ≥ ${minCtx})`);
}
await disposeBackends();
