/**
 * `frugal export --model DIR --format gguf [--type f32|f16|bf16|q8_0] [--out FILE.gguf]`: writes
 * a model folder (a training run's output, an HF DeepSeek-V3-format folder, an FP8 checkpoint, or
 * a Frugal dense model) as a GGUF file that llama.cpp, Ollama and LM Studio run: llama.cpp's
 * `deepseek2` architecture (`llama` for the dense model), the folder's tokenizer.json as the
 * vocabulary. Refuses models llama.cpp would load wrong, naming why (src/model/gguf.ts).
 */
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from './main.js';
import { checkModelDir } from '../serve/model-node.js';
import { exportGguf } from '../model/gguf-node.js';
import { FILE_TYPES, type GgufFileType } from '../model/gguf.js';

export const summary = 'export a model folder as GGUF for llama.cpp, Ollama, LM Studio';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json + *.safetensors [+ tokenizer.json])' },
  format: { type: 'string', help: 'output format (gguf)', default: 'gguf' },
  type: { type: 'string', help: 'weight type: f32, f16, bf16, q8_0 (norms, router and bias stay f32)', default: 'f32' },
  out: { type: 'string', help: 'output file (default DIR/model-TYPE.gguf)' },
  name: { type: 'string', help: 'general.name written into the file (default: the folder name)' },
};

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('export', '--model DIR --format gguf [--type f32|f16|bf16|q8_0] [--out FILE.gguf]', spec)); return 0; }
  const dir = checkModelDir(a.model, '--model', { gguf: false });
  if (a.format !== 'gguf') throw new UsageError(`--format must be gguf, got '${a.format}'`);
  const type = String(a.type).toLowerCase();
  if (!Object.hasOwn(FILE_TYPES, type)) throw new UsageError(`--type must be one of ${Object.keys(FILE_TYPES).join(', ')}, got '${a.type}'`);
  const out = typeof a.out === 'string' ? a.out : path.join(dir, `model-${type}.gguf`);
  const t0 = performance.now();
  const r = await exportGguf(dir, out, type as GgufFileType, typeof a.name === 'string' ? a.name : undefined);
  console.error(`frugal export: ${r.arch}, ${r.tensors} tensors, ${type}; vocabulary: ${r.vocab}`);
  for (const n of r.notes) console.error(`frugal export: note: ${n}`);
  console.log(`${r.file} (${(r.bytes / 2 ** 20).toFixed(2)} MiB, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  return 0;
}
