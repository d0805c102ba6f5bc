/**
 * Run metrics on disk (Node): `metrics.jsonl` (one object per logged step, appended as training
 * goes; on resume, lines past the checkpoint's step are dropped so the file matches the run) and
 * an SVG loss curve (train and validation loss vs step, with the unigram-entropy baseline).
 *
 * Contract:
 * - A row's size is bounded whatever the model: expert statistics (`moe`) keep at most
 *   MOE_MAX_LAYERS layers and MOE_MAX_COLUMNS columns per layer (experts summed in equal groups
 *   beyond that), values rounded to 3–4 significant digits; a sample keeps SAMPLE_MAX_CHARS.
 * - `moe.load[l][j]` is column j's load over the mean load of layer l (1 = balanced), so rows of
 *   models with any batch size or top-k read alike; `moe.bias` is the correction bias per column.
 */
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { ExpertStats, LogEntry } from './trainer.js';
import { fp8KernelTime, fp8WeightStats, resetFp8KernelTime, resetSavedActivationStats, savedActivationStats } from '../fp8/linear.js';

/** Most MoE layers one metrics row describes (later ones are counted in `moe.omittedLayers`). */
export const MOE_MAX_LAYERS = 64;
/** Most columns per layer: more experts are summed in groups of `moe.group`. */
export const MOE_MAX_COLUMNS = 64;
/** Longest sample text kept in a row. */
export const SAMPLE_MAX_CHARS = 400;

/** The compact `moe` object of a metrics row (see the file contract). */
export interface MoeRecord { layers: number[]; group: number; load: number[][]; maxVio: number[]; bias: (number[] | null)[]; omittedLayers?: number }

const sig = (x: number, d: number): number => (Number.isFinite(x) ? Number(x.toPrecision(d)) : 0);

/** Bounded, rounded expert statistics for metrics.jsonl. */
export function moeRecord(s: ExpertStats): MoeRecord | null {
  if (s.layers.length === 0) return null;
  const n = Math.min(s.layers.length, MOE_MAX_LAYERS);
  const experts = s.loads[0]!.length;
  const group = Math.ceil(experts / MOE_MAX_COLUMNS), cols = Math.ceil(experts / group);
  const load: number[][] = [], bias: (number[] | null)[] = [];
  for (let l = 0; l < n; l++) {
    const ld = s.loads[l]!, b = s.bias[l] ?? null;
    let sum = 0;
    for (const x of ld) sum += x;
    const mean = sum / ld.length;
    const row: number[] = [], brow: number[] = [];
    for (let c = 0; c < cols; c++) {
      let ls = 0, bs = 0, k = 0;
      for (let e = c * group; e < Math.min(experts, (c + 1) * group); e++, k++) { ls += ld[e]!; bs += b ? b[e]! : 0; }
      row.push(mean > 0 ? sig(ls / (k * mean), 3) : 0);
      brow.push(sig(Math.round((bs / k) * 1e6) / 1e6, 4)); // biases move in steps of γ (1e-3): 1e-6 is plenty
    }
    load.push(row);
    bias.push(b ? brow : null);
  }
  const r: MoeRecord = { layers: s.layers.slice(0, n), group, load, maxVio: s.maxVio.slice(0, n).map((v) => sig(v, 4)), bias };
  if (s.layers.length > n) r.omittedLayers = s.layers.length - n;
  return r;
}

/** The metrics.jsonl object of a log entry (issue #5 field names first). `loss` is the next-token
 *  cross-entropy (comparable with valLoss); `totalLoss` adds λ·MTP and the balance term. */
export function metricsRecord(e: LogEntry, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const r = (x: number | null, d = 5): number | null => (x === null || !Number.isFinite(x) ? null : Number(x.toPrecision(d)));
  const row: Record<string, unknown> = {
    step: e.step, loss: r(e.mainLoss), valLoss: r(e.valLoss), lr: r(e.lr, 4), tokensPerSec: r(e.tokensPerSec, 4), mfu: r(e.mfu, 3),
    maxVio: r(e.maxVio, 4), tokensSeen: e.tokensSeen, totalLoss: r(e.loss), mtpLoss: r(e.mtpLoss), gradNorm: r(e.gradNorm, 4),
    usd: r(e.usd, 3), skippedSteps: e.skippedSteps, elapsedSec: r(e.elapsedSec, 4),
  };
  const moe = e.experts ? moeRecord(e.experts) : null;
  if (moe) row.moe = moe;
  if (typeof e.sample === 'string') row.sample = e.sample.slice(0, SAMPLE_MAX_CHARS);
  return { ...row, ...extra };
}

/**
 * FP8 statistics per log interval, as the `fp8` field of a metrics row: the interval's step time,
 * milliseconds spent quantising and in FP8 GEMMs, the peak bytes of saved activations, and how
 * often weights were quantised vs taken from the per-step cache. Call with null to start an
 * interval (the counters are reset), then with each log entry.
 */
export function fp8IntervalStats(elapsedSec: number): (e: LogEntry | null) => Record<string, unknown> {
  let base = fp8WeightStats(), since = elapsedSec;
  return (e) => {
    const t = fp8KernelTime(), w = fp8WeightStats(), act = savedActivationStats();
    const r = e ? { fp8: { intervalMs: Math.round((e.elapsedSec - since) * 1000), quantizeMs: Math.round(t.quantizeMs), gemmMs: Math.round(t.gemmMs), actPeakBytes: act.peak, weightsQuantized: w.quantized - base.quantized, weightsReused: w.reused - base.reused } } : {};
    resetFp8KernelTime(); resetSavedActivationStats();
    base = w;
    if (e) since = e.elapsedSec;
    return r;
  };
}

/** Appends one entry (plus `extra` fields, e.g. FP8 statistics) to the jsonl file. */
export function appendMetrics(file: string, e: LogEntry, extra: Record<string, unknown> = {}): void {
  appendFileSync(file, JSON.stringify(metricsRecord(e, extra)) + '\n');
}

/** Reads metrics.jsonl (skipping unreadable lines, e.g. a torn last line after a kill). */
export function readMetrics(file: string): Record<string, unknown>[] {
  if (!existsSync(file)) return [];
  const out: Record<string, unknown>[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { /* torn line */ }
  }
  return out;
}

/** Keeps only entries with step ≤ `step` (resume). */
export function truncateMetrics(file: string, step: number): void {
  if (!existsSync(file)) return;
  const kept = readMetrics(file).filter((r) => typeof r.step === 'number' && r.step <= step);
  writeFileSync(file, kept.map((r) => JSON.stringify(r) + '\n').join(''));
}

/** An SVG plot of loss (and val loss) against step; `baseline` draws a dashed horizontal line. */
export function lossCurveSvg(rows: Record<string, unknown>[], opts: { title: string; baseline?: number; baselineLabel?: string }): string {
  const W = 720, H = 420, L = 60, R = 20, T = 40, B = 50;
  const pts = (key: string): [number, number][] => rows.filter((r) => typeof r[key] === 'number' && typeof r.step === 'number').map((r) => [r.step as number, r[key] as number]);
  const train = pts('loss'), val = pts('valLoss');
  const all = [...train, ...val];
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  if (opts.baseline !== undefined) ys.push(opts.baseline);
  const x0 = 0, x1 = Math.max(1, ...xs);
  let y0 = Math.min(...ys, Infinity), y1 = Math.max(...ys, -Infinity);
  if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
  const pad = (y1 - y0) * 0.05 || 0.5;
  y0 -= pad; y1 += pad;
  const X = (x: number): number => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y: number): number => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const line = (p: [number, number][], color: string, dash = ''): string => p.length === 0 ? '' :
    `<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${p.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ')}"/>`;
  const ticks: string[] = [];
  for (let i = 0; i <= 5; i++) {
    const yv = y0 + ((y1 - y0) * i) / 5, xv = x0 + ((x1 - x0) * i) / 5;
    ticks.push(`<line x1="${L}" x2="${W - R}" y1="${Y(yv).toFixed(1)}" y2="${Y(yv).toFixed(1)}" stroke="#eee"/>`,
      `<text x="${L - 6}" y="${(Y(yv) + 4).toFixed(1)}" text-anchor="end" font-size="11">${yv.toFixed(2)}</text>`,
      `<text x="${X(xv).toFixed(1)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${Math.round(xv)}</text>`);
  }
  const base = opts.baseline === undefined ? '' : line([[x0, opts.baseline], [x1, opts.baseline]], '#999', '6 4') +
    `<text x="${W - R - 4}" y="${(Y(opts.baseline) - 5).toFixed(1)}" text-anchor="end" font-size="11" fill="#666">${opts.baselineLabel ?? 'baseline'} ${opts.baseline.toFixed(2)}</text>`;
  const esc = (s: string): string => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(opts.title)}</text>
${ticks.join('\n')}
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>
<text x="${W / 2}" y="${H - 12}" text-anchor="middle" font-size="12">step</text>
<text x="16" y="${H / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 16 ${H / 2})">loss (nats/token)</text>
${base}
${line(train, '#1f77b4')}
${line(val, '#d62728')}
<text x="${W - R - 130}" y="${T + 14}" font-size="12" fill="#1f77b4">— train loss</text>
<text x="${W - R - 130}" y="${T + 30}" font-size="12" fill="#d62728">— validation loss</text>
</svg>
`;
}
