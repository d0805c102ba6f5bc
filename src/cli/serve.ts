/**
 * `frugal serve --model DIR [--host 127.0.0.1] [--port 8080] [--cache-bytes N] [--cache-dir DIR]
 * [--api-key K]`: the OpenAI-compatible server (src/serve/server.ts). Binds loopback by default;
 * any other host requires an API key (`--api-key` or FRUGAL_API_KEY, at least 16 characters).
 * DIR is a model folder or a `frugal train` run folder (its final/ model, else its latest
 * checkpoint), served under the run's name unless `--name` / `--served-model-name` says otherwise.
 * The model folder needs tokenizer.json; its tokenizer_config.json `chat_template` renders chats
 * (else the default template in docs/serving.md). Browsers: only loopback origins and Host names
 * unless `--allowed-origins` / `--allowed-hosts` add more. Continuous batching: up to
 * `--max-batch` requests decode together; `--kv-bytes` bounds the latent KV cache (running
 * requests and the prefix cache), answering 503 when a request waits `--kv-wait-ms` for room.
 * SIGTERM/SIGINT: stop accepting, cancel in-flight work, exit.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { startServer } from '../serve/server.js';
import { DiskCache } from '../infer/disk-cache-node.js';
import { prefixRowWidth } from '../infer/prefix-cache.js';
import { modelFingerprint, openModel, readTokenizerConfig, resolveModelDir, selectBackend } from '../serve/model-node.js';
import { checkApiKey, isLoopbackName } from '../serve/access.js';
import { withBf16Weights } from '../infer/bf16-node.js';
import { withQ8Drafts, withQ8Weights } from '../infer/q8-node.js';
import { isGgufPath } from '../model/gguf-node.js';

export const summary = 'OpenAI-compatible HTTP server with prefix/context caching, and a chat playground at /';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json, *.safetensors, tokenizer.json), a frugal train run folder, or a .gguf file with a vocabulary' },
  host: { type: 'string', help: 'address to bind (non-loopback needs --api-key)', default: '127.0.0.1' },
  port: { type: 'number', help: 'TCP port (0 = any free port)', default: 8080 },
  'cache-bytes': { type: 'number', help: 'in-memory prefix cache budget in bytes', default: 256 * 2 ** 20 },
  'cache-dir': { type: 'string', help: 'disk context cache folder (survives restarts)' },
  'cache-dir-bytes': { type: 'number', help: 'disk cache size bound in bytes', default: 2 ** 30 },
  'api-key': { type: 'string', help: 'require Authorization: Bearer <key>, at least 16 characters (or set FRUGAL_API_KEY)' },
  name: { type: 'string', help: "model name for /v1/models (default: the run's or folder's name)" },
  'served-model-name': { type: 'string', help: 'same as --name (vLLM spelling)' },
  'max-queue': { type: 'number', help: 'requests waiting or running before 429; 0 = no bound', default: 64 },
  'max-batch': { type: 'number', help: 'most requests decoded together in one batched step (continuous batching)', default: 16 },
  'kv-bytes': { type: 'number', help: 'latent KV cache bytes for running requests and the prefix cache together (default 2 GiB + --cache-bytes)' },
  'kv-block-tokens': { type: 'number', help: 'positions per KV cache block', default: 16 },
  'kv-wait-ms': { type: 'number', help: 'how long a request may wait for KV cache room before 503 kv_cache_full (0 = answer at once)', default: 30_000 },
  'allowed-origins': { type: 'string', help: 'comma-separated browser origins allowed besides localhost ones (scheme://host[:port], or *)' },
  'allowed-hosts': { type: 'string', help: 'comma-separated Host names allowed besides localhost names (DNS-rebinding guard)' },
  speculative: { type: 'boolean', help: 'MTP speculative decoding (works with both caches; acceptance rate in /health and usage)' },
  backend: { type: 'string', help: 'compute backend: auto (native > wasm > ts), ts, wasm, native, webgpu', default: 'auto' },
  threads: { type: 'number', help: 'worker threads of the backend (default: all cores, at most 8)' },
  weights: { type: 'string', help: 'decode weight precision: f32, bf16 (half the memory traffic per token; native backend) or q8_0 (a quarter)', default: 'f32' },
};

const list = (v: unknown): string[] => (typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : []);

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('serve', '--model DIR [options]', spec)); return 0; }
  const found = resolveModelDir(a.model);
  const dir = found.dir;
  if (!isGgufPath(dir) && !existsSync(path.join(dir, 'tokenizer.json'))) throw new UsageError(`${dir} has no tokenizer.json; the server needs one (train one with 'frugal tokenizer train' and copy it there)`);
  let apiKey: string | null = a['api-key'] ?? process.env.FRUGAL_API_KEY ?? null;
  if (apiKey !== null) { try { apiKey = checkApiKey(apiKey); } catch (e) { throw new UsageError(`--api-key: ${(e as Error).message}`); } }
  if (!isLoopbackName(a.host) && !apiKey) throw new UsageError(`--host ${a.host} is reachable from other machines: set --api-key KEY (or FRUGAL_API_KEY) so requests must send Authorization: Bearer KEY`);
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new UsageError(`--port must be 0..65535, got ${a.port}`);
  if (!(a['cache-bytes'] >= 0)) throw new UsageError('--cache-bytes must be >= 0');
  if (!(Number.isInteger(a['max-queue']) && a['max-queue'] >= 0)) throw new UsageError(`--max-queue must be an integer >= 0 (0 = no bound), got ${a['max-queue']}`);
  if (!(Number.isInteger(a['max-batch']) && a['max-batch'] >= 1 && a['max-batch'] <= 4096)) throw new UsageError(`--max-batch must be an integer in [1, 4096], got ${a['max-batch']}`);
  if (a['kv-bytes'] !== undefined && !(a['kv-bytes'] > 0)) throw new UsageError(`--kv-bytes must be > 0, got ${a['kv-bytes']}`);
  if (!(Number.isInteger(a['kv-block-tokens']) && a['kv-block-tokens'] >= 1 && a['kv-block-tokens'] <= 4096)) throw new UsageError(`--kv-block-tokens must be an integer in [1, 4096], got ${a['kv-block-tokens']}`);
  if (!(a['kv-wait-ms'] >= 0)) throw new UsageError(`--kv-wait-ms must be >= 0, got ${a['kv-wait-ms']}`);
  if (!['f32', 'bf16', 'q8_0'].includes(a.weights)) throw new UsageError(`--weights must be f32, bf16 or q8_0, got '${a.weights}'`);
  if (a.name !== undefined && a['served-model-name'] !== undefined && a.name !== a['served-model-name']) throw new UsageError('--name and --served-model-name are the same option; give one');
  if (found.note) console.error(`frugal serve: ${found.note}`);
  await selectBackend(a.backend, a.threads);
  const opened = await openModel(dir);
  for (const n of opened.model.notes) console.error(`frugal serve: ${n}`);
  const tokenizer = opened.tokenizer;
  if (!tokenizer) throw new UsageError(`${dir} has no usable vocabulary (${opened.model.gguf?.tokenizerNote ?? 'no tokenizer'}); the server needs text in and out`);
  const model = a.weights === 'bf16' ? withBf16Weights(opened.model)
    : a.weights === 'q8_0' ? withQ8Weights(opened.model, opened.model.gguf ? { blocks: opened.model.gguf.q8 } : {}) : { model: opened.model, note: '' };
  if (model.note) console.error(`frugal serve: ${model.note}`);
  if (a.speculative === true && model.model.params.mtp.length > 0) {
    const d = withQ8Drafts(model.model);
    model.model = d.model;
    console.error(`frugal serve: ${d.note}`);
  }
  const tc = readTokenizerConfig(dir);
  const diskCache = a['cache-dir'] ? new DiskCache({ dir: a['cache-dir'], modelId: modelFingerprint(opened.model, `weights=${a.weights}`), rowWidth: prefixRowWidth(model.model.cfg, a.speculative === true && model.model.params.mtp.length > 0 ? 1 : 0), maxBytes: a['cache-dir-bytes'] }) : null;
  const name = String(a['served-model-name'] ?? a.name ?? found.name);
  const srv = await startServer({
    model: model.model, tokenizer, modelName: name, host: a.host, port: a.port, apiKey, cacheBytes: a['cache-bytes'], diskCache,
    chatTemplate: tc.chatTemplate, bosToken: tc.bos, eosToken: tc.eos, maxQueue: a['max-queue'], speculative: a.speculative === true,
    allowedOrigins: list(a['allowed-origins']), allowedHosts: list(a['allowed-hosts']),
    maxBatch: a['max-batch'], kvBlockTokens: a['kv-block-tokens'], kvWaitMs: a['kv-wait-ms'], ...(a['kv-bytes'] !== undefined ? { kvBytes: a['kv-bytes'] } : {}),
  });
  const kv = srv.kvPool.stats();
  console.error(`frugal serve: ${name} on ${srv.url} (OpenAI API at ${srv.url}/v1, chat playground at ${srv.url}/; prefix cache ${a['cache-bytes']} bytes${diskCache ? `, disk cache ${a['cache-dir']}` : ''}${apiKey ? ', API key required' : ''})`);
  console.error(`frugal serve: continuous batching, up to ${a['max-batch']} requests per step (${Number.isFinite(srv.scheduler.rowsPerPass()) ? srv.scheduler.rowsPerPass() : 'all'} rows per decode pass on this backend); KV cache ${kv.totalBlocks} blocks of ${kv.blockTokens} tokens (${kv.blockBytes} bytes each)`);
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
