// @ts-check
/**
 * The chat playground page served by `frugal serve` at / (browser ES module): a conversation with
 * the served model through /v1/chat/completions, streamed, with the sampling settings, and under
 * each reply the usage the server reports — DeepSeek's prompt_cache_hit_tokens / miss, prompt and
 * completion tokens — plus time to first token and decode tokens/s measured in the page.
 *
 * Contract:
 * - Replies are rendered as text (textContent), never as HTML.
 * - Each reply element `[data-testid=chat-reply]` grows as content deltas arrive; its
 *   `data-chunks` counts them and `data-done` is set when the stream ended (`finish_reason`).
 * - Time to first token: from sending the request to the first content delta. Tokens/s:
 *   (completion tokens − 1) ÷ time from the first to the last delta (the first token's time is
 *   prefill, counted in TTFT).
 * - `#server-status` says `stopped` as soon as /health stops answering (polled every 3 s) or a
 *   stream breaks; `connected` again once it answers.
 */
import { api, byId, el, fmtNum, KeyNeeded, readSse, setupKeyForm } from './common.js';

/** @typedef {{ role: 'system' | 'user' | 'assistant', content: string }} Message */

/** @type {Message[]} */
let history = [];
/** @type {AbortController | null} */
let inFlight = null;
let model = '';

const messages = byId('messages'), input = byId('chat-input', HTMLTextAreaElement), form = byId('chat-form', HTMLFormElement);
const sendBtn = byId('chat-send', HTMLButtonElement), stopBtn = byId('chat-stop', HTMLButtonElement), statusEl = byId('server-status');

/** @param {'connected' | 'stopped' | 'busy' | 'connecting'} state @param {string} text */
function setStatus(state, text) {
  statusEl.dataset.state = state;
  statusEl.textContent = text;
}

/** Polls /health (open without a key) and /v1/models (the served name). */
async function checkServer() {
  try {
    const res = await fetch('/health', { cache: 'no-store' });
    if (!res.ok) throw new Error(String(res.status));
    const h = await res.json();
    model = String(h.model ?? model);
    byId('model-name').textContent = model || '?';
    const c = h.prefix_cache;
    const cache = c && typeof c === 'object' ? ` · prefix cache ${fmtNum(Number(c.tokens ?? 0), 4)} tokens (${fmtNum(Number(c.bytes ?? 0) / 2 ** 20, 3)} MiB)` : '';
    if (!inFlight) setStatus('connected', `● connected · ${h.requests?.completed ?? 0} requests served${cache}`);
  } catch {
    setStatus('stopped', '■ server stopped — no answer from this address (start it again with `npx frugal serve`; the page reconnects by itself)');
  }
}

/** @param {string} role @param {string} text */
function addBubble(role, text) {
  byId('empty-hint').hidden = true;
  const art = el('article', { class: `msg ${role}` });
  art.append(el('h3', { class: 'sr-only' }, role === 'user' ? 'You' : 'Model'));
  const body = el('div', { class: 'text', ...(role === 'assistant' ? { 'data-testid': 'chat-reply', 'data-chunks': '0' } : {}) }, text);
  art.append(body);
  messages.append(art);
  art.scrollIntoView({ block: 'end' });
  return { art, body };
}

/** The sampling fields of a request, from the settings form. */
function sampling() {
  const num = (/** @type {string} */ id) => { const v = byId(id, HTMLInputElement).value.trim(); return v === '' ? null : Number(v); };
  /** @type {Record<string, number>} */
  const s = {};
  const t = num('temperature'), p = num('top-p'), k = num('top-k'), m = num('max-tokens'), seed = num('seed');
  if (t !== null) s.temperature = t;
  if (p !== null) s.top_p = p;
  if (k !== null && k > 0) s.top_k = Math.round(k);
  if (m !== null) s.max_tokens = Math.round(m);
  if (seed !== null) s.seed = Math.round(seed);
  return s;
}

/** Sends the conversation plus `text`, streaming the reply into a new bubble. @param {string} text */
async function send(text) {
  const system = byId('system', HTMLTextAreaElement).value.trim();
  history.push({ role: 'user', content: text });
  addBubble('user', text);
  const { art, body } = addBubble('assistant', '');
  body.classList.add('streaming');
  const stats = el('dl', { class: 'stats' });
  art.append(stats);
  const ctl = new AbortController();
  inFlight = ctl;
  sendBtn.disabled = true; stopBtn.disabled = false;
  setStatus('busy', '● generating…');
  const t0 = performance.now();
  let first = 0, lastAt = 0, reply = '', chunks = 0, finish = '', /** @type {Record<string, any> | null} */ usage = null;
  try {
    const res = await api('/v1/chat/completions', {
      method: 'POST', signal: ctl.signal, headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...(model ? { model } : {}), messages: [...(system ? [{ role: 'system', content: system }] : []), ...history], stream: true, stream_options: { include_usage: true }, ...sampling() }),
    });
    await readSse(res, (_name, data) => {
      if (data === '[DONE]') return;
      const chunk = JSON.parse(data);
      if (chunk.usage) usage = chunk.usage;
      const choice = chunk.choices?.[0];
      if (!choice) return;
      if (typeof choice.delta?.content === 'string' && choice.delta.content) {
        lastAt = performance.now();
        if (!first) first = lastAt;
        reply += choice.delta.content;
        body.textContent = reply;
        body.dataset.chunks = String(++chunks);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
  } catch (e) {
    const aborted = ctl.signal.aborted;
    finish = aborted ? 'stopped by you' : e instanceof KeyNeeded ? 'API key needed' : `error: ${/** @type {Error} */ (e).message}`;
    if (!aborted && !(e instanceof KeyNeeded)) void checkServer();
  } finally {
    inFlight = null;
    sendBtn.disabled = false; stopBtn.disabled = true;
  }
  body.classList.remove('streaming');
  body.dataset.done = finish || 'ended';
  history.push({ role: 'assistant', content: reply });
  const u = /** @type {Record<string, any>} */ (usage ?? {});
  const ttft = first ? first - t0 : NaN;
  const completion = Number(u.completion_tokens ?? chunks);
  const tps = completion > 1 && lastAt > first ? ((completion - 1) * 1000) / (lastAt - first) : NaN;
  const facts = [
    ['cache hit', u.prompt_cache_hit_tokens, 'cache-hit-tokens'], ['miss', u.prompt_cache_miss_tokens, 'cache-miss-tokens'],
    ['prompt', u.prompt_tokens, 'prompt-tokens'], ['completion', u.completion_tokens, 'completion-tokens'],
    ['TTFT', Number.isFinite(ttft) ? `${Math.round(ttft)} ms` : '–', 'ttft'], ['decode', Number.isFinite(tps) ? `${fmtNum(tps, 3)} tok/s` : '–', 'tokens-per-sec'],
    ['finish', finish || '–', 'finish-reason'],
  ];
  stats.replaceChildren(...facts.flatMap(([k, v, id]) => [el('dt', {}, String(k)), el('dd', { 'data-testid': String(id) }, v === undefined || v === null ? '–' : String(v))]));
  if (!statusEl.dataset.state || statusEl.dataset.state === 'busy') void checkServer();
  input.focus();
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = input.value.trim();
  if (!text || inFlight) return;
  input.value = '';
  void send(text);
});
input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); form.requestSubmit(); }
});
stopBtn.addEventListener('click', () => inFlight?.abort());
byId('chat-new').addEventListener('click', () => {
  inFlight?.abort();
  history = [];
  messages.replaceChildren(messages.firstElementChild ?? el('p'));
  byId('empty-hint').hidden = false;
  input.focus();
});
setupKeyForm(() => input.focus());
void checkServer();
setInterval(() => { if (!inFlight) void checkServer(); }, 3000);
input.focus();
