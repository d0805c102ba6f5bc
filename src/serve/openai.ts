/**
 * The OpenAI API surface of the server, without the HTTP: request validation for
 * `/v1/completions` and `/v1/chat/completions` (unknown fields, wrong types and unsupported values
 * are errors naming the field), chat rendering through the model's Jinja chat template (or the
 * documented default), and the error/usage JSON shapes (OpenAI's, plus DeepSeek's cache fields).
 */
import { Template } from '@huggingface/jinja';
import type { SamplingOptions } from '../infer/sampling.js';

/** An error that becomes an HTTP response in OpenAI's error shape. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type = 'invalid_request_error', readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }
  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/**
 * Default chat template when tokenizer_config.json has none: one block per message,
 * `<|role|>\ncontent\n`, then `<|assistant|>\n` for the reply; generation also stops at `<|user|>`.
 */
export const DEFAULT_CHAT_TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";
export const DEFAULT_TEMPLATE_STOPS = ['<|user|>', '<|system|>'];

export interface ChatMessage { role: string; content: string }

/** What a validated request asks the engine for. */
export interface ParsedRequest {
  model: string | null;
  /** Chat: the messages; completions: the prompt text or token ids. */
  messages: ChatMessage[] | null;
  prompt: string | number[] | null;
  maxTokens: number | null;
  sampling: SamplingOptions;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
}

type Kind = 'chat' | 'completion';
const COMMON = ['model', 'max_tokens', 'temperature', 'top_p', 'top_k', 'seed', 'stop', 'stream', 'stream_options', 'n', 'user',
  'frequency_penalty', 'presence_penalty', 'logprobs', 'logit_bias'];
const FIELDS: Record<Kind, Set<string>> = {
  chat: new Set([...COMMON, 'messages', 'max_completion_tokens', 'top_logprobs', 'response_format']),
  completion: new Set([...COMMON, 'prompt', 'echo', 'suffix', 'best_of']),
};

const bad = (param: string, message: string): ApiError => new ApiError(400, message, 'invalid_request_error', param, 'invalid_value');
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function num(o: Record<string, unknown>, k: string, lo: number, hi: number, int = false): number | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (int && !Number.isInteger(v))) throw bad(k, `'${k}' must be ${int ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`);
  if (v < lo || v > hi) throw bad(k, `'${k}' must be between ${lo} and ${hi}, got ${v}`);
  return v;
}

/** Validates a request body; throws ApiError (400) naming the field at fault. */
export function parseRequest(kind: Kind, body: unknown): ParsedRequest {
  if (!isObj(body)) throw new ApiError(400, 'request body must be a JSON object', 'invalid_request_error', null, 'invalid_json');
  for (const k of Object.keys(body)) if (!FIELDS[kind].has(k)) throw new ApiError(400, `unknown field '${k}'`, 'invalid_request_error', k, 'unknown_field');
  const model = body.model;
  if (model !== undefined && typeof model !== 'string') throw bad('model', "'model' must be a string");
  const n = num(body, 'n', 1, 1, true);
  void n;
  for (const k of ['frequency_penalty', 'presence_penalty']) if (num(body, k, -2, 2)) throw bad(k, `'${k}' is not supported (only 0)`);
  for (const k of ['logprobs', 'top_logprobs', 'logit_bias', 'echo', 'suffix', 'best_of', 'response_format']) {
    const v = body[k];
    if (v !== undefined && v !== null && v !== false && !(k === 'best_of' && v === 1) && !(k === 'response_format' && isObj(v) && v.type === 'text')) throw bad(k, `'${k}' is not supported by this server`);
  }
  if (body.user !== undefined && typeof body.user !== 'string') throw bad('user', "'user' must be a string");
  const maxTokens = num(body, 'max_tokens', 0, 1e9, true) ?? (kind === 'chat' ? num(body, 'max_completion_tokens', 0, 1e9, true) : undefined) ?? null;
  const sampling: SamplingOptions = {};
  const t = num(body, 'temperature', 0, 2); if (t !== undefined) sampling.temperature = t;
  const p = num(body, 'top_p', 0, 1); if (p !== undefined) { if (p === 0) throw bad('top_p', "'top_p' must be > 0"); sampling.topP = p; }
  const k = num(body, 'top_k', -1, 1e9, true); if (k !== undefined && k > 0) sampling.topK = k;
  const s = num(body, 'seed', -(2 ** 53), 2 ** 53, true); if (s !== undefined) sampling.seed = s;
  let stop: string[] = [];
  if (typeof body.stop === 'string') stop = [body.stop];
  else if (Array.isArray(body.stop)) {
    if (body.stop.length > 4 || !body.stop.every((x) => typeof x === 'string' && x.length > 0)) throw bad('stop', "'stop' must be a string or up to 4 non-empty strings");
    stop = body.stop as string[];
  } else if (body.stop !== undefined && body.stop !== null) throw bad('stop', "'stop' must be a string or an array of strings");
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw bad('stream', "'stream' must be a boolean");
  const stream = body.stream === true;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    const so = body.stream_options;
    if (!isObj(so) || Object.keys(so).some((x) => x !== 'include_usage') || (so.include_usage !== undefined && typeof so.include_usage !== 'boolean')) throw bad('stream_options', "'stream_options' must be { include_usage?: boolean }");
    if (!stream) throw bad('stream_options', "'stream_options' is only allowed with stream: true");
    includeUsage = so.include_usage === true;
  }
  const out: ParsedRequest = { model: (model as string | undefined) ?? null, messages: null, prompt: null, maxTokens, sampling, stop, stream, includeUsage };
  if (kind === 'chat') out.messages = parseMessages(body.messages);
  else out.prompt = parsePrompt(body.prompt);
  return out;
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw bad('messages', "'messages' must be a non-empty array of { role, content }");
  return v.map((m, i) => {
    if (!isObj(m) || typeof m.role !== 'string' || !['system', 'user', 'assistant', 'developer', 'tool'].includes(m.role)) throw bad(`messages[${i}].role`, `messages[${i}].role must be one of system, user, assistant, developer, tool`);
    let content: string;
    if (typeof m.content === 'string') content = m.content;
    else if (Array.isArray(m.content) && m.content.every((p) => isObj(p) && p.type === 'text' && typeof p.text === 'string')) content = (m.content as { text: string }[]).map((p) => p.text).join('');
    else if (m.content === null && m.role === 'assistant') content = '';
    else throw bad(`messages[${i}].content`, `messages[${i}].content must be a string or an array of text parts`);
    return { role: m.role === 'developer' ? 'system' : m.role, content };
  });
}

function parsePrompt(v: unknown): string | number[] {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'string') return v[0];
  if (Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x) && (x as number) >= 0)) return v as number[];
  throw bad('prompt', "'prompt' must be a string or an array of token ids (one prompt per request)");
}

/** Renders messages with a Jinja chat template (HF `apply_chat_template` variables). */
export function renderChat(template: string, messages: ChatMessage[], vars: { bos_token?: string; eos_token?: string } = {}): string {
  let t: Template;
  try { t = new Template(template); } catch (e) { throw new ApiError(500, `chat template does not parse: ${(e as Error).message}`, 'server_error'); }
  try {
    return t.render({ messages, add_generation_prompt: true, bos_token: vars.bos_token ?? '', eos_token: vars.eos_token ?? '' });
  } catch (e) {
    throw new ApiError(400, `chat template rejected the messages: ${(e as Error).message}`, 'invalid_request_error', 'messages');
  }
}

/**
 * Usage object with OpenAI's and DeepSeek's cache fields (hit + miss = prompt_tokens), and with
 * speculative decoding its MTP drafts: proposed, accepted and the acceptance rate.
 */
export function usage(promptTokens: number, completionTokens: number, cachedTokens: number, spec?: { proposed: number; accepted: number } | null): Record<string, unknown> {
  return {
    prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens,
    prompt_cache_hit_tokens: cachedTokens, prompt_cache_miss_tokens: promptTokens - cachedTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
    ...(spec ? { speculative: { proposed: spec.proposed, accepted: spec.accepted, acceptance_rate: spec.proposed ? spec.accepted / spec.proposed : null } } : {}),
  };
}
