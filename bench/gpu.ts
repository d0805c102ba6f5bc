/**
 * `frugal bench gpu`: the webgpu backend in Node (Dawn, the `webgpu` npm package) on whatever GPU
 * the machine has — GEMM GFLOP/s (device time, and per call with transfers), training tokens/s and
 * batch-1 decode tokens/s — with the fraction of the GPU's FP32 and FP16 peaks. Short and
 * self-contained: `npm ci && npx frugal bench gpu --write` on a Linux machine with a GPU driver
 * (docs/browser.md). The defaults' peaks are an NVIDIA H200 SXM's (FP32 67 TFLOP/s without tensor
 * cores, FP16 989 TFLOP/s dense on tensor cores); give --peak-fp32 / --peak-fp16 for another GPU.
 *
 * Contract: every GEMM result is checked against a float64 dot product on sampled entries before
 * its time is reported (a wrong kernel never posts a number); timings are medians with ranges.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs, usage, type OptionSpec } from '../src/cli/args.js';
import { UsageError } from '../src/errors.js';
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup-node.js';
import { getBackend, setBackend } from '../src/backend/registry.js';
import type { WebGPUBackend } from '../src/backend/webgpu/index.js';
import type { Kernels } from '../src/backend/registry.js';
import { presets } from '../src/model/config.js';
import { initParams } from '../src/model/deepseek.js';
import { Trainer, defaultTrainerOptions } from '../src/train/trainer.js';
import { generate, type Model } from '../src/infer/generate.js';
import { f32RowsLinear, type RowsLinear } from '../src/model/decode.js';

export const OPTIONS: OptionSpec = {
  quick: { type: 'boolean', help: 'small shapes and configs (minutes on a software GPU such as SwiftShader)' },
  write: { type: 'boolean', help: 'write docs/results/gpu.md' },
  'peak-fp32': { type: 'number', help: 'the GPU\'s FP32 peak in TFLOP/s (default 67: H200 SXM)', default: 67 },
  'peak-fp16': { type: 'number', help: 'the GPU\'s dense FP16 tensor peak in TFLOP/s (default 989: H200 SXM)', default: 989 },
  json: { type: 'boolean', help: 'print the rows as one JSON array' },
  'no-gemm': { type: 'boolean', help: 'skip the GEMM rows (model rows only)' },
  'no-resident': { type: 'boolean', help: 'upload every operand with every call (the backend before device residency), to compare transfers' },
  'no-engine': { type: 'boolean', help: 'decode without the whole-pass decode engine (one job per kernel call, as before it), to compare' },
  'compare-fused': { type: 'boolean', help: 'also time training steps with the multi-pass kernels on and off, alternating step by step in one process' },
  'no-fused': { type: 'boolean', help: 'drop the multi-pass kernels (grouped MoE FFN, fused output head, MatMulBatch): the engine composes them from single kernels, one job each, to compare' },
};
/** The webgpu kernels --no-fused removes (the engine has a composed path for each). */
const FUSED = ['MoeFfnForward', 'MoeFfnBackward', 'LinearCrossEntropy', 'MatMulBatch'] as const;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = s / 2 ** 32 - 0.5; }
  return a;
}

interface Row { what: string; value: string; detail: string }

export async function run(argv: string[]): Promise<number> {
  const o = parseArgs(argv, OPTIONS);
  if (o.help) { console.log(usage('bench gpu', '[options]', OPTIONS)); return 0; }
  const quick = o.quick === true;
  const peak32 = Number(o['peak-fp32']) * 1e12, peak16 = Number(o['peak-fp16']) * 1e12;
  if (!(peak32 > 0 && peak16 > 0)) throw new UsageError('--peak-fp32 and --peak-fp16 must be positive TFLOP/s');
  await useBackend('webgpu');
  const gpu = getBackend() as WebGPUBackend;
  if (o['no-resident'] === true) gpu.setResidency(false);
  if (o['no-fused'] === true) {
    for (const k of FUSED) delete gpu.kernels[k];
    setBackend('webgpu'); // forgets the kernels already resolved
  }
  const resident = o['no-resident'] !== true;
  const log = (s: string): void => { if (o.json !== true) console.error(s); };
  const desc = describeBackend();
  log(`# ${desc}`);
  const rows: Row[] = [];
  try {
    // GEMM: device time from (T(P passes) − T(1 pass)) / (P − 1), and one kernel call with transfers.
    for (const n of o['no-gemm'] === true ? [] : quick ? [256, 512] : [1024, 2048, 4096, 8192]) {
      const a = fill(n * n, 1), b = fill(n * n, 2), c = new Float32Array(n * n);
      const P = quick ? 4 : 21;
      gpu.timeGemm(a, b, c, n, n, n, 1);
      for (let t = 0; t < 16; t++) {
        const i = (t * 7919) % n, j = (t * 104729) % n;
        let ref = 0;
        for (let k = 0; k < n; k++) ref += a[i * n + k]! * b[k * n + j]!;
        if (Math.abs(c[i * n + j]! - ref) > 1e-3 * Math.sqrt(n)) throw new Error(`GEMM ${n}: C[${i},${j}] = ${c[i * n + j]} but the float64 dot product is ${ref}; not timing a wrong kernel`);
      }
      const dev: number[] = [], call: number[] = [];
      for (let r = 0; r < 3; r++) {
        const t1 = gpu.timeGemm(a, b, c, n, n, n, 1), tp = gpu.timeGemm(a, b, c, n, n, n, P);
        dev.push(Math.max(1e-6, (tp - t1) / (P - 1)));
        call.push(t1);
      }
      const flops = 2 * n * n * n, d = median(dev);
      rows.push({ what: `gemm ${n}x${n}x${n} device`, value: `${(flops / d / 1e6).toPrecision(3)} GFLOP/s`, detail: `${d.toFixed(2)} ms (range ${Math.min(...dev).toFixed(2)}–${Math.max(...dev).toFixed(2)}); ${(100 * flops / (d / 1e3) / peak32).toFixed(1)}% of FP32 peak, ${(100 * flops / (d / 1e3) / peak16).toFixed(2)}% of FP16 peak` });
      rows.push({ what: `gemm ${n}x${n}x${n} per call`, value: `${(flops / median(call) / 1e6).toPrecision(3)} GFLOP/s`, detail: `${median(call).toFixed(1)} ms with upload of A, B and readback of C` });
      log(`${rows[rows.length - 2]!.what}: ${rows[rows.length - 2]!.value} — ${rows[rows.length - 2]!.detail}`);
    }
    // Training: optimizer steps of a model config on random tokens (fwd + bwd + AdamW, MTP on).
    const name = quick ? 'tiny' : 'small';
    const cfg = structuredClone(presets[name]!);
    const batch = quick ? 2 : 8, seq = quick ? 32 : 256, steps = quick ? 3 : 8;
    const tokens = new Int32Array(batch * (seq + 1) * (steps + 2) * 2).map((_, i) => (i * 7919) % cfg.vocabSize);
    const times: number[] = [], st: Array<ReturnType<WebGPUBackend['stats']>> = [];
    let last = performance.now();
    const trainer = new Trainer({ cfg, params: initParams(cfg, { seed: 1 }), train: tokens, val: tokens.subarray(0, batch * (seq + 1) * 2), meter: { flopsPerToken: 0, peakFlops: 1, usdPerToken: 0 },
      options: { ...defaultTrainerOptions, steps: steps + 1, batch, seq, evalEvery: 10_000, logEvery: 10_000, saveEvery: 0, evalBatches: 1, warmup: 1 } }, {
      onStep: () => { const now = performance.now(); times.push(now - last); last = now; st.push(gpu.stats()); },
    });
    await trainer.run();
    const stepMs = median(times.slice(1));
    rows.push({ what: `train ${name} (batch ${batch} × seq ${seq})`, value: `${(batch * seq / stepMs * 1e3).toFixed(0)} tokens/s`, detail: `${stepMs.toFixed(0)} ms per step (median of ${times.length - 1}, range ${Math.min(...times.slice(1)).toFixed(0)}–${Math.max(...times.slice(1)).toFixed(0)})` });
    log(`${rows[rows.length - 1]!.what}: ${rows[rows.length - 1]!.value}`);
    // Transfers of one step after the first (the first uploads the resident weights and moments).
    const s1 = st[st.length - 2]!, s2 = st[st.length - 1]!;
    const paramMB = trainer.trainable.reduce((s, p) => s + p.size * 4, 0) / 2 ** 20;
    rows.push({ what: `train ${name} transfers per step`, value: `${s2.jobs - s1.jobs} jobs`, detail: `${((s2.upBytes - s1.upBytes) / 2 ** 20).toFixed(2)} MB up, ${((s2.downBytes - s1.downBytes) / 2 ** 20).toFixed(2)} MB down (parameters ${paramMB.toFixed(2)} MB; residency ${resident ? 'on' : 'off'}; fused kernels ${o['no-fused'] === true ? 'off' : 'on'})` });
    log(`${rows[rows.length - 1]!.what}: ${rows[rows.length - 1]!.value}, ${rows[rows.length - 1]!.detail}`);
    if (o['compare-fused'] === true && o['no-fused'] !== true) rows.push(...await compareFused(gpu, name, batch, seq, quick));
    // Decode: batch-1 greedy tokens with the KV cache, through the inference path (generate: RowDecoder,
    // on the whole-pass decode engine unless --no-engine: a rows linear without engine weights).
    const engine = o['no-engine'] !== true;
    const plainRows: RowsLinear = (x, r, w, out) => f32RowsLinear(x, r, w, out);
    const model: Model = { cfg, params: initParams(cfg, { seed: 2 }), ...(engine ? {} : { rowsLinear: plainRows }) };
    const prompt = Array.from({ length: 16 }, (_, i) => (i * 31) % cfg.vocabSize), gen = quick ? 8 : 64;
    const decode = (n: number): number[] => generate(model, prompt, { greedy: true, maxTokens: n }).tokens;
    decode(gen); // warm: the weights it reads become resident
    const d0 = gpu.stats(), t0 = performance.now();
    decode(gen);
    const ms = performance.now() - t0, d1 = gpu.stats();
    // Transfers per decoded token: the same run minus its prefill (a 1-token run is the prefill alone).
    decode(1);
    const d2 = gpu.stats(), per = gen - 1;
    const dd = { jobs: (d1.jobs - d0.jobs) - (d2.jobs - d1.jobs), up: (d1.upBytes - d0.upBytes) - (d2.upBytes - d1.upBytes), down: (d1.downBytes - d0.downBytes) - (d2.downBytes - d1.downBytes) };
    rows.push({ what: `decode ${name} (batch 1, ${prompt.length}→${prompt.length + gen})`, value: `${(gen / ms * 1e3).toFixed(1)} tokens/s`, detail: `${(ms / gen).toFixed(1)} ms per token incl. prefill` });
    log(`${rows[rows.length - 1]!.what}: ${rows[rows.length - 1]!.value}`);
    rows.push({ what: `decode ${name} transfers per token`, value: `${(dd.jobs / per).toFixed(0)} jobs`, detail: `${(dd.up / per / 1024).toFixed(1)} kB up, ${(dd.down / per / 1024).toFixed(1)} kB down (decode steps after the prefill; residency ${resident ? 'on' : 'off'}, decode engine ${engine ? 'on' : 'off'})` });
    log(`${rows[rows.length - 1]!.what}: ${rows[rows.length - 1]!.value}, ${rows[rows.length - 1]!.detail}`);
  } finally {
    const s = gpu.stats();
    log(`# ${s.jobs} GPU jobs, ${(s.upBytes / 2 ** 20).toFixed(0)} MB up, ${(s.downBytes / 2 ** 20).toFixed(0)} MB down`);
    await disposeBackends();
  }
  if (o.json === true) console.log(JSON.stringify(rows));
  if (o.write === true) {
    const file = path.join(process.cwd(), 'docs', 'results', 'gpu.md');
    mkdirSync(path.dirname(file), { recursive: true });
    const cmd = `npx frugal bench gpu${quick ? ' --quick' : ''}`;
    writeFileSync(file, `# WebGPU backend on a GPU\n\n\`${cmd}\` — ${new Date().toISOString().slice(0, 10)}, ${desc}\n\n| what | result | detail |\n|---|---|---|\n${rows.map((r) => `| ${r.what} | ${r.value} | ${r.detail} |`).join('\n')}\n`);
    console.error(`wrote ${file}`);
  }
  return 0;
}

/**
 * Training step time with the multi-pass kernels on and off, alternating step by step in one
 * trainer (the same machine load for both), after a warm-up step of each: median ms and the ratio.
 */
async function compareFused(gpu: WebGPUBackend, name: string, batch: number, seq: number, quick: boolean): Promise<Row[]> {
  const saved: Partial<Kernels> = {};
  for (const k of FUSED) Object.assign(saved, { [k]: gpu.kernels[k] });
  const setFused = (on: boolean): void => {
    for (const k of FUSED) { if (on) Object.assign(gpu.kernels, { [k]: saved[k] }); else delete gpu.kernels[k]; }
    setBackend('webgpu');
  };
  const cfg = structuredClone(presets[name]!), pairs = quick ? 4 : 6;
  const tokens = new Int32Array(batch * (seq + 1) * (2 * pairs + 4) * 2).map((_, i) => (i * 7919 + 13) % cfg.vocabSize);
  const ms: Record<'on' | 'off', number[]> = { on: [], off: [] };
  let on = true, step = 0, last = performance.now();
  setFused(on);
  const trainer = new Trainer({ cfg, params: initParams(cfg, { seed: 3 }), train: tokens, val: tokens.subarray(0, batch * (seq + 1) * 2), meter: { flopsPerToken: 0, peakFlops: 1, usdPerToken: 0 },
    options: { ...defaultTrainerOptions, steps: 2 * pairs + 2, batch, seq, evalEvery: 10_000, logEvery: 10_000, saveEvery: 0, evalBatches: 1, warmup: 1 } }, {
    onStep: () => {
      const now = performance.now();
      if (step++ >= 2) ms[on ? 'on' : 'off'].push(now - last); // steps 0 and 1 warm each mode
      on = !on;
      setFused(on);
      last = performance.now();
    },
  });
  try { await trainer.run(); } finally { setFused(true); }
  const a = median(ms.on), b = median(ms.off), r = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
  return [{ what: `train ${name} step, multi-pass kernels on vs off`, value: `${(b / a).toFixed(2)}× faster on`, detail: `${a.toFixed(0)} ms on (range ${r(ms.on)}) vs ${b.toFixed(0)} ms off (range ${r(ms.off)}), ${ms.on.length} steps each, alternating` }];
}
