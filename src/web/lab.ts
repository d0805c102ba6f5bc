/**
 * The `frugal web` page's main thread (bundled to dist/browser/lab.js): UI only — training, model
 * loading, logits and chat run in the engine worker (lab-worker.ts).
 *
 * Contract:
 * - Test hook: `?model=<url>&tokens=1,2,3&backend=webgpu|wasm|ts|auto` loads the model folder at
 *   <url> (relative to the page), runs one forward pass on that backend, and writes
 *   `{"backend": ..., "logits": [[...], ...]}` (one row per position) into #result — or
 *   `{"error": ...}` — and sets `data-done` on it.
 * - Otherwise: the backend select starts the chosen backend; Train fetches /corpus.json and trains
 *   `tiny` (loss curve and samples update as it goes; Stop ends it after the current step); Load
 *   fetches a model folder; Send samples a reply from whichever model was trained or loaded last.
 */
type Msg = Record<string, unknown> & { type: string };

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const worker = new Worker('/lab-worker.js', { type: 'module' });
let waiting: { types: string[]; resolve: (m: Msg) => void; reject: (e: Error) => void } | null = null;
const progress: Record<string, (m: Msg) => void> = {};

worker.onmessage = (e: MessageEvent) => {
  const m = e.data as Msg;
  if (progress[m.type]) { progress[m.type]!(m); return; }
  const w = waiting;
  if (!w) return;
  if (m.type === 'error') { waiting = null; w.reject(new Error(String(m.message))); } else if (w.types.includes(m.type)) { waiting = null; w.resolve(m); }
};
worker.onerror = (e) => { waiting?.reject(new Error(`engine worker failed: ${e.message}`)); waiting = null; };

/** Sends a message to the engine worker; resolves with its answer of one of `types`. */
function request(msg: Msg, types: string[]): Promise<Msg> {
  if (waiting) return Promise.reject(new Error('busy: the engine is still working on the last request'));
  return new Promise((resolve, reject) => { waiting = { types, resolve, reject }; worker.postMessage(msg); });
}

async function testHook(q: URLSearchParams): Promise<void> {
  const out = $('result');
  out.hidden = false;
  try {
    await request({ type: 'backend', choice: q.get('backend') ?? 'auto' }, ['backend']);
    await request({ type: 'load', url: new URL(q.get('model')!, location.href).href }, ['loaded']);
    const tokens = (q.get('tokens') ?? '').split(',').filter((s) => s.trim() !== '').map(Number);
    const r = await request({ type: 'logits', tokens }, ['logits']);
    out.textContent = JSON.stringify({ backend: r.backend, logits: r.logits });
  } catch (e) {
    out.textContent = JSON.stringify({ error: (e as Error).message });
  }
  out.dataset.done = '1';
}

/** Draws the loss curve (raw losses, and an exponential moving average on top). */
function draw(losses: number[]): void {
  const c = $<HTMLCanvasElement>('loss'), g = c.getContext('2d');
  if (!g || losses.length === 0) return;
  const W = c.width, H = c.height, pad = 34;
  const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
  const x = (i: number): number => pad + (W - pad - 8) * (losses.length === 1 ? 0 : i / (losses.length - 1));
  const y = (v: number): number => 8 + (H - pad - 8) * (1 - (v - lo) / span);
  const fg = getComputedStyle(document.body).color;
  g.clearRect(0, 0, W, H);
  g.fillStyle = fg; g.font = '11px system-ui';
  g.fillText(hi.toFixed(2), 2, 14); g.fillText(lo.toFixed(2), 2, H - pad); g.fillText(`step ${losses.length}`, W - 70, H - 8);
  const line = (vals: number[], color: string, width: number): void => {
    g.strokeStyle = color; g.lineWidth = width; g.beginPath();
    vals.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.stroke();
  };
  line(losses, 'rgba(128,140,170,0.45)', 1);
  let ema = losses[0]!;
  line(losses.map((v) => (ema = 0.9 * ema + 0.1 * v)), getComputedStyle(document.documentElement).getPropertyValue('--accent') || '#3559e0', 2);
}

async function setBackend(): Promise<void> {
  const info = $('backend-info');
  info.textContent = 'starting…';
  try {
    const r = await request({ type: 'backend', choice: $<HTMLSelectElement>('backend').value }, ['backend']);
    info.textContent = String(r.describe);
    info.classList.remove('error');
  } catch (e) { info.textContent = (e as Error).message; info.classList.add('error'); }
}

async function train(ev: Event): Promise<void> {
  ev.preventDefault();
  const status = $('train-status'), start = $<HTMLButtonElement>('train-start'), stopBtn = $<HTMLButtonElement>('train-stop');
  const num = (id: string): number => Number($<HTMLInputElement>(id).value);
  const options = { steps: num('steps'), batch: num('batch'), seq: num('seq'), lr: num('lr'), warmup: Math.min(20, Math.max(0, Math.floor(num('steps') / 10))) };
  const stop = new SharedArrayBuffer(4);
  const losses: number[] = [];
  const t0 = performance.now();
  start.disabled = true; stopBtn.disabled = false;
  stopBtn.onclick = () => { Atomics.store(new Int32Array(stop), 0, 1); status.textContent += ' — stopping after this step'; };
  $('samples').replaceChildren();
  progress.tokenizer = (m) => { status.textContent = `tokenizer: byte-level BPE, ${m.vocab} tokens; ${m.tokens} training tokens`; };
  progress.step = (m) => {
    losses.push(Number(m.loss));
    const s = Number(m.step), sec = (performance.now() - t0) / 1000;
    status.textContent = `step ${s}/${options.steps} · loss ${Number(m.loss).toFixed(3)} · ${(s * options.batch * options.seq / sec).toFixed(0)} tok/s`;
    draw(losses);
  };
  progress.sample = (m) => {
    const li = document.createElement('li');
    li.textContent = `step ${m.step} (val ${Number(m.valLoss).toFixed(3)}): ${String(m.text)}`;
    $('samples').append(li);
  };
  try {
    status.textContent = 'fetching the corpus and training the tokenizer…';
    const res = await fetch('/corpus.json');
    if (!res.ok) throw new Error(`GET /corpus.json answered ${res.status}`);
    const docs = await res.json() as string[];
    const r = await request({ type: 'train', docs, options, stop }, ['trained']);
    const L = r.losses as number[];
    status.textContent = `trained ${L.length} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s · final loss ${L[L.length - 1]?.toFixed(3)} — chat with it below`;
    status.dataset.done = String(L.length);
  } catch (e) { status.textContent = (e as Error).message; status.classList.add('error'); }
  finally { start.disabled = false; stopBtn.disabled = true; for (const k of ['tokenizer', 'step', 'sample']) delete progress[k]; }
}

async function load(ev: Event): Promise<void> {
  ev.preventDefault();
  const status = $('load-status');
  status.textContent = 'loading…';
  try {
    const r = await request({ type: 'load', url: new URL($<HTMLInputElement>('model-url').value, location.href).href }, ['loaded']);
    status.textContent = `loaded: ${String(r.summary)}`;
  } catch (e) { status.textContent = (e as Error).message; }
}

async function chat(ev: Event): Promise<void> {
  ev.preventDefault();
  const input = $<HTMLInputElement>('prompt'), box = $('replies');
  const prompt = input.value;
  const you = document.createElement('p'); you.className = 'you'; you.textContent = prompt;
  const reply = document.createElement('p'); reply.dataset.testid = 'chat-reply'; reply.textContent = '…';
  box.append(you, reply);
  try {
    const r = await request({ type: 'chat', prompt, maxTokens: 48, temperature: 0.8, seed: Date.now() % 1e6 }, ['reply']);
    reply.textContent = prompt + String(r.text);
  } catch (e) { reply.textContent = (e as Error).message; reply.classList.add('error'); }
  reply.dataset.done = '1';
}

const q = new URLSearchParams(location.search);
if (q.has('model')) void testHook(q);
else {
  $('backend').addEventListener('change', () => void setBackend());
  $('train-form').addEventListener('submit', (e) => void train(e));
  $('load-form').addEventListener('submit', (e) => void load(e));
  $('chat-form').addEventListener('submit', (e) => void chat(e));
  void setBackend();
}
