/**
 * The report of `frugal experiment fp8`: per-run results, the summary across seeds (mean and
 * standard deviation of the relative validation gap, FP32's own seed spread, ms/step and the share
 * spent quantising per recipe, ablation rows), the printed table and the two SVG plots.
 *
 * Contract:
 * - Pure functions of finished runs (`RunResult`); nothing here trains or reads files.
 * - Relative gap of a variant at seed s: (val_variant,s − val_fp32,s) / val_fp32,s — paired by seed,
 *   so the shared data and initialisation cancel. Mean and sample SD (n − 1) over the seeds that
 *   both have; `fp32SeedSd` = sample SD of FP32's final validation loss over seeds, relative to
 *   its mean (the noise floor a gap is compared with).
 */
import type { Variant } from '../fp8/recipe.js';

/** Result of one (variant, seed) run. */
export interface RunResult {
  recipe: Variant;
  seed: number;
  description: string;
  trainLoss: number;
  /** Final validation loss over `valBatches` batches. */
  valLoss: number;
  /** Peak bytes of projection inputs saved for backward during one step. */
  savedActivationBytes: number;
  savedActivationBytesPerToken: number;
  optimizerBytes: number;
  /** savedActivationBytes + optimizerBytes. */
  memoryBytes: number;
  /** Wall time per optimizer step (forward, backward, clip, AdamW; evaluation excluded). */
  msPerStep: number;
  stepsPerSec: number;
  /** Process CPU time (user + system, all threads) per step. */
  cpuMsPerStep: number;
  /** Share of the step's wall time spent in FP8 quantisation kernels (activations, gradients, weights). */
  quantizeShare: number;
  /** Share spent in the FP8 GEMMs. */
  fp8GemmShare: number;
  curve: { step: number; train: number }[];
  valCurve: { step: number; val: number }[];
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;
/** Sample standard deviation (n − 1); 0 for fewer than two values. */
export function sd(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}

/** Seed-paired relative gaps of `variant` against `ref`. */
export function pairedGaps(runs: RunResult[], variant: Variant, ref: Variant): { seed: number; gap: number }[] {
  const out: { seed: number; gap: number }[] = [];
  for (const r of runs) {
    if (r.recipe !== variant) continue;
    const b = runs.find((x) => x.recipe === ref && x.seed === r.seed);
    if (b) out.push({ seed: r.seed, gap: (r.valLoss - b.valLoss) / b.valLoss });
  }
  return out.sort((a, b) => a.seed - b.seed);
}

/** One row per variant: seeds, mean val loss, paired gap vs fp32 (mean, SD), ms/step, shares. */
export interface VariantRow {
  recipe: Variant; description: string; seeds: number[]; valLoss: number; trainLoss: number;
  relativeGapMean: number | null; relativeGapSd: number | null; relativeGapVsFp8Mean: number | null;
  msPerStep: number; cpuMsPerStep: number; quantizeShare: number; fp8GemmShare: number; memoryBytes: number;
}

export function variantRows(runs: RunResult[], order: Variant[]): VariantRow[] {
  return order.filter((v) => runs.some((r) => r.recipe === v)).map((v) => {
    const rs = runs.filter((r) => r.recipe === v);
    const g = pairedGaps(runs, v, 'fp32').map((x) => x.gap);
    const g8 = pairedGaps(runs, v, 'fp8').map((x) => x.gap);
    return {
      recipe: v, description: rs[0]!.description, seeds: rs.map((r) => r.seed).sort((a, b) => a - b),
      valLoss: mean(rs.map((r) => r.valLoss)), trainLoss: mean(rs.map((r) => r.trainLoss)),
      relativeGapMean: g.length ? mean(g) : null, relativeGapSd: g.length ? sd(g) : null,
      relativeGapVsFp8Mean: v !== 'fp8' && g8.length ? mean(g8) : null,
      msPerStep: mean(rs.map((r) => r.msPerStep)), cpuMsPerStep: mean(rs.map((r) => r.cpuMsPerStep)),
      quantizeShare: mean(rs.map((r) => r.quantizeShare)), fp8GemmShare: mean(rs.map((r) => r.fp8GemmShare)),
      memoryBytes: rs[0]!.memoryBytes,
    };
  });
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f', '#17becf', '#bcbd22'];
const FIXED = ['fp32', 'fp8', 'bf16', 'fp8:fwd-only', 'fp8:dgrad-bf16', 'fp8:wgrad-bf16', 'fp8:f32-moments', 'fp8:no-recompute', 'fp8:accum-14bit', 'fp8:no-promotion'];
/** One colour per variant in every plot. */
const colorOf = (v: Variant): string => COLORS[Math.max(0, FIXED.indexOf(v)) % COLORS.length]!;

function frame(W: number, H: number, L: number, R: number, T: number, B: number, title: string, ylabel: string): string[] {
  return [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`, `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${title}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`, `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${W / 2}" y="${H - 12}" text-anchor="middle">step</text>`, `<text x="14" y="${H / 2}" transform="rotate(-90 14 ${H / 2})" text-anchor="middle">${ylabel}</text>`];
}

/** Loss curves: train (EMA, solid) and validation (dashed) of every run; one colour per variant. */
export function lossSvg(runs: RunResult[], order: Variant[], title: string): string {
  const W = 760, H = 440, L = 60, R = 20, T = 40, B = 50;
  const ema = (xs: number[]): number[] => { let m = xs[0] ?? 0; return xs.map((x) => (m = 0.95 * m + 0.05 * x)); };
  const shown = runs.filter((r) => order.includes(r.recipe));
  const steps = Math.max(...shown.map((r) => r.curve.length));
  // Skip the first 5% of steps: the initial loss would flatten the interesting part.
  const from = Math.floor(steps / 20);
  const all = shown.flatMap((r) => [...ema(r.curve.map((c) => c.train)).slice(from), ...r.valCurve.filter((v) => v.step > from).map((v) => v.val)]);
  const lo = Math.min(...all), hi = Math.max(...all);
  const x = (s: number): number => L + ((W - L - R) * (s - from)) / (steps - from || 1);
  const y = (v: number): number => T + ((H - T - B) * (hi - v)) / (hi - lo || 1);
  const out = frame(W, H, L, R, T, B, title, 'loss (nats)');
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4, s = from + ((steps - from) * i) / 4;
    out.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`, `<text x="${x(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${Math.round(s)}</text>`);
  }
  order.forEach((v, i) => {
    const c = colorOf(v);
    const rs = shown.filter((r) => r.recipe === v);
    if (!rs.length) return;
    for (const r of rs) {
      const tr = ema(r.curve.map((p) => p.train));
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="1" stroke-opacity="0.7" points="${tr.map((t, j) => [j + 1, t] as const).filter(([s]) => s > from && (s % 5 === 0 || s === tr.length)).map(([s, t]) => `${x(s).toFixed(1)},${y(t).toFixed(1)}`).join(' ')}"/>`);
      out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.5" stroke-dasharray="5,3" points="${r.valCurve.filter((p) => p.step > from).map((p) => `${x(p.step).toFixed(1)},${y(p.val).toFixed(1)}`).join(' ')}"/>`);
    }
    out.push(`<text x="${W - R - 230}" y="${T + 16 * i}" fill="${c}">${v} (seeds ${rs.map((r) => r.seed).join(',')}): train EMA —, val - -</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Relative validation gap against fp32 of the same seed, at every evaluation, per variant and seed. */
export function gapSvg(runs: RunResult[], order: Variant[], title: string): string {
  const W = 760, H = 440, L = 70, R = 20, T = 40, B = 50;
  const series: { v: Variant; seed: number; pts: [number, number][] }[] = [];
  for (const v of order) {
    if (v === 'fp32') continue;
    for (const r of runs.filter((q) => q.recipe === v)) {
      const ref = runs.find((q) => q.recipe === 'fp32' && q.seed === r.seed);
      if (!ref) continue;
      const pts: [number, number][] = [];
      for (const p of r.valCurve) { const b = ref.valCurve.find((q) => q.step === p.step); if (b) pts.push([p.step, (100 * (p.val - b.val)) / b.val]); }
      series.push({ v, seed: r.seed, pts });
    }
  }
  const vals = series.flatMap((s) => s.pts.map((p) => p[1]));
  const steps = Math.max(1, ...series.flatMap((s) => s.pts.map((p) => p[0])));
  const lo = Math.min(-0.5, ...vals), hi = Math.max(0.5, ...vals);
  const x = (s: number): number => L + ((W - L - R) * s) / steps;
  const y = (v: number): number => T + ((H - T - B) * (hi - v)) / (hi - lo || 1);
  const out = frame(W, H, L, R, T, B, title, 'val loss vs fp32, same seed (%)');
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    out.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`, `<text x="${x((steps * i) / 4).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${Math.round((steps * i) / 4)}</text>`);
  }
  for (const b of [0.25, -0.25]) out.push(`<line x1="${L}" y1="${y(b)}" x2="${W - R}" y2="${y(b)}" stroke="#999" stroke-dasharray="2,3"/>`);
  out.push(`<line x1="${L}" y1="${y(0)}" x2="${W - R}" y2="${y(0)}" stroke="#444"/>`, `<text x="${W - R - 4}" y="${y(0.25) - 4}" text-anchor="end" fill="#666">±0.25%</text>`);
  const vs = order.filter((v) => series.some((s) => s.v === v));
  vs.forEach((v, i) => {
    const c = colorOf(v);
    for (const s of series.filter((q) => q.v === v)) out.push(`<polyline fill="none" stroke="${c}" stroke-width="1.3" points="${s.pts.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<text x="${L + 10}" y="${T + 16 * i}" fill="${c}">${v}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
