/**
 * `frugal bench decode`: batch-1 decode tokens/s with the KV cache (DeepSeek: latent; dense: per-head K/V) (short context and ~1K context), Frugal next to the
 * PyTorch peer with the same weights, threads and shapes (see bench/harness.ts for the method).
 * With `--speculative`: plain vs MTP speculative decoding of a trained model (bench/speculative.ts).
 */
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { UsageError } from '../src/errors.js';
import type { BackendChoice } from '../src/backend/setup-node.js';
import { SUITE_SPEC, runSuiteCli } from './harness.js';
import { runSpeculativeCli } from './speculative.js';
import { MAX_DRAFT_TOKENS } from '../src/infer/generate.js';

const SPEC_ONLY: OptionSpec = {
  speculative: { type: 'boolean', help: 'plain vs MTP speculative greedy decoding of a trained model, interleaved (no peer); --weights f32|bf16 (default both)' },
  model: { type: 'string', help: 'with --speculative: the model folder (default: train one with `frugal train` defaults first, ~1 min)' },
  'max-tokens': { type: 'number', help: 'with --speculative: new tokens per generation (default 500)' },
  prompt: { type: 'string', help: 'with --speculative: prompt text (default "The Congress of the United States")' },
  drafts: { type: 'string', help: 'with --speculative: MTP draft weights, q8_0 (default, as generate/serve --speculative) or same (the decode weights)' },
  'draft-tokens': { type: 'string', help: 'with --speculative: chained MTP drafts per greedy step, one value or a list (1-4 or auto, e.g. 1,3,auto; default auto, as generate)' },
};

/** The decode suite's options: the model suites' plus the speculative comparison's. */
export const OPTIONS: OptionSpec = { ...SUITE_SPEC, ...SPEC_ONLY };

/** CLI entry: `frugal bench decode [--config small|dense-10m|tiny] [--threads N] [--reps N] [--quick] [--json] [--no-peer] [--write] [--speculative [--model DIR] ...]`. */
export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv, OPTIONS);
  if (o.help) { console.log(usage('bench decode', '[options]', OPTIONS)); return 0; }
  if (o.speculative !== true) {
    const extra = Object.keys(SPEC_ONLY).find((k) => o[k] !== undefined);
    if (extra) throw new UsageError(`--${extra} needs --speculative`);
    return runSuiteCli('decode', argv);
  }
  for (const k of ['config', 'no-peer', 'quick']) if (o[k] !== undefined) throw new UsageError(`--${k} does not apply to --speculative (it times a trained model, no peer)`);
  const t = o.threads as number | undefined;
  if (t !== undefined && !(Number.isInteger(t) && t >= 1 && t <= 64)) throw new UsageError(`--threads must be an integer 1..64, got ${t}`);
  const reps = (o.reps as number | undefined) ?? 5;
  if (!(Number.isInteger(reps) && reps >= 1 && reps <= 100)) throw new UsageError(`--reps must be an integer 1..100, got ${reps}`);
  const maxTokens = (o['max-tokens'] as number | undefined) ?? 500;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 2 && maxTokens <= 100000)) throw new UsageError(`--max-tokens must be an integer 2..100000, got ${maxTokens}`);
  const w = o.weights as string | undefined;
  if (w !== undefined && w !== 'f32' && w !== 'bf16') throw new UsageError(`--weights must be f32 or bf16, got '${w}'`);
  const drafts = (o.drafts as string | undefined) ?? 'q8_0';
  if (drafts !== 'q8_0' && drafts !== 'same') throw new UsageError(`--drafts must be q8_0 or same, got '${drafts}'`);
  const dt = o['draft-tokens'] as string | undefined;
  const draftTokens = dt === undefined ? undefined : dt.split(',').map((x) => (x.trim() === 'auto' ? 'auto' as const : Number(x.trim())));
  if (draftTokens && !draftTokens.every((k) => k === 'auto' || (Number.isInteger(k) && k >= 1 && k <= MAX_DRAFT_TOKENS))) throw new UsageError(`--draft-tokens must be auto or integers 1..${MAX_DRAFT_TOKENS} (comma-separated), got '${dt}'`);
  const backend = ((o.backend as string | undefined) ?? 'auto') as BackendChoice;
  if (!['auto', 'native', 'wasm', 'ts', 'webgpu'].includes(backend)) throw new UsageError(`--backend must be auto, native, wasm, ts or webgpu, got '${backend}'`);
  return runSpeculativeCli({
    model: (o.model as string | undefined) ?? null, threads: t !== undefined ? [t] : [1, 2], reps, backend,
    weights: w !== undefined ? [w] : ['f32', 'bf16'], maxTokens, prompt: (o.prompt as string | undefined) ?? 'The Congress of the United States',
    json: o.json === true, write: o.write === true, drafts, ...(draftTokens ? { draftTokens } : {}),
  }, argv);
}
