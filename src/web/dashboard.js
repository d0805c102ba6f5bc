// @ts-check
/**
 * The training dashboard page (browser ES module). Reads /api/stream (Server-Sent Events over
 * fetch, so an API key can be sent) and redraws: loss of every run overlaid (log scale on
 * request), learning rate, tokens/s, MFU, cost so far and projected, one expert-load heatmap and
 * one gate-bias heatmap per MoE layer, MaxVio, FP8 statistics (FP8 runs), samples, config.
 *
 * Contract:
 * - `#run-status` (data-testid run-status) always says what is known: `data-state` is the run's
 *   state (running, finished, interrupted, failed, stopped, unknown) or `disconnected` when the
 *   dashboard server itself is gone (the page retries every 2 s and says so).
 * - Each loss polyline holds one point per logged step of its run (see chart.js for thinning).
 * - `#expert-heatmap` holds one `[data-testid=heatmap-layer]` per MoE layer of the selected run,
 *   one column per logged step (`data-steps`; beyond MAX_HEAT_COLUMNS, evenly spaced steps).
 * - Redraws are batched to one per animation frame.
 */
import { api, byId, el, fmtBytes, fmtDuration, fmtNum, fmtUsd, KeyNeeded, readSse, setupKeyForm } from './common.js';
import { diverging, heatmap, lineChart } from './chart.js';

/**
 * @typedef {{ layers: number[], group: number, load: number[][], maxVio: number[], bias: (number[] | null)[], omittedLayers?: number }} Moe
 * @typedef {{ step: number, loss?: number | null, valLoss?: number | null, lr?: number, tokensPerSec?: number, mfu?: number, maxVio?: number, tokensSeen?: number, usd?: number, elapsedSec?: number, sample?: string, moe?: Moe, fp8?: { intervalMs: number, quantizeMs: number, gemmMs: number, actPeakBytes: number, weightsQuantized: number, weightsReused: number } }} Row
 * @typedef {{ steps: number, tokensPerStep: number, options: Record<string, unknown>, model: Record<string, unknown> & { moeLayers?: number[], layers?: number }, precision: string, data: string, unigramEntropy: number, backend: string, cost: { gpu: string, pricePerHour: number, usdPerToken: number, mfuAssumed: number }, startedAt?: string, endedAt?: string }} Info
 * @typedef {{ id: number, name: string, state: string, note: string, info: Info | null, rows: number, lastStep: number | null }} Summary
 */

/** Heatmap columns drawn at most (a canvas has a size limit; a screen has fewer pixels anyway). */
const MAX_HEAT_COLUMNS = 1500;
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
/** @type {Map<number, { summary: Summary, rows: Row[] }>} */
const runs = new Map();
let selected = 0;
let connected = false;
/** @type {number | null} */
let priceOverride = null;

const statusEl = byId('run-status'), select = byId('run-select', HTMLSelectElement), logScale = byId('log-scale', HTMLInputElement);
const priceInput = byId('price', HTMLInputElement);

/** @param {number} id */
const color = (id) => COLORS[id % COLORS.length] ?? '#333';
/** @param {Row[]} rows @param {(r: Row) => number | null | undefined} f @returns {[number, number][]} */
const pts = (rows, f) => rows.flatMap((r) => { const v = f(r); return typeof v === 'number' ? [[r.step, v]] : []; });

let frame = 0;
function redraw() {
  if (frame) return;
  frame = requestAnimationFrame(() => { frame = 0; drawAll(); });
}

function drawAll() {
  drawStatus();
  const all = [...runs.values()];
  const many = all.length > 1;
  const first = all[0]?.summary.info;
  lineChart(byId('loss-chart'), {
    logY: logScale.checked, xLabel: 'step', yLabel: 'loss (nats/token)',
    baseline: !many && first ? { y: first.unigramEntropy, label: 'unigram entropy' } : null,
    series: all.flatMap(({ summary: s, rows }) => [
      { name: `${s.name} train`, color: color(s.id), points: pts(rows, (r) => r.loss) },
      { name: `${s.name} validation`, color: color(s.id), dash: true, markers: true, points: pts(rows, (r) => r.valLoss) },
    ]),
  });
  const legend = byId('loss-legend');
  legend.replaceChildren(...all.map(({ summary: s }) => {
    const item = el('span', { class: 'legend-item' });
    const line = el('span', { class: 'legend-line' });
    line.style.setProperty('--c', color(s.id)); // CSSOM, allowed by the page's CSP (a style attribute is not)
    item.append(line, document.createTextNode(`${s.name}${s.info ? ` (${s.info.precision})` : ''}: solid train, dashed validation`));
    return item;
  }));
  const overlay = (/** @type {(r: Row) => number | null | undefined} */ f) => all.map(({ summary: s, rows }) => ({ name: s.name, color: color(s.id), points: pts(rows, f) }));
  lineChart(byId('lr-chart'), { series: overlay((r) => r.lr), xLabel: 'step', yLabel: 'learning rate', height: 200 });
  lineChart(byId('tps-chart'), { series: overlay((r) => r.tokensPerSec), xLabel: 'step', yLabel: 'tokens/s', height: 180 });
  lineChart(byId('mfu-chart'), { series: overlay((r) => (typeof r.mfu === 'number' ? 100 * r.mfu : null)), xLabel: 'step', yLabel: 'MFU %', height: 180, yFormat: (y) => `${Number(y.toPrecision(2))}%` });
  lineChart(byId('maxvio-chart'), { series: overlay((r) => r.maxVio), xLabel: 'step', yLabel: 'MaxVio (mean over MoE layers)', height: 180 });
  const run = runs.get(selected);
  drawCost(run);
  drawExperts(run);
  drawFp8(run);
  drawSamples(run);
  drawConfig(run);
}

function drawStatus() {
  const run = runs.get(selected);
  let runState = 'unknown', text = run ? '' : connected ? 'no runs' : 'connecting…';
  if (run) {
    const s = run.summary, last = run.rows[run.rows.length - 1], steps = s.info?.steps;
    const where = last ? `step ${last.step}${steps ? ` / ${steps} (${Math.floor((100 * last.step) / steps)}%)` : ''}` : 'no steps logged yet';
    runState = s.state;
    const eta = last && steps && last.elapsedSec && s.state === 'running' ? `, ETA ${fmtDuration((last.elapsedSec / last.step) * (steps - last.step))} of step time` : '';
    const label = { running: '● running', finished: '■ finished', interrupted: '■ stopped (interrupted)', failed: '■ stopped (failed)', stopped: '■ stopped', unknown: '? state unknown' }[s.state] ?? s.state;
    text = `${label} — ${where}${eta}${s.note ? ` · ${s.note}` : ''}`;
  }
  if (!connected && runs.size) text += ' · dashboard server stopped or unreachable: retrying every 2 s (showing the last data received)';
  statusEl.dataset.state = connected ? runState : runs.size ? 'disconnected' : 'connecting';
  statusEl.dataset.runState = runState;
  statusEl.textContent = text;
}

/** @param {{ summary: Summary, rows: Row[] } | undefined} run */
function drawCost(run) {
  const dl = byId('cost');
  const info = run?.summary.info, last = run?.rows[run.rows.length - 1];
  if (!info || !run) { dl.replaceChildren(el('dt', {}, 'cost'), el('dd', {}, 'no run.json (an older run): only the charts are available')); return; }
  const price = priceOverride ?? info.cost.pricePerHour;
  const scale = info.cost.pricePerHour > 0 ? price / info.cost.pricePerHour : 0;
  const perToken = info.cost.pricePerHour > 0 ? info.cost.usdPerToken * scale : 0;
  const seen = last?.tokensSeen ?? 0, planned = info.steps * info.tokensPerStep;
  if (document.activeElement !== priceInput) priceInput.value = String(price);
  const facts = [
    ['so far', fmtUsd(seen * perToken)], ['projected (whole run)', fmtUsd(planned * perToken)],
    ['tokens', `${fmtNum(seen, 4)} of ${fmtNum(planned, 4)}`], ['GPU', info.cost.gpu], ['at', `$${price}/GPU-hour, ${Math.round(info.cost.mfuAssumed * 100)}% MFU`],
  ];
  dl.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', { 'data-testid': `cost-${String(k).split(' ')[0]}` }, v)]));
  byId('cost-note').textContent = 'What the trained tokens would cost on that GPU at DeepSeek-V3\'s MFU (the cost meter, docs/cost.md); this CPU\'s own time is not priced.';
}

/**
 * Per MoE layer: one heatmap (experts × logged steps) with its latest MaxVio.
 * @param {{ summary: Summary, rows: Row[] } | undefined} run
 */
function drawExperts(run) {
  const host = byId('expert-heatmap'), biasHost = byId('bias-heatmap');
  const all = (run?.rows ?? []).filter((r) => r.moe && r.moe.layers.length);
  // One column per logged step, up to MAX_HEAT_COLUMNS (then evenly spaced steps, the last one kept).
  const rows = all.length <= MAX_HEAT_COLUMNS ? all : Array.from({ length: MAX_HEAT_COLUMNS }, (_, c) => /** @type {Row} */ (all[Math.round(((c + 1) * all.length) / MAX_HEAT_COLUMNS) - 1]));
  if (!run || rows.length === 0) {
    host.replaceChildren(el('p', { class: 'hint' }, run ? 'no expert statistics in this run\'s metrics (a dense model, or written before they were logged)' : ''));
    biasHost.replaceChildren();
    return;
  }
  const lastMoe = /** @type {Moe} */ (rows[rows.length - 1]?.moe);
  const layerRow = (/** @type {number} */ i, /** @type {number} */ layer, /** @type {'load' | 'bias'} */ kind) => {
    const names = run.summary.info?.model.layers, isMtp = typeof names === 'number' && layer >= names;
    const cols = lastMoe.load[i]?.length ?? 0;
    const wrap = el('figure', { class: 'heat', 'data-testid': kind === 'load' ? 'heatmap-layer' : 'bias-layer', 'data-layer': String(layer) });
    const canvas = /** @type {HTMLCanvasElement} */ (el('canvas', { 'data-steps': String(rows.length), 'data-experts': String(cols), role: 'img' }));
    canvas.style.height = `${Math.min(160, Math.max(32, cols * 8))}px`;
    let caption;
    if (kind === 'load') {
      heatmap(canvas, cols, rows.length, (e, c) => {
        const v = rows[c]?.moe?.load[rows[c]?.moe?.layers.indexOf(layer) ?? -1]?.[e];
        return v === undefined ? [221, 221, 221] : diverging(Math.log2(Math.max(v, 1e-3)) / 2);
      });
      const vio = lastMoe.maxVio[i] ?? NaN;
      caption = `layer ${layer}${isMtp ? ' (MTP)' : ''} · MaxVio ${fmtNum(vio, 2)}`;
      canvas.setAttribute('aria-label', `${caption}; latest loads ÷ mean: ${(lastMoe.load[i] ?? []).map((x) => fmtNum(x, 2)).join(', ')}`);
    } else {
      let maxAbs = 0;
      for (const r of rows) for (const b of r.moe?.bias[r.moe.layers.indexOf(layer)] ?? []) maxAbs = Math.max(maxAbs, Math.abs(b));
      heatmap(canvas, cols, rows.length, (e, c) => {
        const b = rows[c]?.moe?.bias[rows[c]?.moe?.layers.indexOf(layer) ?? -1]?.[e];
        return b === undefined ? [221, 221, 221] : diverging(maxAbs > 0 ? b / maxAbs : 0);
      });
      caption = `layer ${layer}${isMtp ? ' (MTP)' : ''} · |bias| ≤ ${fmtNum(maxAbs, 2)}`;
      canvas.setAttribute('aria-label', `${caption}; latest biases: ${(lastMoe.bias[i] ?? []).map((x) => fmtNum(x, 2)).join(', ')}`);
    }
    wrap.append(el('figcaption', {}, caption + (lastMoe.group > 1 ? ` (${lastMoe.group} experts per row)` : '')), canvas);
    return wrap;
  };
  host.replaceChildren(...lastMoe.layers.map((layer, i) => layerRow(i, layer, 'load')));
  if (lastMoe.omittedLayers) host.append(el('p', { class: 'hint' }, `${lastMoe.omittedLayers} more MoE layers are not logged (metrics rows keep 64)`));
  const withBias = lastMoe.layers.filter((_, i) => lastMoe.bias[i]);
  biasHost.replaceChildren(...(withBias.length ? withBias.map((layer) => layerRow(lastMoe.layers.indexOf(layer), layer, 'bias')) : [el('p', { class: 'hint' }, 'no correction biases (bias γ = 0?)')]));
}

/** @param {{ summary: Summary, rows: Row[] } | undefined} run */
function drawFp8(run) {
  const rows = (run?.rows ?? []).filter((r) => r.fp8);
  const panel = byId('fp8-panel');
  panel.hidden = rows.length === 0;
  if (rows.length === 0) return;
  const f = /** @type {NonNullable<Row['fp8']>} */ (rows[rows.length - 1]?.fp8);
  const share = (/** @type {number} */ ms) => (f.intervalMs > 0 ? `${fmtNum((100 * ms) / f.intervalMs, 2)}%` : '–');
  const facts = [
    ['quantising', `${share(f.quantizeMs)} of step time`], ['FP8 GEMMs', `${share(f.gemmMs)} of step time`],
    ['saved activations (peak)', fmtBytes(f.actPeakBytes)], ['weights quantised / reused', `${f.weightsQuantized} / ${f.weightsReused} (last interval)`],
  ];
  byId('fp8').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  lineChart(byId('fp8-chart'), { series: [{ name: 'quantising % of step time', color: '#9467bd', points: rows.map((r) => [r.step, r.fp8 && r.fp8.intervalMs > 0 ? (100 * r.fp8.quantizeMs) / r.fp8.intervalMs : NaN]) }], xLabel: 'step', yLabel: 'quantising % of step time', height: 160 });
}

/** @param {{ summary: Summary, rows: Row[] } | undefined} run */
function drawSamples(run) {
  const list = byId('samples');
  const rows = (run?.rows ?? []).filter((r) => typeof r.sample === 'string').slice(-8).reverse();
  list.replaceChildren(...rows.map((r) => {
    const li = el('li', { value: String(r.step) });
    li.append(el('span', { class: 'sample-step' }, `step ${r.step}${typeof r.valLoss === 'number' ? ` · val ${fmtNum(r.valLoss, 4)}` : ''}`), el('q', {}, r.sample ?? ''));
    return li;
  }));
  if (!rows.length) list.append(el('li', { class: 'hint' }, 'no samples yet (one per evaluation)'));
}

/** @param {{ summary: Summary, rows: Row[] } | undefined} run */
function drawConfig(run) {
  const table = byId('config');
  const info = run?.summary.info;
  if (!info) { table.replaceChildren(); return; }
  const entries = [
    ['model', `${info.model.config}: ${info.model.layers} layers, ${info.model.experts} experts top-${info.model.expertsPerToken}, ${fmtNum(Number(info.model.paramsTotal) / 1e6, 3)}M params (${fmtNum(Number(info.model.paramsActive) / 1e6, 3)}M active)`],
    ['precision', info.precision], ['data', info.data], ['backend', info.backend], ['started', info.startedAt ?? '–'], ['ended', info.endedAt ?? '–'],
    ...Object.entries(info.options).map(([k, v]) => [`--${k}`, String(v)]),
  ];
  table.replaceChildren(...entries.map(([k, v]) => { const tr = el('tr'); tr.append(el('th', { scope: 'row' }, k), el('td', {}, v)); return tr; }));
}

function fillSelect() {
  const all = [...runs.values()];
  byId('run-pick').hidden = all.length < 2;
  const want = all.map((r) => `${r.summary.id}:${r.summary.name}`).join('|');
  if (select.dataset.sig === want) return;
  select.dataset.sig = want;
  select.replaceChildren(...all.map((r) => el('option', { value: String(r.summary.id) }, r.summary.name)));
  select.value = String(selected);
}

/** Applies one SSE event. @param {string} name @param {string} data */
function onEvent(name, data) {
  if (name === 'runs') {
    for (const s of /** @type {Summary[]} */ (JSON.parse(data))) {
      const r = runs.get(s.id);
      if (r) r.summary = s; else runs.set(s.id, { summary: s, rows: [] });
    }
    fillSelect();
  } else if (name === 'rows') {
    const m = /** @type {{ id: number, reset: boolean, rows: Row[] }} */ (JSON.parse(data));
    const r = runs.get(m.id);
    if (!r) return;
    if (m.reset) r.rows = m.rows; else r.rows.push(...m.rows);
  } else if (name === 'bye') {
    connected = false;
  }
  redraw();
}

/** Keeps one stream open; on loss, says so and retries every 2 s. */
async function connect() {
  for (;;) {
    try {
      const res = await api('/api/stream', { headers: { Accept: 'text/event-stream' } });
      connected = true;
      redraw();
      await readSse(res, onEvent);
    } catch (e) {
      if (e instanceof KeyNeeded) { connected = false; statusEl.dataset.state = 'disconnected'; statusEl.textContent = 'API key needed'; return; }
    }
    connected = false;
    redraw();
    await new Promise((r) => setTimeout(r, 2000));
  }
}

select.addEventListener('change', () => { selected = Number(select.value); redraw(); });
logScale.addEventListener('change', redraw);
priceInput.addEventListener('input', () => { const v = Number(priceInput.value); priceOverride = priceInput.value !== '' && v >= 0 ? v : null; redraw(); });
let width = 0;
new ResizeObserver(() => { if (document.body.clientWidth !== width) { width = document.body.clientWidth; redraw(); } }).observe(document.body); // charts are drawn at their pixel width
setupKeyForm(() => { void connect(); });
void connect();
