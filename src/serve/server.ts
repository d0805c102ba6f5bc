/**
 * OpenAI-compatible HTTP server on node:http. Routes: POST /v1/chat/completions, POST
 * /v1/completions (both with SSE `stream: true` ending in `data: [DONE]`, and
 * `stream_options.include_usage`), GET /v1/models, POST /tokenize, POST /detokenize, GET /health,
 * and the chat playground page at GET / (static files, src/serve/ui-node.ts; no key needed).
 *
 * Contract:
 * - Continuous batching (src/infer/scheduler.ts): up to `maxBatch` requests run together, every
 *   running request's next token in one batched decode step; new requests join between steps and
 *   finished or cancelled ones leave at once. At most `maxQueue` requests wait or run (429
 *   `queue_full` beyond). Between steps the server yields to the event loop, so /health, new
 *   requests and SSE writes proceed; a client that disconnects cancels its generation at once.
 * - Latent-cache memory is a block pool (`kvBytes`, src/infer/kv-blocks.ts) shared by running
 *   requests and the prefix cache: a request is admitted when its worst case (prompt + max_tokens)
 *   can be reserved, else it waits, up to `kvWaitMs`, then gets 503 `kv_cache_full` (Retry-After);
 *   one larger than the whole pool is a 400. Memory never grows past the pool.
 * - A request's answer does not depend on what else runs (the scheduler's contract).
 * - GET /metrics: Prometheus text (batch size, queue, tokens/s, KV blocks, prefix cache).
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
 * - With `apiKey` set (at least 16 visible characters), every route but /health (/metrics included) needs
 *   `Authorization: Bearer <key>`. `maxQueue: 0` means no queue bound.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { kvTokensNeeded, type GenerateResult, type Model, type PrefixStore, type FinishReason } from '../infer/generate.js';
import { Scheduler, KvFullError, type Sequence } from '../infer/scheduler.js';
import { KvBlockPool } from '../infer/kv-blocks.js';
import { Histogram, TokenRate, prometheusText } from './metrics.js';
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
  /** Most requests decoded together in one batched step (default 16). */
  maxBatch?: number;
  /** Latent KV cache bytes for running requests and the prefix cache together (default 2 GiB + cacheBytes). */
  kvBytes?: number;
  /** Positions per KV block (default 16). */
  kvBlockTokens?: number;
  /** How long a request may wait for KV blocks before 503 kv_cache_full (default 30 000 ms; 0 = answer at once). */
  kvWaitMs?: number;
  /** Prompt positions prefilled per engine step (default 256: one chunk). */
  prefillTokens?: number;
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
   * Test and tooling hook, awaited before every engine step once for each request waiting or
   * running: lets a test hold the engine deterministically (e.g. until a client has gone, the
   * queue is full, or a whole batch has arrived) instead of racing it. Not for production use.
   */
  beforeStep?: (job: StepInfo) => void | Promise<void>;
}

/** What `beforeStep` sees of a request before an engine step. */
export interface StepInfo { readonly cancelled: boolean; readonly tokens: number; readonly state: 'waiting' | 'running' | 'done' }

export interface RunningServer {
  url: string;
  server: http.Server;
  prefixCache: PrefixCache | null;
  scheduler: Scheduler;
  kvPool: KvBlockPool;
  /** Stops accepting, cancels in-flight generations, waits for the queue, closes connections. */
  close(): Promise<void>;
}

interface Job { seq: Sequence; cancelled: boolean; info: StepInfo }

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
  const kvPool = new KvBlockPool({ cfg: model.cfg, totalBytes: o.kvBytes ?? 2 ** 31 + cacheBytes, blockTokens: o.kvBlockTokens ?? 16, extraLayers: speculative ? 1 : 0 });
  if (prefixCache) kvPool.attachPrefixCache(prefixCache, cacheBytes);
  const kvWaitMs = o.kvWaitMs ?? 30_000;
  if (!(kvWaitMs >= 0)) throw new Error(`kvWaitMs must be >= 0, got ${kvWaitMs}`);
  const sched = new Scheduler(model, { maxBatch: o.maxBatch ?? 16, pool: kvPool, prefixCache, prefixStore: o.diskCache ?? null, speculative, prefillTokens: o.prefillTokens ?? 256 });
  const rate = new TokenRate();
  const rejected = { queueFull: 0, kvFull: 0 };
  const ttftHist = new Histogram(), latencyHist = new Histogram();
  const specTotals = { proposed: 0, accepted: 0 };
  const renderer = new ChatTemplateRenderer(o.chatTemplate ?? DEFAULT_CHAT_TEMPLATE, o.templateBudget);
  const templateStops = o.chatTemplate ? [] : DEFAULT_TEMPLATE_STOPS;
  const created = Math.floor(Date.now() / 1000);
  const jobs = new Set<Job>();
  let closing = false;
  const counts = { completed: 0, cancelled: 0, errors: 0 };

  /** The engine loop: steps the scheduler while anything waits or runs, yielding between steps. */
  let engine: Promise<void> | null = null;
  const yieldNow = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  const runEngine = async (): Promise<void> => {
    try {
      while (sched.busy) {
        if (o.beforeStep) for (const j of [...jobs]) if (j.seq.state !== 'done') await o.beforeStep(j.info);
        // New first tokens go out before the decode passes (their clients' TTFT skips them), and
        // between passes newcomers are admitted and prefilled: one waits for a pass, not a step.
        if (sched.stepPrefill() > 0) await yieldNow();
        while (!sched.decodePass()) {
          await yieldNow();
          if (sched.waitingCount > 0 && sched.stepPrefill() > 0) await yieldNow();
        }
        rate.note(performance.now(), sched.stats().generatedTokens);
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      log(`serve: engine error: ${(e as Error)?.stack ?? String(e)}`);
      for (const s of sched.live()) sched.cancel(s);
    } finally { engine = null; }
  };
  const kick = (): void => {
    if (engine) return;
    rate.note(performance.now(), sched.stats().generatedTokens);
    engine = runEngine();
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
    const tokens = kvTokensNeeded(model.cfg, ids.length, r.maxTokens ?? o.defaultMaxTokens ?? 256);
    if (tokens * kvBytesPerToken > maxKvBytes) {
      throw new ApiError(400, `prompt plus max_tokens is ${tokens} tokens, ${tokens * kvBytesPerToken} bytes of KV cache, over this server's ${maxKvBytes}-byte limit per request; lower max_tokens`, 'invalid_request_error', 'max_tokens', 'invalid_value');
    }
    return { ids, stops };
  };

  /** The 503 for a request that found no KV blocks (counted; Retry-After set). */
  const kvFull = (res: http.ServerResponse, e: KvFullError): ApiError => {
    rejected.kvFull++;
    if (!res.headersSent) res.setHeader('Retry-After', '1');
    return new ApiError(503, `${e.message}; the server's KV cache is in use by other requests: retry later or lower max_tokens`, 'server_error', null, 'kv_cache_full');
  };

  const completion = async (kind: 'chat' | 'completion', req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const arrived = performance.now();
    const r = parseRequest(kind, await readBody(req));
    checkModel(r.model);
    const { ids, stops } = await promptIds(r);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '').slice(0, 24)}`;
    const object = kind === 'chat' ? (r.stream ? 'chat.completion.chunk' : 'chat.completion') : 'text_completion';
    if (closing) throw new ApiError(503, 'server is shutting down', 'server_error', null, 'shutting_down');
    const queued = jobs.size;
    if (maxQueue > 0 && queued >= maxQueue) {
      rejected.queueFull++;
      throw new ApiError(429, `server busy: ${queued} requests queued or running (limit ${maxQueue}); retry later`, 'rate_limit_error', null, 'queue_full');
    }
    const sse = (data: unknown): void => { if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`); };
    const chunk = (text: string | null, finish: string | null, role = false): Record<string, unknown> => ({
      id, object, created: Math.floor(Date.now() / 1000), model: o.modelName,
      choices: [kind === 'chat'
        ? { index: 0, delta: finish !== null ? {} : role ? { role: 'assistant', content: '' } : { content: text }, logprobs: null, finish_reason: finish }
        : { index: 0, text: text ?? '', logprobs: null, finish_reason: finish }],
    });
    const decoder = new StreamDecoder(tokenizer, { skipSpecialTokens: true });
    const matcher = new StopMatcher(stops);
    let text = '';
    const emit = (s: string): void => { if (!s) return; text += s; if (r.stream) sse(chunk(s, null)); };
    let seq: Sequence, firstToken = false;
    try {
      seq = sched.submit(ids, {
        ...r.sampling, maxTokens: r.maxTokens ?? o.defaultMaxTokens ?? 256, vocabLimit: tokenizer.vocabSize,
        stopTokenIds: tokenizer.eosId !== null ? [tokenizer.eosId] : [],
        onToken: (t) => {
          if (!firstToken) { firstToken = true; ttftHist.observe((performance.now() - arrived) / 1000); }
          const m = matcher.push(decoder.push(t)); emit(m.emit); return m.stopped;
        },
      }, kvWaitMs);
    } catch (e) {
      if (e instanceof RangeError) throw new ApiError(400, `${e.message}; lower max_tokens`, 'invalid_request_error', 'max_tokens', 'invalid_value');
      if (e instanceof KvFullError) throw kvFull(res, e);
      throw e;
    }
    const job: Job = { seq, cancelled: false, info: { get cancelled() { return job.cancelled; }, get tokens() { return seq.tokens; }, get state() { return seq.state; } } };
    jobs.add(job);
    res.on('close', () => { if (!res.writableFinished) { job.cancelled = true; sched.cancel(seq); } });
    seq.onStart = (): void => {
      if (!r.stream || res.destroyed) return;
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
      res.flushHeaders(); // the client learns at once that its request runs (before any text)
      if (kind === 'chat') sse(chunk(null, null, true));
    };
    kick();
    let g: GenerateResult;
    try {
      g = await seq.finished;
    } catch (e) {
      if (e instanceof KvFullError) throw kvFull(res, e);
      throw e;
    } finally {
      jobs.delete(job);
    }
    if (g.finishReason === 'cancelled') {
      counts.cancelled++;
      if (closing && !res.headersSent) return send(res, 503, new ApiError(503, 'server is shutting down', 'server_error', null, 'shutting_down').body());
      if (!res.writableEnded) res.end();
      return;
    }
    counts.completed++;
    latencyHist.observe((performance.now() - arrived) / 1000);
    if (!matcher.stopped) emit(matcher.push(decoder.flush()).emit + matcher.flush());
    const finish: Exclude<FinishReason, 'cancelled'> = g.finishReason === 'stop' ? 'stop' : 'length';
    if (g.speculative) { specTotals.proposed += g.speculative.proposed; specTotals.accepted += g.speculative.accepted; }
    const u = usage(ids.length, g.tokens.length, g.cachedTokens, g.speculative);
    if (r.stream) {
      if (!res.headersSent) seq.onStart?.();
      sse(chunk(null, finish));
      if (r.includeUsage) sse({ id, object, created: Math.floor(Date.now() / 1000), model: o.modelName, choices: [], usage: u });
      res.end('data: [DONE]\n\n');
    } else {
      const choice = kind === 'chat'
        ? { index: 0, message: { role: 'assistant', content: text }, logprobs: null, finish_reason: finish }
        : { index: 0, text, logprobs: null, finish_reason: finish };
      send(res, 200, { id, object, created: Math.floor(Date.now() / 1000), model: o.modelName, choices: [choice], usage: u, system_fingerprint: null });
    }
  };

  /** Everything /metrics and /health report about the engine. */
  const snapshot = () => {
    const engineStats = sched.stats();
    return { engine: engineStats, tokensPerSecond: rate.rate(performance.now(), engineStats.generatedTokens), kv: kvPool.stats(), prefix: prefixCache?.stats() ?? null, requests: counts, rejected, ttft: ttftHist, latency: latencyHist };
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    let url: URL;
    try { url = new URL(req.url ?? '/', 'http://localhost'); } catch { throw new ApiError(400, 'malformed request URL'); }
    const origin = access.check(req, url.pathname);
    if (origin) res.setHeader('Access-Control-Allow-Origin', origin).setHeader('Vary', 'Origin');
    if (serveUi(req, res, url.pathname, 'playground')) return; // the chat playground at / (ui-node.ts)
    const known = ['/health', '/metrics', '/v1/models', '/v1/completions', '/v1/chat/completions', '/tokenize', '/detokenize'];
    if (!known.includes(url.pathname)) throw new ApiError(404, `no route ${url.pathname} (routes: ${known.join(', ')})`, 'invalid_request_error', null, 'not_found');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { Allow: 'GET, HEAD, POST, OPTIONS', 'Access-Control-Allow-Methods': 'GET, HEAD, POST, OPTIONS', 'Access-Control-Allow-Headers': 'Authorization, Content-Type', 'Access-Control-Max-Age': '600' });
      return void res.end();
    }
    const route = `${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /health': {
        const m = snapshot();
        return send(res, 200, {
          status: 'ok', model: o.modelName, queued: jobs.size, requests: counts, prefix_cache: m.prefix,
          engine: {
            running: m.engine.running, waiting: m.engine.waiting, batch: m.engine.lastBatch, peak_batch: m.engine.peakBatch, max_batch: m.engine.maxBatch,
            tokens_per_s: Math.round(m.tokensPerSecond * 10) / 10, generated_tokens: m.engine.generatedTokens, rejected: { queue_full: rejected.queueFull, kv_cache_full: rejected.kvFull },
          },
          kv_cache: { block_tokens: m.kv.blockTokens, block_bytes: m.kv.blockBytes, total_blocks: m.kv.totalBlocks, reserved_blocks: m.kv.reservedBlocks, allocated_blocks: m.kv.allocatedBlocks, prefix_blocks: m.kv.prefixBlocks, free_blocks: m.kv.freeBlocks },
          speculative: speculative ? { ...specTotals, acceptance_rate: specTotals.proposed ? specTotals.accepted / specTotals.proposed : null } : null,
        });
      }
      case 'GET /metrics': {
        const text = prometheusText(snapshot());
        res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
        return void res.end(req.method === 'HEAD' ? undefined : text);
      }
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
    scheduler: sched,
    kvPool,
    close: async () => {
      closing = true;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const j of [...jobs]) { j.cancelled = true; sched.cancel(j.seq); }
      await Promise.allSettled([...jobs].map((j) => j.seq.finished));
      await engine;
      await renderer.close();
      server.closeAllConnections();
      await done;
    },
  };
}
