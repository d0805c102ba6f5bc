/**
 * `frugal web [--port 8090] [--host 127.0.0.1] [--model DIR] [--api-key K]`: serves the in-browser
 * lab (src/serve/web-node.ts): a page that trains the `tiny` model in the tab on a slice of the
 * bundled corpus (WebGPU, else wasm on worker threads), draws the loss curve and samples, chats
 * with the result, and loads HF-format model folders over HTTP — `--model DIR` serves one at
 * /model. Test hook: /?model=/model&tokens=1,2,3&backend=webgpu (see docs/browser.md).
 * Binds loopback by default; any other host requires an API key, as `frugal serve` does.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';
import { startWebServer } from '../serve/web-node.js';
import { checkApiKey, isLoopbackName } from '../serve/access.js';
import { loadCorpus } from '../train/data-node.js';

export const summary = 'serve a page that trains and chats with a DeepSeek-style model in the browser (WebGPU / wasm)';

const spec: OptionSpec = {
  host: { type: 'string', help: 'address to bind (non-loopback needs --api-key)', default: '127.0.0.1' },
  port: { type: 'number', help: 'TCP port (0 = any free port)', default: 8090 },
  model: { type: 'string', help: 'a model folder (config.json, model.safetensors, tokenizer.json) to serve at /model for the page to load' },
  'api-key': { type: 'string', help: 'require Authorization: Bearer KEY for the model files (or FRUGAL_API_KEY); needed off loopback' },
  'allowed-origins': { type: 'string', help: 'comma-separated browser origins allowed besides localhost ones (scheme://host[:port], or *)' },
  'allowed-hosts': { type: 'string', help: 'comma-separated Host names allowed besides localhost names (DNS-rebinding guard)' },
  'corpus-kb': { type: 'number', help: 'kilobytes of the bundled State of the Union corpus the page trains on (newest addresses first)', default: 400 },
};

const list = (v: unknown): string[] => (typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : []);

/** The newest documents of the corpus up to `kb` kilobytes (at least two: one is held out). */
export function corpusSlice(docs: string[], kb: number): string[] {
  const out: string[] = [];
  let size = 0;
  for (let i = docs.length - 1; i >= 0 && (size < kb * 1024 || out.length < 2); i--) { out.push(docs[i]!); size += docs[i]!.length; }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('web', '[options]', spec)); return 0; }
  let apiKey: string | null = a['api-key'] ?? process.env.FRUGAL_API_KEY ?? null;
  if (apiKey !== null) { try { apiKey = checkApiKey(apiKey); } catch (e) { throw new UsageError(`--api-key: ${(e as Error).message}`); } }
  if (!isLoopbackName(a.host) && !apiKey) throw new UsageError(`--host ${a.host} is reachable from other machines: set --api-key KEY (or FRUGAL_API_KEY) so model files need Authorization: Bearer KEY`);
  if (!Number.isInteger(a.port) || a.port < 0 || a.port > 65535) throw new UsageError(`--port must be 0..65535, got ${a.port}`);
  if (!(Number.isFinite(a['corpus-kb']) && a['corpus-kb'] >= 1 && a['corpus-kb'] <= 100_000)) throw new UsageError(`--corpus-kb must be 1..100000, got ${a['corpus-kb']}`);
  const modelDir = a.model === undefined ? null : path.resolve(String(a.model));
  if (modelDir && !existsSync(path.join(modelDir, 'config.json'))) throw new UsageError(`--model ${a.model}: no config.json there (give a model folder: config.json, model.safetensors, tokenizer.json)`);
  if (modelDir && !existsSync(path.join(modelDir, 'model.safetensors'))) throw new UsageError(`--model ${a.model}: no model.safetensors there (a single-file safetensors model; sharded folders are not served)`);
  const corpus = corpusSlice((await loadCorpus('sotu')).documents, a['corpus-kb']);
  const srv = await startWebServer({
    host: a.host, port: a.port, apiKey, allowedOrigins: list(a['allowed-origins']), allowedHosts: list(a['allowed-hosts']),
    corpus, modelDir, loopback: isLoopbackName(a.host),
  });
  console.error(`frugal web: open ${srv.url}/ (train tiny in the tab on ${corpus.length} addresses${modelDir ? `; ${modelDir} at ${srv.url}/model` : ''}${apiKey ? '; model files need the API key' : ''})`);
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => { console.error(`frugal web: ${sig}, shutting down`); srv.close().then(resolve, resolve); };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
