/**
 * `frugal serve --model DIR [--host 127.0.0.1] [--port 8080] [--cache-bytes N] [--cache-dir DIR]
 * [--api-key K]`: the OpenAI-compatible server (src/serve/server.ts). Binds loopback by default;
 * any other host requires an API key (`--api-key` or FRUGAL_API_KEY). The model folder needs
 * tokenizer.json; its tokenizer_config.json `chat_template` renders chats (else the default
 * template in docs/serving.md). SIGTERM/SIGINT: stop accepting, cancel in-flight work, exit.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from './main.js';
import { startServer } from '../serve/server.js';
import { DiskCache } from '../infer/disk-cache-node.js';
import { latentRowWidth } from '../infer/prefix-cache.js';
import { checkModelDir, modelFingerprint, openModel, selectBackend } from '../serve/model-node.js';
import { withBf16Weights } from '../infer/bf16-node.js';
import { withQ8Weights } from '../infer/q8-node.js';
import { isGgufPath } from '../model/gguf-node.js';

export const summary = 'OpenAI-compatible HTTP server with prefix/context caching';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json, *.safetensors, tokenizer.json) or a .gguf file with a vocabulary' },
  host: { type: 'string', help: 'address to bind (non-loopback needs --api-key)', default: '127.0.0.1' },
  port: { type: 'number', help: 'TCP port (0 = any free port)', default: 8080 },
  'cache-bytes': { type: 'number', help: 'in-memory prefix cache budget in bytes', default: 256 * 2 ** 20 },
  'cache-dir': { type: 'string', help: 'disk context cache folder (survives restarts)' },
  'cache-dir-bytes': { type: 'number', help: 'disk cache size bound in bytes', default: 2 ** 30 },
  'api-key': { type: 'string', help: 'require Authorization: Bearer <key> (or set FRUGAL_API_KEY)' },
  name: { type: 'string', help: 'model name for /v1/models (default: the folder name)' },
  'max-queue': { type: 'number', help: 'requests waiting or running before 429', default: 64 },
  speculative: { type: 'boolean', help: 'MTP speculative decoding (skips the prefix cache for prompts)' },
  backend: { type: 'string', help: 'compute backend: auto (native > wasm > ts), ts, wasm, native', default: 'auto' },
  weights: { type: 'string', help: 'decode weight precision: f32, bf16 (half the memory traffic per token; native backend) or q8_0 (a quarter)', default: 'f32' },
};

/** Reads chat_template and special token strings from tokenizer_config.json, when present. */
function tokenizerConfig(dir: string): { chatTemplate: string | null; bos: string; eos: string } {
  const file = path.join(dir, 'tokenizer_config.json');
  if (!existsSync(file)) return { chatTemplate: null, bos: '', eos: '' };
  let j: Record<string, unknown>;
  try { j = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { throw new Error(`${file} is not valid JSON: ${(e as Error).message}`); }
  const tok = (v: unknown): string => (typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : '');
  let t = j.chat_template;
  if (Array.isArray(t)) t = (t.find((x) => x && x.name === 'default') ?? t[0])?.template;
  return { chatTemplate: typeof t === 'string' ? t : null, bos: tok(j.bos_token), eos: tok(j.eos_token) };
}

const isLoopback = (h: string): boolean => h === 'localhost' || h === '::1' || /^127\./.test(h);

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('serve', '--model DIR [options]', spec)); return 0; }
  const dir = checkModelDir(a.model);
  if (!isGgufPath(dir) && !existsSync(path.join(dir, 'tokenizer.json'))) throw new UsageError(`${dir} has no tokenizer.json; the server needs one (train one with 'frugal tokenizer train' and copy it there)`);
  const apiKey: string | null = a['api-key'] ?? process.env.FRUGAL_API_KEY ?? null;
  if (!isLoopback(a.host) && !apiKey) throw new UsageError(`--host ${a.host} is reachable from other machines: set --api-key KEY (or FRUGAL_API_KEY) so requests must send Authorization: Bearer KEY`);
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new UsageError(`--port must be 0..65535, got ${a.port}`);
  if (!(a['cache-bytes'] >= 0)) throw new UsageError('--cache-bytes must be >= 0');
  if (!['f32', 'bf16', 'q8_0'].includes(a.weights)) throw new UsageError(`--weights must be f32, bf16 or q8_0, got '${a.weights}'`);
  await selectBackend(a.backend);
  const opened = await openModel(dir);
  const tokenizer = opened.tokenizer;
  if (!tokenizer) throw new UsageError(`${dir} has no usable vocabulary (${opened.model.gguf?.tokenizerNote ?? 'no tokenizer'}); the server needs text in and out`);
  const model = a.weights === 'bf16' ? withBf16Weights(opened.model)
    : a.weights === 'q8_0' ? withQ8Weights(opened.model, opened.model.gguf ? { blocks: opened.model.gguf.q8 } : {}) : { model: opened.model, note: '' };
  if (model.note) console.error(`frugal serve: ${model.note}`);
  const tc = tokenizerConfig(dir);
  const diskCache = a['cache-dir'] ? new DiskCache({ dir: a['cache-dir'], modelId: modelFingerprint(dir), rowWidth: latentRowWidth(model.model.cfg), maxBytes: a['cache-dir-bytes'] }) : null;
  const name = a.name ?? path.basename(path.resolve(dir)).replace(/\.gguf$/i, '');
  const srv = await startServer({
    model: model.model, tokenizer, modelName: name, host: a.host, port: a.port, apiKey, cacheBytes: a['cache-bytes'], diskCache,
    chatTemplate: tc.chatTemplate, bosToken: tc.bos, eosToken: tc.eos, maxQueue: a['max-queue'], speculative: a.speculative === true,
  });
  console.error(`frugal serve: ${name} on ${srv.url} (OpenAI API at ${srv.url}/v1; prefix cache ${a['cache-bytes']} bytes${diskCache ? `, disk cache ${a['cache-dir']}` : ''}${apiKey ? ', API key required' : ''})`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      console.error(`frugal serve: ${sig}, shutting down`);
      srv.close().then(resolve, resolve);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
