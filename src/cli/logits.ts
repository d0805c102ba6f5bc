/**
 * `frugal logits --model DIR|FILE.gguf --tokens 3,17,42 [--attn absorb|naive] [--incremental]
 * [--weights f32|bf16|q8_0] [--json]`: the logits of every position. `--incremental` feeds the
 * tokens one at a time through the KV cache; `--weights` other than f32 runs those single-token
 * steps with bf16 or Q8_0 weights (implies --incremental). A GGUF file of the `llama`
 * architecture runs Frugal's dense model. `--json` prints exactly `{"logits": number[][]}` (rows =
 * positions) and nothing else; otherwise a short table (per position: argmax id, its logit, and
 * the first values).
 */
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { Tensor } from '../autograd/tensor.js';
import { noGrad } from '../autograd/tape.js';
import { allLogits, checkTokens } from '../infer/generate.js';
import { argmax } from '../infer/sampling.js';
import { bf16Linear } from '../infer/bf16-node.js';
import { q8Linear } from '../infer/q8-node.js';
import { forward, KVCache } from '../model/deepseek.js';
import { denseForward, DenseKVCache } from '../model/dense.js';
import { isGgufPath, loadGguf, type GgufModel } from '../model/gguf-node.js';
import { checkModelDir, openModel, parseTokenList, selectBackend, type OpenedModel } from '../serve/model-node.js';

export const summary = 'print the logits of every position for given token ids';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json + *.safetensors), a frugal train run folder, or a .gguf file' },
  tokens: { type: 'string', help: 'comma-separated token ids, e.g. 3,17,42' },
  attn: { type: 'string', help: 'attention form: absorb or naive', default: 'absorb' },
  incremental: { type: 'boolean', help: 'feed tokens one at a time through the KV cache' },
  weights: { type: 'string', help: 'single-token step weights: f32, bf16 or q8_0 (non-f32 implies --incremental)', default: 'f32' },
  json: { type: 'boolean', help: 'print {"logits": number[][]} only' },
  backend: { type: 'string', help: 'compute backend: auto (native > wasm > ts), ts, wasm, native, webgpu', default: 'auto' },
  threads: { type: 'number', help: 'worker threads of the backend (default: all cores, at most 8)' },
};

type Linear = (x: Tensor, w: Tensor) => Tensor;

/** The step linear for `--weights`, or undefined for f32. */
function stepLinear(weights: string, q8Blocks: WeakMap<Tensor, Uint8Array> | null): Linear | undefined {
  if (weights === 'f32') return undefined;
  if (weights === 'q8_0') return q8Linear(q8Blocks ? { blocks: q8Blocks } : {}).linear;
  const r = bf16Linear();
  if (!r.linear) throw new UsageError(r.note);
  return r.linear;
}

/** Rows of logits, one token per forward, each step with `linear` (DeepSeek model). */
function deepseekSteps(m: OpenedModel, tokens: number[], attn: 'absorb' | 'naive', linear: Linear | undefined): Float32Array[] {
  checkTokens(m.cfg, tokens, 'tokens');
  const cache = new KVCache(m.cfg, 1, tokens.length, attn);
  return noGrad(() => tokens.map((t, i) => forward(m.params, m.cfg, Tensor.ints([t], [1, 1]), { attn, cache, startPos: i, ...(linear ? { linear } : {}) }).logits.f32));
}

function denseRows(g: GgufModel & { kind: 'dense' }, tokens: number[], incremental: boolean, weights: string): { rows: Float32Array[]; vocab: number } {
  const { cfg, params } = g;
  for (const [i, t] of tokens.entries()) if (t >= cfg.vocabSize) throw new UsageError(`tokens: token ${i} is ${t}, outside the vocabulary [0, ${cfg.vocabSize})`);
  if (tokens.length > cfg.maxPositionEmbeddings) throw new UsageError(`tokens: ${tokens.length} exceed the model's context of ${cfg.maxPositionEmbeddings}`);
  const V = cfg.vocabSize, linear = stepLinear(weights, g.q8);
  const rows = noGrad(() => {
    if (!incremental) {
      const flat = denseForward(params, cfg, Tensor.ints(tokens, [1, tokens.length])).f32;
      return tokens.map((_, i) => flat.subarray(i * V, (i + 1) * V));
    }
    const cache = new DenseKVCache(cfg, tokens.length);
    return tokens.map((t, i) => denseForward(params, cfg, Tensor.ints([t], [1, 1]), { cache, startPos: i, ...(linear ? { linear } : {}) }).f32);
  });
  return { rows, vocab: V };
}

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('logits', '--model DIR|FILE.gguf --tokens 3,17,42 [options]', spec)); return 0; }
  const dir = checkModelDir(a.model);
  const tokens = parseTokenList(a.tokens);
  if (a.attn !== 'absorb' && a.attn !== 'naive') throw new UsageError(`--attn must be absorb or naive, got '${a.attn}'`);
  if (!['f32', 'bf16', 'q8_0'].includes(a.weights)) throw new UsageError(`--weights must be f32, bf16 or q8_0, got '${a.weights}'`);
  const incremental = a.incremental === true || a.weights !== 'f32';
  await selectBackend(a.backend, a.threads);
  let rows: ArrayLike<number>[], vocab: number;
  const gguf = isGgufPath(dir) ? await loadGguf(dir) : null;
  try {
    if (gguf?.kind === 'dense') ({ rows, vocab } = denseRows(gguf, tokens, incremental, a.weights));
    else {
      const model: OpenedModel = gguf ? { cfg: gguf.cfg, params: gguf.params, dir, extraTensors: gguf.unused, notes: [], gguf } : (await openModel(dir, { tokenizer: false })).model;
      vocab = model.cfg.vocabSize;
      rows = a.weights === 'f32'
        ? allLogits(model, tokens, { attn: a.attn, incremental })
        : deepseekSteps(model, tokens, a.attn, stepLinear(a.weights, model.gguf?.q8 ?? null));
    }
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  if (a.json) {
    process.stdout.write(JSON.stringify({ logits: rows.map((r) => Array.from(r)) }) + '\n');
    return 0;
  }
  console.log(`${dir}: ${tokens.length} positions, vocab ${vocab}, ${gguf?.kind === 'dense' ? 'dense' : a.attn}${incremental ? ', incremental' : ''}${a.weights !== 'f32' ? `, ${a.weights} step weights` : ''}`);
  rows.forEach((r, i) => {
    const arr = Array.from(r), best = argmax(arr);
    console.log(`pos ${String(i).padStart(4)}  token ${String(tokens[i]).padStart(6)}  argmax ${String(best).padStart(6)} (${arr[best]!.toFixed(4)})  [${arr.slice(0, 4).map((x) => x.toFixed(4)).join(', ')}, ...]`);
  });
  return 0;
}
