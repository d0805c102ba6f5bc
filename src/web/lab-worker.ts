/**
 * The engine worker of the `frugal web` page (bundled to dist/browser/lab-worker.js): every tensor
 * op runs here, never on the page's main thread, because the webgpu and threaded wasm backends
 * block in Atomics.wait while their helper threads work.
 *
 * Contract (messages; the page's lab.ts is the only sender):
 * - in {type:'backend', choice: 'auto'|'webgpu'|'wasm'|'ts'} → out {type:'backend', name, describe}.
 *   `auto` is webgpu when the browser has an adapter, else wasm (threads = cores, at most 8).
 * - in {type:'train', docs, options, stop: SharedArrayBuffer} → out {type:'tokenizer'}, a
 *   {type:'step', step, loss} per step, {type:'sample', ...} per eval, then {type:'trained', losses}.
 *   The page sets stop[0] = 1 to end the run after the current step.
 * - in {type:'load', url} → out {type:'loaded', summary}; in {type:'logits', tokens} → out
 *   {type:'logits', backend, logits: number[][]} (one row per position, no-grad forward);
 *   in {type:'chat', prompt, maxTokens, temperature, seed} → out {type:'reply', text}.
 * - Any failure → out {type:'error', message} (the worker stays usable).
 */
import { useBackend, describeBackend } from '../backend/setup.js';
import { getBackend } from '../backend/registry.js';
import { Tensor } from '../autograd/tensor.js';
import { noGrad } from '../autograd/tape.js';
import { forward, type ModelParams } from '../model/deepseek.js';
import type { DeepSeekConfig } from '../model/config.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { generate } from '../infer/generate.js';
import { trainTiny, type TabTrainOptions } from './tab-train.js';
import { loadModelFromUrl } from './load-url.js';

interface Current { cfg: DeepSeekConfig; params: ModelParams; tokenizer: Tokenizer | null }
let current: Current | null = null;
const post = (m: unknown): void => (self as unknown as { postMessage(m: unknown): void }).postMessage(m);

async function chooseBackend(choice: string): Promise<void> {
  if (choice === 'auto') {
    try { await useBackend('webgpu'); return; } catch { /* no adapter: wasm */ }
    await useBackend('wasm');
    return;
  }
  if (!['webgpu', 'wasm', 'ts'].includes(choice)) throw new Error(`unknown backend '${choice}' (auto, webgpu, wasm or ts)`);
  await useBackend(choice as 'webgpu' | 'wasm' | 'ts');
}

async function handle(m: Record<string, unknown>): Promise<void> {
  switch (m.type) {
    case 'backend':
      await chooseBackend(String(m.choice ?? 'auto'));
      post({ type: 'backend', name: getBackend().name, describe: describeBackend() });
      return;
    case 'train': {
      const stop = new Int32Array(m.stop as SharedArrayBuffer);
      const r = await trainTiny(m.docs as string[], (m.options ?? {}) as Partial<TabTrainOptions>, {
        onTokenizer: (vocab, tokens) => post({ type: 'tokenizer', vocab, tokens }),
        onStep: (step, loss) => post({ type: 'step', step, loss }),
        onSample: (step, text, valLoss) => post({ type: 'sample', step, text, valLoss }),
        shouldStop: () => Atomics.load(stop, 0) !== 0,
      });
      current = { cfg: r.cfg, params: r.params, tokenizer: r.tokenizer };
      post({ type: 'trained', losses: r.losses });
      return;
    }
    case 'load': {
      const r = await loadModelFromUrl(String(m.url));
      current = { cfg: r.cfg, params: r.params, tokenizer: r.tokenizer };
      post({ type: 'loaded', summary: `${r.cfg.numHiddenLayers} layers, hidden ${r.cfg.hiddenSize}, vocab ${r.cfg.vocabSize}${r.tokenizer ? '' : ' (no tokenizer.json: token ids only)'}` });
      return;
    }
    case 'logits': {
      if (!current) throw new Error('no model: load or train one first');
      const { cfg, params } = current;
      const tokens = (m.tokens as number[]).map(Number);
      for (const t of tokens) if (!(Number.isInteger(t) && t >= 0 && t < cfg.vocabSize)) throw new Error(`token ${t} is not an id in 0..${cfg.vocabSize - 1}`);
      if (tokens.length === 0 || tokens.length > cfg.maxPositionEmbeddings) throw new Error(`give 1..${cfg.maxPositionEmbeddings} tokens, got ${tokens.length}`);
      const flat = noGrad(() => forward(params, cfg, Tensor.ints(tokens, [1, tokens.length]), { attn: 'absorb' }).logits.f32);
      const V = cfg.vocabSize;
      post({ type: 'logits', backend: getBackend().name, logits: tokens.map((_, i) => Array.from(flat.subarray(i * V, (i + 1) * V))) });
      return;
    }
    case 'chat': {
      if (!current?.tokenizer) throw new Error('no model with a tokenizer: train one, or load a folder that has tokenizer.json');
      const { cfg, params, tokenizer } = current;
      const prompt = tokenizer.encode(String(m.prompt ?? ''), { addSpecialTokens: false });
      if (prompt.length === 0) throw new Error('type something first');
      const max = Math.max(1, Math.min(256, Number(m.maxTokens ?? 48)));
      // The inference path: on webgpu (and native) each decode step is one decode-engine pass.
      const ids = generate({ cfg, params }, prompt.slice(-(cfg.maxPositionEmbeddings - max)), {
        maxTokens: max, temperature: Number(m.temperature ?? 0.8), topK: 40, seed: Number(m.seed ?? 1),
        stopTokenIds: cfg.eosTokenId != null ? [cfg.eosTokenId] : [], vocabLimit: Math.min(cfg.vocabSize, tokenizer.vocabSize),
      }).tokens;
      post({ type: 'reply', text: tokenizer.decode(ids, { skipSpecialTokens: true }) });
      return;
    }
    default:
      throw new Error(`unknown message ${String(m.type)}`);
  }
}

let queue = Promise.resolve();
self.onmessage = (e: MessageEvent) => {
  queue = queue.then(() => handle(e.data as Record<string, unknown>).catch((err: Error) => post({ type: 'error', message: err.message ?? String(err) })));
};
