// @ts-check
/**
 * Frugal's own small charts (no chart library, nothing fetched): SVG line charts with linear or
 * log y axes, and canvas heatmaps. Browser ES module.
 *
 * Contract:
 * - `lineChart` draws each series as one polyline whose `points` are exactly the series' finite
 *   points (non-positive values are left out on a log axis), in order, when a series has at most
 *   MAX_POINTS of them; longer series are thinned to the first, last, min and max point of each of
 *   MAX_POINTS/4 equal x-ranges. The polyline carries `data-series` (the series name) and
 *   `data-points` (points drawn), so tests and tools read what was drawn.
 * - The chart element gets an `aria-label` saying each series' latest value (a screen reader's
 *   view of the chart); charts scale with their container's width (SVG viewBox).
 * - `heatmap` paints one pixel per cell onto a canvas scaled up with crisp edges.
 */

const SVG = 'http://www.w3.org/2000/svg';
/** Points drawn per series before thinning. */
export const MAX_POINTS = 2000;

/**
 * @typedef {{ name: string, color: string, points: [number, number][], dash?: boolean, markers?: boolean }} Series
 * @typedef {{ series: Series[], logY?: boolean, xLabel?: string, yLabel?: string, baseline?: { y: number, label: string } | null, height?: number, yFormat?: (y: number) => string }} ChartSpec
 */

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 */
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** Nice round tick values covering [lo, hi] (whole numbers only when `integer`). @param {number} lo @param {number} hi @param {number} n @param {boolean} [integer] */
function linearTicks(lo, hi, n, integer = false) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / n, mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Ticks of a log axis: powers of ten, with 2 and 5 between them when the range is short. @param {number} lo @param {number} hi */
function logTicks(lo, hi) {
  const out = [];
  const decades = Math.log10(hi / lo);
  const mult = decades < 1.5 ? [1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9] : decades < 4 ? [1, 2, 5] : [1];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mult) { const v = m * 10 ** e; if (v >= lo && v <= hi) out.push(v); }
  }
  return out;
}

/** Thins a series to MAX_POINTS (see the contract). @param {[number, number][]} pts @returns {[number, number][]} */
function thin(pts) {
  if (pts.length <= MAX_POINTS) return pts;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const buckets = MAX_POINTS / 4, x0 = xs[0] ?? 0, x1 = xs[xs.length - 1] ?? 0;
  /** @type {[number, number][]} */
  const out = [];
  let i = 0;
  for (let b = 0; b < buckets && i < pts.length; b++) {
    const end = b === buckets - 1 ? Infinity : x0 + ((b + 1) * (x1 - x0)) / buckets;
    const start = i;
    let lo = i, hi = i;
    for (; i < pts.length && (xs[i] ?? 0) <= end; i++) { if ((ys[i] ?? 0) < (ys[lo] ?? 0)) lo = i; if ((ys[i] ?? 0) > (ys[hi] ?? 0)) hi = i; }
    if (i === start) continue;
    for (const k of [...new Set([start, lo, hi, i - 1])].sort((a, c) => a - c)) out.push([xs[k] ?? 0, ys[k] ?? 0]);
  }
  return out;
}

/** @param {number} y */
const defaultFormat = (y) => {
  const a = Math.abs(y);
  if (a >= 1e9) return `${Number((y / 1e9).toPrecision(3))}G`;
  if (a >= 1e6) return `${Number((y / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((y / 1e3).toPrecision(3))}k`;
  return a < 1e-2 && y !== 0 ? y.toExponential(1) : String(Number(y.toPrecision(3)));
};

/**
 * Draws a line chart into `host` (replacing what was there).
 * @param {HTMLElement} host
 * @param {ChartSpec} spec
 */
export function lineChart(host, spec) {
  // Drawn at the host's pixel width, so labels keep their size on a phone and on a wide screen.
  const W = Math.max(280, Math.round(host.clientWidth) || 640), H = spec.height ?? 260, L = 56, R = 12, T = 22, B = 34;
  const logY = spec.logY === true;
  const fmt = spec.yFormat ?? defaultFormat;
  const series = spec.series.map((s) => ({ ...s, points: thin(s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0))) }));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  if (spec.baseline && (!logY || spec.baseline.y > 0)) ys.push(spec.baseline.y);
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', 'aria-hidden': 'true' });
  if (xs.length === 0) {
    const t = svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' });
    t.textContent = 'no data yet';
    svg.append(t);
    host.replaceChildren(svg);
    host.setAttribute('aria-label', 'chart: no data yet');
    return;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (logY) { y0 /= 1.15; y1 *= 1.15; } else { const pad = (y1 - y0) * 0.06 || Math.abs(y1) * 0.1 || 1; y0 -= pad; y1 += pad; }
  const f = logY ? Math.log10 : (/** @type {number} */ v) => v;
  const X = (/** @type {number} */ x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (/** @type {number} */ y) => T + (1 - (f(y) - f(y0)) / (f(y1) - f(y0))) * (H - T - B);
  const grid = svgEl('g', { class: 'chart-grid' });
  let lastTickY = Infinity;
  for (const v of logY ? logTicks(y0, y1) : linearTicks(y0, y1, 5)) {
    if (lastTickY - Y(v) < 16) continue; // keep labels apart (log axes crowd near a decade's top)
    lastTickY = Y(v);
    grid.append(svgEl('line', { x1: L, x2: W - R, y1: Y(v).toFixed(1), y2: Y(v).toFixed(1) }));
    const t = svgEl('text', { x: L - 6, y: (Y(v) + 4).toFixed(1), 'text-anchor': 'end' });
    t.textContent = fmt(v);
    grid.append(t);
  }
  for (const v of linearTicks(x0, x1, Math.max(2, Math.floor(W / 90)), true)) {
    const t = svgEl('text', { x: X(v).toFixed(1), y: H - B + 16, 'text-anchor': 'middle' });
    t.textContent = String(v);
    grid.append(t);
  }
  if (spec.yLabel) { const t = svgEl('text', { x: L, y: 14, 'text-anchor': 'start', class: 'chart-label' }); t.textContent = spec.yLabel + (logY ? ' (log scale)' : ''); grid.append(t); }
  if (spec.xLabel) { const t = svgEl('text', { x: W - R, y: H - 4, 'text-anchor': 'end', class: 'chart-label' }); t.textContent = spec.xLabel; grid.append(t); }
  svg.append(grid, svgEl('rect', { x: L, y: T, width: W - L - R, height: H - T - B, class: 'chart-frame' }));
  if (spec.baseline && (!logY || spec.baseline.y > 0)) {
    const by = Y(spec.baseline.y).toFixed(1);
    svg.append(svgEl('line', { x1: L, x2: W - R, y1: by, y2: by, class: 'chart-baseline' }));
    const t = svgEl('text', { x: W - R - 4, y: Number(by) - 4, 'text-anchor': 'end', class: 'chart-label' });
    t.textContent = `${spec.baseline.label} ${fmt(spec.baseline.y)}`;
    svg.append(t);
  }
  const labels = [];
  for (const s of series) {
    const pts = s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    const line = svgEl('polyline', { points: pts, fill: 'none', stroke: s.color, 'stroke-width': 2, 'data-series': s.name, 'data-points': s.points.length, class: 'chart-line' });
    if (s.dash) line.setAttribute('stroke-dasharray', '6 4');
    svg.append(line);
    if (s.markers && s.points.length <= 200) for (const [x, y] of s.points) svg.append(svgEl('circle', { cx: X(x).toFixed(1), cy: Y(y).toFixed(1), r: 3, fill: s.color }));
    const last = s.points[s.points.length - 1];
    if (last) labels.push(`${s.name} ${fmt(last[1])} at ${last[0]}`);
  }
  host.replaceChildren(svg);
  host.setAttribute('aria-label', `${spec.yLabel ?? 'chart'}${logY ? ' (log scale)' : ''}: ${labels.join('; ') || 'no data yet'}`);
}

/**
 * Paints `rows` × `cols` cells (value(r, c) → CSS-free RGB triple) onto `canvas`.
 * @param {HTMLCanvasElement} canvas
 * @param {number} rows
 * @param {number} cols
 * @param {(r: number, c: number) => [number, number, number]} color
 */
export function heatmap(canvas, rows, cols, color) {
  canvas.width = Math.max(1, cols);
  canvas.height = Math.max(1, rows);
  const ctx = canvas.getContext('2d');
  if (!ctx || rows === 0 || cols === 0) return;
  const img = ctx.createImageData(cols, rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const [red, g, b] = color(r, c), o = 4 * (r * cols + c);
      img.data[o] = red; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

/**
 * A diverging colour: -1 → blue, 0 → near white, +1 → red (t clamped to [-1, 1]).
 * @param {number} t
 * @returns {[number, number, number]}
 */
export function diverging(t) {
  const v = Math.max(-1, Math.min(1, Number.isFinite(t) ? t : 0));
  const lerp = (/** @type {number} */ a, /** @type {number} */ b) => Math.round(a + (b - a) * Math.abs(v));
  return v < 0 ? [lerp(246, 33), lerp(246, 102), lerp(246, 172)] : [lerp(246, 178), lerp(246, 24), lerp(246, 43)];
}
