/**
 * What a speculative step costs as the model grows, with acceptance taken out: random-init models
 * of increasing size, CPU time per pass (process.cpuUsage, so a preempted pass is not charged for
 * waiting) of a 1-row main pass (a plain step), a 2-row main pass (the verify), and the MTP draft
 * pass, on the native decode engine. From these, the step-cost ratio c = (verify + draft) / plain
 * and the speed-up a given acceptance α can reach, (1 + α) / c — the ceiling for that model size,
 * before any per-step bookkeeping. Also the mean number of distinct routed experts the two verify
 * rows use per MoE layer (one row uses k).
 * Run: `npx tsx bench/speculative-scaling.ts [threads] [reps]`.
 */
import { useBackend, describeBackend, disposeBackends } from '../src/backend/setup.js';
import { RowDecoder } from '../src/model/decode.js';
import { initParams, KVCache } from '../src/model/deepseek.js';
import { makeConfig, presets, type DeepSeekConfig } from '../src/model/config.js';
import { loadavg } from 'node:os';

const threads = Number(process.argv[2] ?? 1), reps = Number(process.argv[3] ?? 200);
await useBackend('native', { threads });
console.log(describeBackend());
console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);

const sizes: Array<[string, DeepSeekConfig]> = [
  ['demo (default train)', presets.demo!],
  ['small', presets.small!],
  ['H512 L8 E16', makeConfig({ ...presets.small!, hiddenSize: 512, numHiddenLayers: 8, moeIntermediateSize: 512, intermediateSize: 1536, numAttentionHeads: 8 })],
  ['H1024 L8 E16', makeConfig({ ...presets.small!, hiddenSize: 1024, numHiddenLayers: 8, moeIntermediateSize: 1024, intermediateSize: 3072, numAttentionHeads: 16, kvLoraRank: 256, qLoraRank: 384 })],
];
const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;

console.log('\n| model | params (M) | plain 1-row pass µs | verify 2-row pass µs | draft pass µs | c = (verify+draft)/plain | ceiling at α=0.9 | at α=0.67 |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|');
for (const [name, cfg] of sizes) {
  const p = initParams(cfg, { seed: 1 });
  const dec = new RowDecoder(p, cfg);
  const ctx = 256;
  const cache = new KVCache(cfg, 1, ctx + 8, 'absorb', 1);
  // Fill 128 positions so attention reads a realistic history.
  for (let i = 0; i < 128; i++) { dec.main([(i * 7) % cfg.vocabSize], [{ cache, start: i, rows: 1 }]); cache.length = i + 1; }
  const H = cfg.hiddenSize;
  const hid = new Float32Array(2 * H).map((_, i) => Math.sin(i));
  const t1: number[] = [], t2: number[] = [], td: number[] = [];
  for (let r = 0; r < reps; r++) {
    const n = 128;
    let t = cpu(); dec.main([r % cfg.vocabSize], [{ cache, start: n, rows: 1 }]); t1.push(cpu() - t);
    t = cpu(); dec.main([r % cfg.vocabSize, (r * 3) % cfg.vocabSize], [{ cache, start: n, rows: 2 }]); t2.push(cpu() - t);
    t = cpu(); dec.mtp(0, hid, [r % cfg.vocabSize, (r * 5) % cfg.vocabSize], [{ cache, start: n - 1, rows: 2 }], 1); td.push(cpu() - t);
  }
  const a = median(t1), b = median(t2), d = median(td);
  const c = (b + d) / a;
  const params = p.layers.length ? [...Object.values(p)].length : 0; void params;
  let count = 0; for (const l of p.layers) for (const t of [l.attn.qProj, l.attn.qAProj, l.attn.qBProj, l.attn.kvAProj, l.attn.kvBProj, l.attn.oProj]) if (t) count += t.size;
  for (const l of p.layers) { if (l.mlp) count += l.mlp.gate.size * 3; if (l.moe) count += (l.moe.experts.length + (l.moe.shared ? 1 : 0)) * l.moe.experts[0]!.gate.size * 3; }
  count += p.embed.size + p.head.size;
  console.log(`| ${name} | ${(count / 1e6).toFixed(1)} | ${(a * 1000).toFixed(0)} | ${(b * 1000).toFixed(0)} | ${(d * 1000).toFixed(0)} | ${c.toFixed(2)} | ${(1.9 / c).toFixed(2)}× | ${(1.67 / c).toFixed(2)}× |`);
}
await disposeBackends();
