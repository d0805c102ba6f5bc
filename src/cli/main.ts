/**
 * The `frugal` command line: parses the verb and hands the rest of argv to that verb's module.
 * Each verb lives in its own file `src/cli/<verb>.ts` exporting `run(argv): Promise<number>` and
 * `summary` (one line for the help text); modules load lazily so `frugal cost` never pays for
 * the tensor engine.
 */
import { UsageError } from '../errors.js';

export interface Verb {
  summary: string;
  /** Module under src/cli/ (without extension) exporting `run`. */
  module: string;
}

export const verbs: Record<string, Verb> = {
  train: { summary: 'train a DeepSeek-style model (MLA + MoE + MTP) on the bundled corpus or your text', module: 'train' },
  generate: { summary: 'generate text from a model directory', module: 'generate' },
  serve: { summary: 'OpenAI-compatible HTTP server with prefix/context caching, and a chat playground at /', module: 'serve' },
  dashboard: { summary: 'live web dashboard of training runs (loss, lr, throughput, cost, expert load, samples)', module: 'dashboard' },
  web: { summary: 'serve a page that trains and chats with a DeepSeek-style model in the browser (WebGPU / wasm)', module: 'web' },
  logits: { summary: 'print the logits of every position for given token ids', module: 'logits' },
  info: { summary: 'parameters, activated parameters and KV-cache size of a model', module: 'info' },
  cost: { summary: 'training cost meter: params, FLOPs, memory, GPU-hours and dollars', module: 'cost' },
  tokenizer: { summary: 'train a byte-level BPE tokenizer (tokenizer.json)', module: 'tokenizer' },
  experiment: { summary: 'rerunnable experiments (fp8: FP32 vs FP8 training)', module: 'experiment' },
  export: { summary: 'export a model folder as GGUF for llama.cpp, Ollama, LM Studio', module: 'export' },
  bench: { summary: 'benchmarks: gemm, train, prefill, decode, memory', module: 'bench' },
};

export function helpText(): string {
  const lines = ['frugal — train and serve DeepSeek-V3-style models in TypeScript', '', 'usage: frugal <verb> [options]   (frugal <verb> --help for the options of one verb)', '', 'verbs:'];
  for (const [name, v] of Object.entries(verbs)) lines.push(`  ${name.padEnd(11)} ${v.summary}`);
  return lines.join('\n');
}

/** Runs the CLI; returns the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (!verb || verb === '--help' || verb === '-h' || verb === 'help') {
    console.log(helpText());
    return verb ? 0 : 0;
  }
  if (verb === '--version') {
    console.log('frugal-lm 0.1.0');
    return 0;
  }
  const v = verbs[verb];
  if (!v) {
    console.error(`frugal: unknown verb '${verb}'.\n\n${helpText()}`);
    return 2;
  }
  let mod: { run: (argv: string[]) => Promise<number> };
  try {
    mod = (await import(`./${v.module}.js`)) as typeof mod;
  } catch (e) {
    const msg = (e as Error).message ?? String(e);
    if (/Cannot find module|ERR_MODULE_NOT_FOUND/.test(msg) && msg.includes(`/cli/${verb}.js`)) {
      console.error(`frugal: the '${verb}' verb is not built in this version yet.`);
      return 2;
    }
    throw e;
  }
  try {
    return await mod.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`frugal ${verb}: ${e.message}`);
      return 2;
    }
    console.error(`frugal ${verb}: ${(e as Error).message ?? String(e)}`);
    if (process.env.FRUGAL_DEBUG) console.error((e as Error).stack);
    return 1;
  } finally {
    // Worker threads of the compute backends must not keep the process alive.
    const { disposeBackends } = await import('../backend/setup-node.js');
    await disposeBackends();
  }
}

export { UsageError };
