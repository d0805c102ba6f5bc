/**
 * OpenAI-compatible HTTP server on node:http. Routes: POST /v1/chat/completions, POST
 * /v1/completions (both with SSE `stream: true` ending in `data: [DONE]`, and
 * `stream_options.include_usage`), GET /v1/models, POST /tokenize, POST /detokenize, GET /health,
 * and the chat playground page at GET / (static files, src/serve/ui-node.ts; no key needed).
 *
 * Contract:
 * - Requests run one at a time through a bounded queue (the engine is synchronous); a full queue
 *   answers 429. Between tokens the server yields to the event loop, so /health, new requests and
 *   SSE writes proceed while a generation runs; a client that disconnects cancels its generation.
 * - Every bad request gets a 4xx in OpenAI's error shape and the server keeps serving: malformed
 *   JSON / wrong types / unknown fields 400, oversize body 413 (chunked bodies included: the body
 *   is drained, within bounds, so the client reads the 413), unknown model or route 404,
 *   wrong method 405, prompt not fitting the context 400 (`context_length_exceeded`), bad key 401,
 *   disallowed Origin or Host 403 (src/serve/access.ts). HEAD works wherever GET does.
 * - Chat templates render in a separate process under a time/heap/output budget
 *   (chat-template-node.ts): a template that loops or explodes is a 500 for that request only.
 * - Usage has prompt_tokens, completion_tokens, total_tokens, DeepSeek's prompt_cache_hit_tokens /
 *   prompt_cache_miss_tokens and OpenAI's prompt_tokens_details.cached_tokens; with
 *   `speculative`, `speculative: { proposed, accepted, acceptance_rate }` (totals in /health).
 * - Prompts reuse cached prefixes: the in-memory radix tree (`cacheBytes`) and optionally a disk
 *   cache (`diskCache`) that survives restarts; with `speculative` too (rows carry MTP latents).
 * - With `apiKey` set (at least 16 visible characters), every route but /health needs
 *   `Authorization: Bearer <key>`. `maxQueue: 0` means no queue bound.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Generation, type Model, type PrefixStore, type FinishReason } from '../infer/generate.js';
import { PrefixCache, prefixRowWidth } from '../infer/prefix-cache.js';
import { StopMatcher } from '../infer/sampling.js';
import { StreamDecoder, type Tokenizer } from '../io/tokenizer.js';
import { ApiError, DEFAULT_CHAT_TEMPLATE, DEFAULT_TEMPLATE_STOPS, parseRequest, usage, type ParsedRequest } from './openai.js';
import { AccessPolicy, checkApiKey, isLoopbackName } from './access.js';
import { ChatTemplateRenderer, type TemplateBudget } from './chat-template-node.js';
import { PLAYGROUND_PATHS, serveUi } from './ui-node.js';

export interface ServerOptions {
  model: Model;
  tokenizer: Tokenizer;
  /** Name reported by /v1/models and accepted in `model` (requests may also omit it). */
  modelName: string;
  host?: string;
  /** 0 = an ephemeral port. */
  port?: number;
  apiKey?: string | null;
  /** In-memory prefix cache budget in bytes (0 disables it). */
  cacheBytes?: number;
  diskCache?: PrefixStore | null;
  /** Jinja chat template (tokenizer_config.json `chat_template`); default DEFAULT_CHAT_TEMPLATE. */
  chatTemplate?: string | null;
  bosToken?: string;
  eosToken?: string;
  maxBodyBytes?: number;
  /** Requests waiting or running before 429 (default 64; 0 = no bound). */
  maxQueue?: number;
  /** Browser origins allowed besides loopback ones (`scheme://host[:port]` or `*`). */
  allowedOrigins?: string[];
  /** Host header names allowed besides loopback names. */
  allowedHosts?: string[];
  /** Limits of one chat-template render (time, output, heap). */
  templateBudget?: Partial<TemplateBudget>;
  /** Most KV-cache bytes one request may allocate (default 2 GiB). */
  maxKvBytes?: number;
  /** Default max_tokens when a request gives none (default 256). */
  defaultMaxTokens?: number;
  speculative?: boolean;
  log?: (msg: string) => void;
  /**
   * Test and tooling hook, awaited before every engine step of a generation: lets a test hold a
   * generation open deterministically (e.g. until its client has gone, or while the queue is
   * full) instead of racing the engine. Not for production use.
   */
  beforeStep?: (job: StepInfo) => void | Promise<void>;
}

/** What `beforeStep` sees of the generation about to step. */
export interface StepInfo { readonly cancelled: boolean; readonly tokens: number }

export interface RunningServer {
  url: string;
  server: http.Server;
  prefixCache: PrefixCache | null;
  /** Stops accepting, cancels in-flight generations, waits for the queue, closes connections. */
  close(): Promise<void>;
}

interface Job { gen: Generation | null; cancelled: boolean }

/** 413; `close` when the body was not read to its end (the connection cannot be reused). */
class BodyTooLarge extends ApiError {
  constructor(maxBody: number, readonly close: boolean) {
    super(413, `request body is over the ${maxBody}-byte limit`, 'invalid_request_error', null, 'request_too_large');
  }
}

/** Starts the server; resolves once it listens. */
export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const { model, tokenizer } = o;
  const maxBody = o.maxBodyBytes ?? 1 << 20;
  const maxQueue = o.maxQueue ?? 64;
  if (!(Number.isInteger(maxQueue) && maxQueue >= 0)) throw new Error(`maxQueue must be an integer >= 0 (0 = no bound), got ${maxQueue}`);
  const apiKey = o.apiKey ? checkApiKey(o.apiKey) : null;
  const host = o.host ?? '127.0.0.1';
  const access = new AccessPolicy({ apiKey, allowedOrigins: o.allowedOrigins ?? [], allowedHosts: o.allowedHosts ?? [], loopback: isLoopbackName(host), openPaths: PLAYGROUND_PATHS });
  const maxKvBytes = o.maxKvBytes ?? 2 ** 31;
  const kvBytesPerToken = 4 * (model.cfg.kvLoraRank + model.cfg.qkRopeHeadDim) * (model.cfg.numHiddenLayers + model.cfg.numNextnPredictLayers);
  const log = o.log ?? ((m: string) => console.error(m));
  const context = model.cfg.maxPositionEmbeddings;
  const cacheBytes = o.cacheBytes ?? 256 * 2 ** 20;
  // Speculative decoding needs MTP layers; its prefix-cache rows also carry the MTP latents.
  const speculative = (o.speculative ?? false) && model.params.mtp.length > 0;
  if (o.speculative && !speculative) log('frugal serve: --speculative ignored: the model has no MTP layers');
  const prefixCache = cacheBytes > 0 ? new PrefixCache(prefixRowWidth(model.cfg, speculative ? 1 : 0), cacheBytes) : null;
  const specTotals = { proposed: 0, accepted: 0 };
  const renderer = new ChatTemplateRenderer(o.chatTemplate ?? DEFAULT_CHAT_TEMPLATE, o.templateBudget);
  const templateStops = o.chatTemplate ? [] : DEFAULT_TEMPLATE_STOPS;
  const created = Math.floor(Date.now() / 1000);
  const active = new Set<Job>();
  let queued = 0;
  let tail: Promise<void> = Promise.resolve();
  let closing = false;
  const counts = { completed: 0, cancelled: 0, errors: 0 };

  /** Runs fn after every earlier job; at most maxQueue jobs wait or run. */
  const enqueue = <T>(fn: () => Promise<T>): Promise<T> => {
    if (maxQueue > 0 && queued >= maxQueue) throw new ApiError(429, `server busy: ${queued} requests queued (limit ${maxQueue}); retry later`, 'rate_limit_error', null, 'queue_full');
    queued++;
    const run = tail.then(fn);
    tail = run.then(() => undefined, () => undefined).finally(() => { queued--; });
    return run;
  };

  const send = (res: http.ServerResponse, status: number, body: unknown): void => {
    if (res.headersSent) { res.end(); return; }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  /**
   * Reads the body up to maxBody bytes. A larger one (declared, or chunked and passing the limit)
   * is read to its end and dropped, then refused with 413, so a client that is still sending reads
   * the 413 instead of a reset. One that goes on past max(16× the limit, 16 MiB) or 10 s is refused
   * at once and its connection closed.
   */
  const readBody = (req: http.IncomingMessage): Promise<unknown> => new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const drainLimit = Math.max(16 * maxBody, 16 * 2 ** 20);
    const chunks: Buffer[] = [];
    let size = 0, over = false, refused = false;
    let timer: NodeJS.Timeout | null = null;
    const refuse = (close: boolean): void => {
      if (refused) return;
      refused = true;
      if (timer) clearTimeout(timer);
      reject(new BodyTooLarge(maxBody, close));
    };
    const tooLarge = (): void => {
      over = true;
      chunks.length = 0;
      timer = setTimeout(() => refuse(true), 10_000);
      if (declared > drainLimit) refuse(true);
    };
    if (declared > maxBody) tooLarge();
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (!over && size > maxBody) tooLarge();
      if (over) { if (size > drainLimit) refuse(true); return; }
      chunks.push(c);
    });
    req.on('error', (e) => { if (!over) reject(e); });
    req.on('end', () => {
      if (over) return refuse(false);
      const text = Buffer.concat(chunks).toString('utf8');
      try { resolve(JSON.parse(text)); } catch (e) { reject(new ApiError(400, `malformed JSON body: ${(e as Error).message}`, 'invalid_request_error', null, 'invalid_json')); }
    });
  });

  const checkModel = (name: string | null): void => {
    if (name !== null && name !== o.modelName) throw new ApiError(404, `model '${name}' does not exist; this server serves '${o.modelName}'`, 'invalid_request_error', 'model', 'model_not_found');
  };

  /** Tokenizes a request's prompt and checks it against the context. */
  const promptIds = async (r: ParsedRequest): Promise<{ ids: number[]; stops: string[] }> => {
    let ids: number[];
    let stops = r.stop;
    if (r.messages) {
      ids = tokenizer.encode(await renderer.render(r.messages, { bos_token: o.bosToken ?? '', eos_token: o.eosToken ?? '' }), { addSpecialTokens: false });
      stops = [...stops, ...templateStops];
    } else if (typeof r.prompt === 'string') ids = tokenizer.encode(r.prompt);
    else {
      ids = r.prompt!;
      const badId = ids.find((t) => t >= model.cfg.vocabSize);
      if (badId !== undefined) throw new ApiError(400, `prompt token ${badId} is outside the vocabulary [0, ${model.cfg.vocabSize})`, 'invalid_request_error', 'prompt', 'invalid_value');
    }
    if (ids.length === 0) throw new ApiError(400, 'prompt is empty after tokenization', 'invalid_request_error', 'prompt', 'invalid_value');
    if (ids.length >= context) throw new ApiError(400, `prompt has ${ids.length} tokens; this model's context is ${context} tokens (prompt plus at least one new token)`, 'invalid_request_error', 'prompt', 'context_length_exceeded');
    const tokens = ids.length + Math.min(r.maxTokens ?? o.defaultMaxTokens ?? 256, context - ids.length) + 2;
    if (tokens * kvBytesPerToken > maxKvBytes) {
      throw new ApiError(400, `prompt plus max_tokens is ${tokens} tokens, ${tokens * kvBytesPerToken} bytes of KV cache, over this server's ${maxKvBytes}-byte limit per request; lower max_tokens`, 'invalid_request_error', 'max_tokens', 'invalid_value');
    }
    return { ids, stops };
  };

  const completion = async (kind: 'chat' | 'completion', req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const r = parseRequest(kind, await readBody(req));
    checkModel(r.model);
    const { ids, stops } = await promptIds(r);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const object = kind === 'chat' ? (r.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
    const job: Job = { gen: null, cancelled: false };
    res.on('close', () => { if (!res.writableFinished) { job.cancelled = true; job.gen?.cancel(); } });
    const sse = (data: unknown): void => { if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`); };
    const chunk = (text: string | null, finish: string | null, role = false): Record<string, unknown> => ({
      id, object, created: Math.floor(Date.now() / 1000), model: o.modelName,
      choices: [kind === 'chat'
        ? { index: 0, delta: finish !== null ? {} : role ? { role: 'assistant', content: '' } : { content: text }, logprobs: null, finish_reason: finish }
        : { index: 0, text: text ?? '', logprobs: null, finish_reason: finish }],
    });
    await enqueue(async () => {
      if (job.cancelled) { counts.cancelled++; return; }
      if (closing) return send(res, 503, new ApiError(503, 'server is shutting down', 'server_error', null, 'shutting_down').body());
      active.add(job);
      try {
        const decoder = new StreamDecoder(tokenizer, { skipSpecialTokens: true });
        const matcher = new StopMatcher(stops);
        let text = '';
        const emit = (s: string): void => { if (!s) return; text += s; if (r.stream) sse(chunk(s, null)); };
        const gen = new Generation(model, ids, {
          ...r.sampling, maxTokens: r.maxTokens ?? o.defaultMaxTokens ?? 256, speculative, vocabLimit: tokenizer.vocabSize,
          stopTokenIds: tokenizer.eosId !== null ? [tokenizer.eosId] : [], prefixCache, prefixStore: o.diskCache ?? null,
          onToken: (t) => { const m = matcher.push(decoder.push(t)); emit(m.emit); return m.stopped; },
        });
        job.gen = gen;
        if (r.stream) {
          res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
          res.flushHeaders(); // the client learns at once that its request runs (before any text)
          if (kind === 'chat') sse(chunk(null, null, true));
        }
        const info: StepInfo = { get cancelled() { return job.cancelled; }, get tokens() { return gen.tokens.length; } };
        while (!gen.done) {
          if (o.beforeStep) await o.beforeStep(info);
          if (job.cancelled) gen.cancel(); else gen.step();
          await new Promise((resolve) => setImmediate(resolve));
        }
        if (gen.finishReason === 'cancelled') { counts.cancelled++; return; }
        counts.completed++;
        if (!matcher.stopped) emit(matcher.push(decoder.flush()).emit + matcher.flush());
        const g = gen.result();
        const finish: Exclude<FinishReason, 'cancelled'> = g.finishReason === 'stop' ? 'stop' : 'length';
        if (g.speculative) { specTotals.proposed += g.speculative.proposed; specTotals.accepted += g.speculative.accepted; }
        const u = usage(ids.length, g.tokens.length, g.cachedTokens, g.speculative);
        if (r.stream) {
          sse(chunk(null, finish));
          if (r.includeUsage) sse({ id, object, created: Math.floor(Date.now() / 1000), model: o.modelName, choices: [], usage: u });
          res.end('data: [DONE]\n\n');
        } else {
          const choice = kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }
            : { index: 0, text, logprobs: null, finish_reason: finish };
          send(res, 200, { id, object, created: Math.floor(Date.now() / 1000), model: o.modelName, choices: [choice], usage: u, system_fingerprint: null });
        }
      } finally {
        active.delete(job);
      }
    });
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    let url: URL;
    try { url = new URL(req.url ?? '/', 'http://localhost'); } catch { throw new ApiError(400, 'malformed request URL'); }
    const origin = access.check(req, url.pathname);
    if (origin) res.setHeader('Access-Control-Allow-Origin', origin).setHeader('Vary', 'Origin');
    if (serveUi(req, res, url.pathname, 'playground')) return; // the chat playground at / (ui-node.ts)
    const known = ['/health', '/v1/models', '/v1/completions', '/v1/chat/completions', '/tokenize', '/detokenize'];
    if (!known.includes(url.pathname)) throw new ApiError(404, `no route ${url.pathname} (routes: ${known.join(', ')})`, 'invalid_request_error', null, 'not_found');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { Allow: 'GET, HEAD, POST, OPTIONS', 'Access-Control-Allow-Methods': 'GET, HEAD, POST, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
      return void res.end();
    }
    const route = `${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /health':
        return send(res, 200, {
          status: 'ok', model: o.modelName, queued, requests: counts, prefix_cache: prefixCache?.stats() ?? null,
          speculative: speculative ? { ...specTotals, acceptance_rate: specTotals.proposed ? specTotals.accepted / specTotals.proposed : null } : null,
        });
      case 'GET /v1/models':
        return send(res, 200, { object: 'list', data: [{ id: o.modelName, object: 'model', created, owned_by: 'frugal', max_model_len: context }] });
      case 'POST /v1/completions':
        return completion('completion', req, res);
      case 'POST /v1/chat/completions':
        return completion('chat', req, res);
      case 'POST /tokenize': {
        const b = await readBody(req) as Record<string, unknown>;
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new ApiError(400, 'request body must be a JSON object');
        for (const k of Object.keys(b)) if (!['model', 'prompt', 'add_special_tokens'].includes(k)) throw new ApiError(400, `unknown field '${k}'`, 'invalid_request_error', k, 'unknown_field');
        checkModel(typeof b.model === 'string' ? b.model : null);
        if (typeof b.prompt !== 'string') throw new ApiError(400, "'prompt' must be a string", 'invalid_request_error', 'prompt', 'invalid_value');
        const tokens = tokenizer.encode(b.prompt, { addSpecialTokens: b.add_special_tokens !== false });
        return send(res, 200, { tokens, count: tokens.length, max_model_len: context });
      }
      case 'POST /detokenize': {
        const b = await readBody(req) as Record<string, unknown>;
        if (!b || typeof b !== 'object' || Array.isArray(b)) throw new ApiError(400, 'request body must be a JSON object');
        for (const k of Object.keys(b)) if (!['model', 'tokens'].includes(k)) throw new ApiError(400, `unknown field '${k}'`, 'invalid_request_error', k, 'unknown_field');
        checkModel(typeof b.model === 'string' ? b.model : null);
        const t = b.tokens;
        if (!Array.isArray(t) || !t.every((x) => Number.isInteger(x) && x >= 0 && x < tokenizer.vocabSize)) {
          throw new ApiError(400, `'tokens' must be an array of token ids in [0, ${tokenizer.vocabSize})`, 'invalid_request_error', 'tokens', 'invalid_value');
        }
        return send(res, 200, { prompt: tokenizer.decode(t as number[]) });
      }
      default:
        throw new ApiError(405, `method ${req.method} is not allowed on ${url.pathname}`, 'invalid_request_error', null, 'method_not_allowed');
    }
  };

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      counts.errors++;
      if (e instanceof ApiError) {
        if (e.status >= 500) log(`serve: ${e.message}`);
        if (e instanceof BodyTooLarge && e.close && !res.headersSent) res.setHeader('Connection', 'close');
        return send(res, e.status, e.body());
      }
      const msg = (e as Error)?.message ?? String(e);
      log(`serve: internal error on ${req.method} ${req.url}: ${(e as Error)?.stack ?? msg}`);
      send(res, 500, new ApiError(500, `internal error: ${msg}`, 'server_error', null, 'internal_error').body());
    });
  });
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${urlHost}:${addr.port}`,
    server,
    prefixCache,
    close: async () => {
      closing = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const j of active) { j.cancelled = true; j.gen?.cancel(); }
      await tail;
      await renderer.close();
      server.closeAllConnections();
      await done;
    },
  };
}
