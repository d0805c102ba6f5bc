// @ts-check
/**
 * Shared by the dashboard and the playground (browser ES module, served as is from the package):
 * element lookup, API calls with the optional API key, a Server-Sent-Events reader over fetch
 * (EventSource cannot send an Authorization header), and number formatting.
 *
 * Contract:
 * - The API key lives in sessionStorage only (gone when the tab closes), taken from the page's key
 *   form or from a `#key=...` fragment (never sent to a server in a URL); every API call sends it
 *   as `Authorization: Bearer`. A 401 shows the key form.
 * - Text from the server is always set with textContent, never parsed as HTML.
 */

/**
 * The element with this id (throws when the page lacks it: a page/script mismatch).
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} [type]
 * @returns {T}
 */
export function byId(id, type) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page has no #${id}`);
  if (type && !(el instanceof type)) throw new Error(`#${id} is not a ${type.name}`);
  return /** @type {T} */ (el);
}

/**
 * A new element with attributes and text.
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {string} [text]
 */
export function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const KEY = 'frugal-api-key';
const fragmentKey = /^#key=(.+)$/.exec(location.hash);
if (fragmentKey?.[1]) {
  sessionStorage.setItem(KEY, decodeURIComponent(fragmentKey[1]));
  history.replaceState(null, '', location.pathname + location.search); // keep the key out of the address bar
}

/** Wires the page's key form (#key-form with #key-input); `onKey` runs after a key is entered. */
export function setupKeyForm(/** @type {() => void} */ onKey) {
  const form = byId('key-form', HTMLFormElement), input = byId('key-input', HTMLInputElement);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    input.value = '';
    form.hidden = true;
    onKey();
  });
}

/** Shows the key form (after a 401). */
export function askForKey() {
  const form = byId('key-form', HTMLFormElement);
  form.hidden = false;
  byId('key-input', HTMLInputElement).focus();
}

/** Thrown for a 401: the page asks for the key. */
export class KeyNeeded extends Error {}

/**
 * fetch with the stored API key; a 401 shows the key form and throws KeyNeeded; other non-2xx
 * responses throw an Error carrying the server's message.
 * @param {string} url
 * @param {RequestInit} [init]
 */
export async function api(url, init = {}) {
  const key = sessionStorage.getItem(KEY);
  const headers = new Headers(init.headers);
  if (key) headers.set('Authorization', `Bearer ${key}`);
  const res = await fetch(url, { ...init, headers });
  if (res.status === 401) { askForKey(); throw new KeyNeeded('this server needs an API key'); }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).error?.message ?? msg; } catch { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

/**
 * Reads a text/event-stream body, calling onEvent(name, data) per event (name 'message' when the
 * event has none). Resolves when the stream ends; rejects when it breaks.
 * @param {Response} res
 * @param {(name: string, data: string) => void} onEvent
 */
export async function readSse(res, onEvent) {
  if (!res.body) throw new Error('response has no body');
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', name = 'message', data = /** @type {string[]} */ ([]);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length) onEvent(name, data.join('\n'));
        name = 'message'; data = [];
      } else if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
  }
}

/** @param {number} x @param {number} [digits] */
export function fmtNum(x, digits = 3) {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return x.toExponential(Math.max(0, digits - 1));
  return Number(x.toPrecision(digits)).toLocaleString('en-US', { maximumFractionDigits: 6 });
}

/** @param {number} usd */
export function fmtUsd(usd) {
  if (!Number.isFinite(usd)) return '–';
  return usd >= 0.01 ? `$${usd.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}` : `$${usd.toExponential(2)}`;
}

/** @param {number} seconds */
export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

/** @param {number} bytes */
export function fmtBytes(bytes) {
  if (!Number.isFinite(bytes)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = bytes;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
