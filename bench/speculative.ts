/**
 * `frugal bench decode --speculative`: plain vs MTP speculative greedy decoding of a trained model
 * (`--model DIR`, else the default `frugal train` recipe is run into a temporary folder first),
 * batch 1, per thread count and decode-weight precision. Each round generates `--max-tokens` new
 * tokens from the same prompt plainly, then speculatively (interleaved, after one warm-up of each);
 * rows give the medians with min–max, the speed-up (median of the per-round ratios, with their
 * range) and the MTP acceptance rate (accepted drafts / proposed drafts). `--draft-tokens K[,K…]`
 * sets the chained drafts per greedy step (default auto, as generate). A round whose two outputs differ aborts the bench: greedy
 * speculative decoding must reproduce plain decoding exactly. No PyTorch peer (it has no MTP
 * decoding to compare with).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { useBackend, describeBackend, disposeBackends, type BackendChoice } from '../src/backend/setup-node.js';
import { UsageError } from '../src/errors.js';
import { Generation, type Model } from '../src/infer/generate.js';
import { withBf16Weights } from '../src/infer/bf16-node.js';
import { withQ8Drafts } from '../src/infer/q8-node.js';
import { openModel } from '../src/serve/model-node.js';
import { repoRoot, stats, writeResults } from './common.js';

export interface SpeculativeOptions {
  model: string | null; threads: number[]; reps: number; backend: BackendChoice; weights: Array<'f32' | 'bf16'>;
  maxTokens: number; prompt: string; json: boolean; write: boolean;
  /** Draft weights of the MTP layer: Q8_0 (as `frugal generate|serve --speculative` run) or the model's own. */
  drafts: 'q8_0' | 'same';
  /** Chained MTP drafts per greedy step, one row set each (default ['auto'], as generate). */
  draftTokens?: Array<number | 'auto'>;
}

export interface SpeculativeRow {
  threads: number; weights: 'f32' | 'bf16'; drafts: 'q8_0' | 'same'; draftTokens: number | 'auto'; maxTokens: number; reps: number; backend: string;
  plain: number; plainRange: [number, number]; speculative: number; speculativeRange: [number, number];
  speedup: number; speedupRange: [number, number]; acceptance: number;
  /** threads > 1: plain decoding at 1 thread in the same rounds, and the speed-up over the faster plain run of each round. */
  plainOne?: number; speedupBest?: number; speedupBestRange?: [number, number];
}

/** Trains the default `frugal train` model into a temporary folder; returns its final model dir and a cleanup. */
function trainDefault(log: (s: string) => void): { dir: string; remove: () => void } {
  const tmp = mkdtempSync(path.join(tmpdir(), 'frugal-spec-bench-'));
  log(`no --model: training the default model (npx frugal train --out ${tmp}/run), ~1 minute`);
  const r = spawnSync(process.execPath, [path.join(repoRoot(), 'bin', 'frugal.js'), 'train', '--out', path.join(tmp, 'run')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const dir = path.join(tmp, 'run', 'final');
  if (r.status !== 0 || !existsSync(path.join(dir, 'config.json'))) {
    rmSync(tmp, { recursive: true, force: true });
    throw new Error(`bench decode --speculative: training the default model failed (exit ${r.status}); pass --model DIR`);
  }
  return { dir, remove: () => rmSync(tmp, { recursive: true, force: true }) };
}

/** One greedy generation; returns tokens/s over its decode steps, its tokens and its acceptance. */
function once(model: Model, prompt: number[], maxTokens: number, speculative: boolean, vocabLimit: number, draftTokens: number | 'auto' = 'auto'): { tps: number; tokens: number[]; acceptance: number } {
  const g = new Generation(model, prompt, { greedy: true, maxTokens, speculative, vocabLimit, draftTokens });
  while (!g.done) g.step();
  const r = g.result();
  return { tps: (r.tokens.length / r.decodeMs) * 1000, tokens: r.tokens, acceptance: r.speculative?.acceptanceRate ?? 0 };
}

/** Runs the comparison; logs progress with `log`. */
export async function runSpeculativeBench(o: SpeculativeOptions, log: (s: string) => void): Promise<SpeculativeRow[]> {
  const trained = o.model ? null : trainDefault(log);
  const rows: SpeculativeRow[] = [];
  try {
    const dir = o.model ?? trained!.dir;
    for (const threads of o.threads) {
      const be = (await useBackend(o.backend, { threads })) as { threads: number; setThreads?: (n: number) => number };
      if (be.threads !== threads && be.setThreads) be.setThreads(threads);
      const backend = describeBackend();
      const opened = await openModel(dir);
      if (opened.model.params.mtp.length === 0) throw new UsageError(`${dir}: the model has no MTP layers (num_nextn_predict_layers = 0), so nothing to speculate with`);
      const prompt = opened.tokenizer ? opened.tokenizer.encode(o.prompt) : [1, 2, 3];
      // As `generate` does: sample only ids the tokenizer can decode.
      const vocab = opened.tokenizer?.vocabSize ?? opened.model.cfg.vocabSize;
      for (const weights of o.weights) {
        let model: Model = opened.model;
        if (weights === 'bf16') {
          const r = withBf16Weights(model);
          if (r.model === model) throw new Error(`bench decode --speculative: ${r.note}`);
          model = r.model;
        }
        if (o.drafts === 'q8_0') {
          const d = withQ8Drafts(model);
          if (d.model === model) throw new Error(`bench decode --speculative: ${d.note}`);
          model = d.model;
        }
        for (const K of o.draftTokens ?? ['auto' as const]) {
        log(`[decode --speculative threads=${threads} weights=${weights} drafts=${o.drafts} draft-tokens=${K}] ${backend}; prompt ${prompt.length} tokens, ${o.maxTokens} new, greedy; load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
        once(model, prompt, o.maxTokens, false, vocab);
        once(model, prompt, o.maxTokens, true, vocab, K);
        // With several threads, each round also decodes plainly on 1 thread (a small model's plain
        // decoding may not gain from a second thread, which speculation uses): the speed-up over
        // the faster of the two plain runs is the one a user would see.
        const alsoOne = threads > 1 && typeof be.setThreads === 'function';
        const p: number[] = [], s: number[] = [], ratio: number[] = [], acc: number[] = [], p1: number[] = [], best: number[] = [];
        for (let r = 0; r < o.reps; r++) {
          const a = once(model, prompt, o.maxTokens, false, vocab), b = once(model, prompt, o.maxTokens, true, vocab, K);
          if (a.tokens.join() !== b.tokens.join()) throw new Error(`round ${r}: speculative output differs from plain output (a bug: greedy speculative decoding must be exact)`);
          p.push(a.tps); s.push(b.tps); ratio.push(b.tps / a.tps); acc.push(b.acceptance);
          let one = '';
          if (alsoOne) {
            be.setThreads!(1);
            const c = once(model, prompt, o.maxTokens, false, vocab);
            be.setThreads!(threads);
            p1.push(c.tps); best.push(b.tps / Math.max(a.tps, c.tps));
            one = `, plain on 1 thread ${c.tps.toFixed(0)} tok/s (×${best[r]!.toFixed(2)} over the faster plain)`;
          }
          log(`  round ${r + 1}: plain ${a.tps.toFixed(0)} tok/s, speculative ${b.tps.toFixed(0)} tok/s (×${(b.tps / a.tps).toFixed(2)})${one}, acceptance ${(100 * b.acceptance).toFixed(1)}%`);
        }
        const ps = stats(p), ss = stats(s), rs = stats(ratio);
        const bs = best.length ? stats(best) : null;
        rows.push({
          threads, weights, drafts: o.drafts, draftTokens: K, maxTokens: o.maxTokens, reps: o.reps, backend, plain: ps.median, plainRange: [ps.min, ps.max],
          speculative: ss.median, speculativeRange: [ss.min, ss.max], speedup: rs.median, speedupRange: [rs.min, rs.max], acceptance: stats(acc).median,
          ...(bs ? { plainOne: stats(p1).median, speedupBest: bs.median, speedupBestRange: [bs.min, bs.max] as [number, number] } : {}),
        });
        }
      }
    }
  } finally {
    trained?.remove();
    await disposeBackends();
  }
  return rows;
}

/** Markdown table of the rows. */
export function formatSpeculativeRows(rows: SpeculativeRow[]): string {
  const f = (x: number): string => x.toFixed(0);
  const lines = ['| threads | decode weights | draft weights | drafts per step | new tokens | plain tok/s median (min–max) | speculative tok/s median (min–max) | speed-up median (min–max) | plain on 1 thread, same rounds | speed-up over the faster plain | MTP acceptance |', '|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    const best = r.speedupBest !== undefined ? `${r.speedupBest.toFixed(2)}× (${r.speedupBestRange![0].toFixed(2)}–${r.speedupBestRange![1].toFixed(2)})` : '—';
    lines.push(`| ${r.threads} | ${r.weights} | ${r.drafts === 'q8_0' ? 'MTP Q8_0' : r.weights} | ${r.draftTokens} | ${r.maxTokens} | ${f(r.plain)} (${f(r.plainRange[0])}–${f(r.plainRange[1])}) | ${f(r.speculative)} (${f(r.speculativeRange[0])}–${f(r.speculativeRange[1])}) | ${r.speedup.toFixed(2)}× (${r.speedupRange[0].toFixed(2)}–${r.speedupRange[1].toFixed(2)}) | ${r.plainOne !== undefined ? f(r.plainOne) : '—'} | ${best} | ${(100 * r.acceptance).toFixed(1)}% |`);
  }
  return lines.join('\n');
}

/** CLI part: prints the table (or JSON) and, with --write, stores it in docs/results/bench.md. */
export async function runSpeculativeCli(o: SpeculativeOptions, argv: string[]): Promise<number> {
  const rows = await runSpeculativeBench(o, (s) => console.error(s));
  if (o.json) console.log(JSON.stringify(rows));
  else console.log(formatSpeculativeRows(rows));
  if (o.write) {
    const cmd = `npx frugal bench decode ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
    const body = `### decode --speculative\n\n\`${cmd}\` — ${new Date().toISOString().slice(0, 10)}, ${rows[0]?.backend ?? ''}\n\n${formatSpeculativeRows(rows)}`;
    console.error(`wrote ${writeResults('decode-speculative', body)}`);
  }
  return 0;
}
