/**
 * Where a speculative step's time goes, next to a plain step's: greedy generations of a trained
 * model, plain and speculative alternating, with `RowDecoder.main` / `.mtp` timed by row count and
 * the kernel calls per step counted. Medians over rounds. Times are this process's CPU time
 * (process.cpuUsage: user + system), not wall time, so on a shared machine a preempted step is not
 * charged for the time it waited; at 1 thread that is the work a step does. For before/after
 * checks; the fair comparison is `frugal bench decode --speculative`.
 * `--wall` times wall-clock µs instead (what a step costs at 2 threads, where CPU time counts both).
 * Run: `npx tsx bench/speculative-steps.ts MODEL_DIR [threads] [rounds] [--bf16] [--q8-drafts] [--wall]`.
 */
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { kernelCounts, resetKernelCounts } from '../src/backend/registry.js';
import { RowDecoder } from '../src/model/decode.js';
import { Generation, type Model } from '../src/infer/generate.js';
import { withBf16Weights } from '../src/infer/bf16-node.js';
import { withQ8Drafts } from '../src/infer/q8-node.js';
import { openModel } from '../src/serve/model-node.js';
import { stats } from './common.js';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const [dir, thArg = '1', rArg = '7'] = args;
if (!dir) throw new Error('usage: npx tsx bench/speculative-steps.ts MODEL_DIR [threads] [rounds] [--bf16] [--q8-drafts]');
await useBackend('auto', { threads: Number(thArg) });
console.log(describeBackend());
const opened = await openModel(dir);
let model: Model = opened.model;
if (process.argv.includes('--bf16')) model = withBf16Weights(model).model;
if (process.argv.includes('--q8-drafts')) model = withQ8Drafts(model).model;
const prompt = opened.tokenizer ? opened.tokenizer.encode('The Congress of the United States') : [1, 2, 3];
const vocabLimit = opened.tokenizer?.vocabSize ?? model.cfg.vocabSize;

// Time RowDecoder passes by kind and row count (main1, main2, mtp1, mtp2).
const spent = new Map<string, number>();
const wall = process.argv.includes('--wall');
const unit = wall ? 'wall' : 'CPU';
/** µs now: wall clock, or this process's CPU time. */
const clock = (): number => { if (wall) return performance.now() * 1000; const c = process.cpuUsage(); return c.user + c.system; };
for (const name of ['main', 'mtp'] as const) {
  const orig = RowDecoder.prototype[name] as (...a: unknown[]) => unknown;
  (RowDecoder.prototype as unknown as Record<string, unknown>)[name] = function (this: RowDecoder, ...a: unknown[]): unknown {
    const t0 = clock();
    const r = orig.apply(this, a);
    const key = `${name}${(a[name === 'main' ? 0 : 2] as ArrayLike<number>).length}`;
    spent.set(key, (spent.get(key) ?? 0) + (clock() - t0) / 1000);
    return r;
  };
}

const rows: Record<string, number[]> = {};
const push = (k: string, v: number): void => { (rows[k] ??= []).push(v); };
for (let r = 0; r <= Number(rArg); r++) {
  for (const spec of [false, true]) {
    spent.clear();
    resetKernelCounts();
    const g = new Generation(model, prompt, { greedy: true, maxTokens: 500, speculative: spec, vocabLimit });
    g.step();
    const c0 = clock();
    while (!g.done) g.step();
    const us = clock() - c0;
    const res = g.result();
    const steps = spec ? res.speculative!.proposed : res.tokens.length - 1;
    const calls = Object.values(kernelCounts()).reduce((s, n) => s + n, 0);
    if (r === 0) continue; // warm-up
    const tag = spec ? 'spec' : 'plain';
    push(`${tag} ${unit} µs/step`, us / steps);
    push(`${tag} tokens/step`, res.tokens.length / (steps + 1));
    push(`${tag} kernel calls/step`, calls / steps);
    for (const [k, ms] of spent) push(`${tag} ${k} ${unit} µs/step`, (ms * 1000) / steps);
    if (spec) push('acceptance', res.speculative!.acceptanceRate);
  }
}
for (const [k, v] of Object.entries(rows)) {
  const s = stats(v);
  console.log(`${k.padEnd(28)} ${s.median.toFixed(2).padStart(9)}  (${s.min.toFixed(2)}–${s.max.toFixed(2)})`);
}
await disposeBackends();
