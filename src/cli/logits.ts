/**
 * `frugal logits --model DIR --tokens 3,17,42 [--attn absorb|naive] [--incremental] [--json]`:
 * the logits of every position. `--incremental` feeds the tokens one at a time through the KV
 * cache. `--json` prints exactly `{"logits": number[][]}` (rows = positions) and nothing else;
 * otherwise a short table (per position: argmax id, its logit, and the first values).
 */
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { allLogits } from '../infer/generate.js';
import { argmax } from '../infer/sampling.js';
import { checkModelDir, openModel, parseTokenList, selectBackend } from '../serve/model-node.js';

export const summary = 'print the logits of every position for given token ids';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json + *.safetensors) or a frugal train run folder' },
  tokens: { type: 'string', help: 'comma-separated token ids, e.g. 3,17,42' },
  attn: { type: 'string', help: 'attention form: absorb or naive', default: 'absorb' },
  incremental: { type: 'boolean', help: 'feed tokens one at a time through the KV cache' },
  json: { type: 'boolean', help: 'print {"logits": number[][]} only' },
  backend: { type: 'string', help: 'compute backend: auto (native > wasm > ts), ts, wasm, native', default: 'auto' },
  threads: { type: 'number', help: 'worker threads of the backend (default: all cores, at most 8)' },
};

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('logits', '--model DIR --tokens 3,17,42 [options]', spec)); return 0; }
  const dir = checkModelDir(a.model);
  const tokens = parseTokenList(a.tokens);
  if (a.attn !== 'absorb' && a.attn !== 'naive') throw new UsageError(`--attn must be absorb or naive, got '${a.attn}'`);
  await selectBackend(a.backend, a.threads);
  const { model } = await openModel(dir, { tokenizer: false });
  let rows: number[][];
  try {
    rows = allLogits(model, tokens, { attn: a.attn, incremental: a.incremental === true });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  if (a.json) {
    process.stdout.write(JSON.stringify({ logits: rows }) + '\n');
    return 0;
  }
  console.log(`${dir}: ${tokens.length} positions, vocab ${model.cfg.vocabSize}, ${a.attn}${a.incremental ? ', incremental' : ''}`);
  rows.forEach((r, i) => {
    const best = argmax(r);
    console.log(`pos ${String(i).padStart(4)}  token ${String(tokens[i]).padStart(6)}  argmax ${String(best).padStart(6)} (${r[best]!.toFixed(4)})  [${r.slice(0, 4).map((x) => x.toFixed(4)).join(', ')}, ...]`);
  });
  return 0;
}
