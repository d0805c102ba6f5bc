/**
 * Chat templates rendered under a budget, off the event loop. A `chat_template` comes from the
 * model folder (tokenizer_config.json) and is Jinja: it can loop for minutes or build gigabytes
 * (`{% for i in range(100000000) %}`), and @huggingface/jinja renders synchronously. So rendering
 * runs in a child process (`node` with a bounded V8 heap), under a wall-clock limit and an output
 * cap. A child process, not a worker thread: a worker that hits its heap limit during one large
 * allocation takes the whole process down (V8 "Reached heap limit"), a child only itself.
 *
 * Contract:
 * - `render` resolves with the rendered text, or rejects with an ApiError: 400 when the template
 *   raises on the messages (e.g. `raise_exception`), 500 `chat_template_budget` when it runs past
 *   `timeMs`, past `maxOutputChars`, or out of its `maxHeapMb` heap, and 500 when it does not parse.
 * - A render past its budget kills the renderer (SIGKILL); the next render starts a fresh one.
 *   The server's event loop is never blocked by a template, and its memory never grows by one.
 * - Renders run one at a time, in call order. `close()` ends the renderer; an idle renderer never
 *   keeps the process alive, and it exits when its parent does.
 * - The template is data for the Jinja interpreter: nothing in it is evaluated as JavaScript.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { ApiError, type ChatMessage } from './openai.js';

/** Limits of one render. */
export interface TemplateBudget {
  /** Wall-clock milliseconds (default 2000). */
  timeMs: number;
  /** Longest rendered prompt, in UTF-16 characters (default 8 Mi). */
  maxOutputChars: number;
  /** V8 heap of the renderer in MiB (default 128): bounds what a template can build. */
  maxHeapMb: number;
}

export const DEFAULT_TEMPLATE_BUDGET: Readonly<TemplateBudget> = Object.freeze({ timeMs: 2000, maxOutputChars: 8 * 2 ** 20, maxHeapMb: 128 });

// Runs in the child (CommonJS, `node -e`): parse once, render on request, report errors as data.
const CHILD_SOURCE = `
process.on('disconnect', () => process.exit(0));
const setup = JSON.parse(process.env.FRUGAL_TEMPLATE_SETUP);
let compiled = null, parseError = null;
const ready = import(setup.jinjaUrl).then((m) => {
  try { compiled = new m.Template(setup.template); } catch (e) { parseError = String((e && e.message) || e); }
});
process.on('message', async (job) => {
  await ready;
  if (parseError !== null) return process.send({ id: job.id, kind: 'parse', message: parseError });
  let out;
  try { out = compiled.render(job.context); } catch (e) {
    return process.send({ id: job.id, kind: 'render', message: String((e && e.message) || e) });
  }
  if (typeof out !== 'string') out = String(out);
  if (out.length > job.maxChars) return process.send({ id: job.id, kind: 'output', length: out.length });
  process.send({ id: job.id, kind: 'ok', out });
});
`;

interface Reply { id: number; kind: 'ok' | 'parse' | 'render' | 'output'; out?: string; message?: string; length?: number }

const budgetError = (msg: string): ApiError =>
  new ApiError(500, `chat template exceeded its budget: ${msg}; fix chat_template in the model's tokenizer_config.json`, 'server_error', null, 'chat_template_budget');

/** Renders one template for many requests; see the file comment. */
export class ChatTemplateRenderer {
  private readonly budget: TemplateBudget;
  private readonly jinjaUrl: string;
  private child: ChildProcess | null = null;
  private nextId = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(private readonly template: string, budget: Partial<TemplateBudget> = {}) {
    this.budget = { ...DEFAULT_TEMPLATE_BUDGET, ...budget };
    const require = createRequire(import.meta.url);
    this.jinjaUrl = pathToFileURL(require.resolve('@huggingface/jinja')).href;
  }

  /** Renders `messages` (HF apply_chat_template variables); see the contract for errors. */
  render(messages: ChatMessage[], vars: { bos_token?: string; eos_token?: string } = {}): Promise<string> {
    const context = { messages, add_generation_prompt: true, bos_token: vars.bos_token ?? '', eos_token: vars.eos_token ?? '' };
    const run = this.tail.then(() => this.renderNow(context));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private spawn(): ChildProcess {
    const env: NodeJS.ProcessEnv = { ...process.env, FRUGAL_TEMPLATE_SETUP: JSON.stringify({ jinjaUrl: this.jinjaUrl, template: this.template }) };
    delete env.NODE_OPTIONS;
    const c = spawn(process.execPath, [`--max-old-space-size=${this.budget.maxHeapMb}`, '--max-semi-space-size=8', '--stack-size=2000', '-e', CHILD_SOURCE], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'], env, serialization: 'json',
    });
    c.on('error', () => undefined); // reported through 'exit'
    this.idle(c);
    return c;
  }

  /** An idle renderer does not keep the process alive. */
  private idle(c: ChildProcess): void {
    c.unref();
    (c.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  private renderNow(context: Record<string, unknown>): Promise<string> {
    if (this.closed) return Promise.reject(new ApiError(503, 'server is shutting down', 'server_error', null, 'shutting_down'));
    const c = (this.child ??= this.spawn());
    const id = ++this.nextId;
    const t0 = Date.now();
    (c.channel as { ref?: () => void } | undefined)?.ref?.();
    return new Promise<string>((resolve, reject) => {
      const finish = (err: ApiError | null, out?: string): void => {
        clearTimeout(timer);
        c.off('message', onMessage); c.off('exit', onExit);
        if (this.child === c) this.idle(c);
        if (err) reject(err); else resolve(out!);
      };
      const kill = (): void => { if (this.child === c) this.child = null; c.kill('SIGKILL'); };
      const onMessage = (r: Reply): void => {
        if (r.id !== id) return;
        if (r.kind === 'ok') return finish(null, r.out);
        if (r.kind === 'render') return finish(new ApiError(400, `chat template rejected the messages: ${r.message}`, 'invalid_request_error', 'messages'));
        if (r.kind === 'parse') return finish(new ApiError(500, `chat template does not parse: ${r.message}`, 'server_error', null, 'chat_template_invalid'));
        kill();
        finish(budgetError(`it rendered ${r.length} characters, over the ${this.budget.maxOutputChars}-character limit`));
      };
      const onExit = (code: number | null, signal: string | null): void => {
        if (this.child === c) this.child = null;
        finish(budgetError(`the renderer died (${signal ?? `exit ${code}`}; out of its ${this.budget.maxHeapMb} MiB heap?) after ${Date.now() - t0} ms`));
      };
      const timer = setTimeout(() => { kill(); finish(budgetError(`it ran for more than ${this.budget.timeMs} ms`)); }, this.budget.timeMs);
      c.on('message', onMessage); c.on('exit', onExit);
      c.send({ id, context, maxChars: this.budget.maxOutputChars }, (e) => { if (e) { kill(); finish(new ApiError(500, `chat template renderer unavailable: ${e.message}`, 'server_error')); } });
    });
  }

  /** Ends the renderer; later renders are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const c = this.child;
    this.child = null;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.ref(); // wait for the exit even when nothing else keeps the loop alive
      c.kill('SIGKILL');
      await gone;
    }
  }
}
