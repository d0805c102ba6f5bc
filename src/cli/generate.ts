/**
 * `frugal generate --model DIR (--prompt TEXT | --tokens 3,17,42) [--max-tokens N] [--greedy]
 * [--temperature T] [--top-k K] [--top-p P] [--seed S] [--stop TEXT] [--speculative [--draft-tokens K|auto] [--draft-window N]]`: streams the
 * continuation to stdout as it is produced (text through the model's tokenizer.json; with
 * `--tokens` and no tokenizer, the ids). Statistics (tokens/s, MTP acceptance rate) go to stderr.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { DEFAULT_DRAFT_TOKENS, DRAFT_WINDOW, Generation, MAX_DRAFT_TOKENS, type Model } from '../infer/generate.js';
import { StopMatcher, checkSampling, type SamplingOptions } from '../infer/sampling.js';
import { StreamDecoder } from '../io/tokenizer.js';
import { checkModelDir, openModel, parseTokenList, selectBackend } from '../serve/model-node.js';
import { withBf16Weights } from '../infer/bf16-node.js';
import { withQ8Drafts, withQ8Weights } from '../infer/q8-node.js';
import { isGgufPath } from '../model/gguf-node.js';

export const summary = 'generate text from a model directory';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json + *.safetensors [+ tokenizer.json]), a frugal train run folder, or a .gguf file' },
  prompt: { type: 'string', help: 'prompt text (needs tokenizer.json in the model directory)' },
  tokens: { type: 'string', help: 'prompt as comma-separated token ids (no tokenizer needed)' },
  'max-tokens': { type: 'number', help: 'most new tokens', default: 64 },
  greedy: { type: 'boolean', help: 'argmax decoding (same as --temperature 0)' },
  temperature: { type: 'number', help: 'sampling temperature', default: 1 },
  'top-k': { type: 'number', help: 'sample among the k most likely tokens (0 = all)', default: 0 },
  'top-p': { type: 'number', help: 'nucleus sampling mass', default: 1 },
  seed: { type: 'number', help: 'random seed (default: random)' },
  stop: { type: 'string', help: 'stop sequence (text mode)' },
  speculative: { type: 'boolean', help: 'MTP speculative decoding (models with MTP layers)' },
  'draft-tokens': { type: 'string', help: `with --speculative: greedy steps draft this many tokens by chaining the MTP layer, verified in one pass: 1-${MAX_DRAFT_TOKENS}, or auto (default: from ${DEFAULT_DRAFT_TOKENS}, more while drafts are kept, fewer while rejected); sampled steps draft one` },
  'draft-window': { type: 'number', help: `with --speculative: greedy drafts attend over at most this many recent positions (default ${DRAFT_WINDOW}; 0 = the whole context)` },
  'ignore-eos': { type: 'boolean', help: 'keep going past the end-of-sequence token' },
  backend: { type: 'string', help: 'compute backend: auto (native > wasm > ts), ts, wasm, native, webgpu', default: 'auto' },
  threads: { type: 'number', help: 'worker threads of the backend (default: all cores, at most 8)' },
  weights: { type: 'string', help: 'decode weight precision: f32, bf16 (half the memory traffic per token; native backend) or q8_0 (a quarter; the file\'s own blocks for a Q8_0 GGUF)', default: 'f32' },
};

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('generate', '--model DIR (--prompt TEXT | --tokens 3,17,42) [options]', spec)); return 0; }
  const dir = checkModelDir(a.model);
  if ((a.prompt === undefined) === (a.tokens === undefined)) throw new UsageError('give exactly one of --prompt TEXT or --tokens 3,17,42');
  if (a.prompt !== undefined && !isGgufPath(dir) && !existsSync(path.join(dir, 'tokenizer.json'))) {
    throw new UsageError(`--prompt needs ${path.join(dir, 'tokenizer.json')} (train one with 'frugal tokenizer train' and copy it there), or pass token ids with --tokens`);
  }
  const sampling: SamplingOptions = { greedy: a.greedy === true, temperature: a.temperature, topK: a['top-k'], topP: a['top-p'] };
  if (a.seed !== undefined) sampling.seed = a.seed;
  try { checkSampling(sampling); } catch (e) { throw new UsageError((e as Error).message); }
  if (!['f32', 'bf16', 'q8_0'].includes(a.weights)) throw new UsageError(`--weights must be f32, bf16 or q8_0, got '${a.weights}'`);
  const dw = a['draft-window'] as number | undefined;
  if (dw !== undefined) {
    if (a.speculative !== true) throw new UsageError('--draft-window needs --speculative');
    if (!(Number.isInteger(dw) && dw >= 0)) throw new UsageError(`--draft-window must be a non-negative integer, got ${dw}`);
  }
  const dt = a['draft-tokens'] as string | undefined;
  let draftTokens: number | 'auto' | undefined;
  if (dt !== undefined) {
    if (a.speculative !== true) throw new UsageError('--draft-tokens needs --speculative');
    draftTokens = dt === 'auto' ? 'auto' : Number(dt);
    if (draftTokens !== 'auto' && !(Number.isInteger(draftTokens) && draftTokens >= 1 && draftTokens <= MAX_DRAFT_TOKENS)) throw new UsageError(`--draft-tokens must be auto or an integer 1..${MAX_DRAFT_TOKENS}, got '${dt}'`);
  }
  await selectBackend(a.backend, a.threads);
  const opened = await openModel(dir);
  const tokenizer = opened.tokenizer;
  if (a.prompt !== undefined && !tokenizer) throw new UsageError(`--prompt needs a tokenizer, and ${dir} has none usable (${opened.model.gguf?.tokenizerNote ?? 'no tokenizer.json'}); pass token ids with --tokens`);
  let model: Model = opened.model;
  if (a.weights !== 'f32') {
    const r = a.weights === 'bf16' ? withBf16Weights(model) : withQ8Weights(model, opened.model.gguf ? { blocks: opened.model.gguf.q8 } : {});
    model = r.model;
    console.error(`frugal generate: ${r.note}`);
  }
  if (a.speculative === true && model.params.mtp.length > 0) {
    const r = withQ8Drafts(model);
    model = r.model;
    console.error(`frugal generate: ${r.note}`);
  }
  const prompt = a.tokens !== undefined ? parseTokenList(a.tokens) : tokenizer!.encode(String(a.prompt));
  const eos = tokenizer?.eosId ?? model.cfg.eosTokenId;
  const decoder = tokenizer ? new StreamDecoder(tokenizer, { skipSpecialTokens: true }) : null;
  const stop = new StopMatcher(a.stop !== undefined ? [String(a.stop)] : []);
  const out = (s: string): void => { if (s) process.stdout.write(s); };
  let first = true;
  let gen: Generation;
  try {
    gen = new Generation(model, prompt, {
      ...sampling, maxTokens: a['max-tokens'], speculative: a.speculative === true, ...(draftTokens !== undefined ? { draftTokens } : {}), ...(dw !== undefined ? { draftWindow: dw } : {}),
      ...(tokenizer ? { vocabLimit: tokenizer.vocabSize } : {}),
      stopTokenIds: a['ignore-eos'] || eos === null ? [] : [eos],
      onToken: (id) => {
        if (!decoder) { out(`${first ? '' : ' '}${id}`); first = false; return false; }
        const r = stop.push(decoder.push(id));
        out(r.emit);
        return r.stopped;
      },
    });
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  if (tokenizer && a.prompt !== undefined) out(String(a.prompt));
  while (!gen.done) {
    gen.step();
    await new Promise((r) => setImmediate(r));
  }
  if (decoder && !stop.stopped) out(stop.push(decoder.flush()).emit + stop.flush());
  process.stdout.write('\n');
  const r = gen.result();
  const n = r.tokens.length;
  const tps = r.decodeMs > 0 ? (n / r.decodeMs) * 1000 : 0;
  const specLine = r.speculative ? `, MTP acceptance ${(100 * r.speculative.acceptanceRate).toFixed(1)}% (${r.speculative.accepted}/${r.speculative.proposed})` : '';
  console.error(`[${prompt.length} prompt tokens in ${r.prefillMs.toFixed(0)} ms; ${n} new tokens at ${tps.toFixed(1)} tok/s; finish: ${r.finishReason}${specLine}]`);
  return 0;
}
