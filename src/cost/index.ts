/**
 * The training-cost meter in one call: `estimateCost(config, options)` → parameters, FLOPs per
 * token (with breakdown), memory per recipe, KV cache, GPU-hours, dollars and wall-clock days.
 *
 * Time model: GPU-seconds = tokens × FLOPs/token ÷ (MFU × dense BF16 peak). MFU is measured
 * against the main model's FLOPs (MTP excluded) by default, the convention behind DeepSeek-V3's
 * "~250 GFLOP/token, ~39% MFU"; `countMtp: true` charges the MTP module's FLOPs as well.
 * Browser-safe.
 */
import type { DeepSeekConfig } from '../model/config.js';
import { type FlopsBreakdown, flopsPerToken, sixN } from './flops.js';
import { type Gpu, getGpu } from './hardware.js';
import { type KvCache, type Recipe, type StateBytes, activationBytesPerToken, kvCacheBytesPerToken, stateBytes } from './memory.js';
import { type ArchConfig, type ParamCounts, countParams } from './params.js';

export * from './params.js';
export * from './flops.js';
export * from './memory.js';
export * from './hardware.js';
export * from './pipeline.js';

/** Inputs of a cost estimate; every field has the DeepSeek-V3 pre-training default. */
export interface CostOptions {
  /** Training tokens (14.8e12). */
  tokens: number;
  /** Training sequence length (4096). */
  seq: number;
  /** GPU id from the hardware table ('h800'). */
  gpu: string;
  /** GPUs in the cluster (2048), for wall-clock days. */
  gpus: number;
  /** $ per GPU-hour (2). */
  price: number;
  /** Model FLOPs utilisation against the dense BF16 peak (0.39). */
  mfu: number;
  /** Memory recipe ('fp8'). */
  recipe: Recipe;
  /** Charge the MTP module's FLOPs in the time estimate (false: the published-MFU convention). */
  countMtp: boolean;
}

export const defaultCostOptions: Readonly<CostOptions> = Object.freeze({
  tokens: 14.8e12, seq: 4096, gpu: 'h800', gpus: 2048, price: 2, mfu: 0.39, recipe: 'fp8', countMtp: false,
});

/** The full estimate. */
export interface CostEstimate {
  options: CostOptions;
  gpu: Gpu;
  params: ParamCounts;
  flops: FlopsBreakdown;
  /** Training FLOPs per token used for time (main model, or with MTP if countMtp). */
  flopsPerToken: number;
  /** 6 × activated parameters, and how far below `flops.trainingMain` it is (0.11 = 11% low). */
  sixN: { flopsPerToken: number; lowBy: number };
  totalFlops: number;
  /** Achieved FLOP/s per GPU = mfu × BF16 peak. */
  flopsPerSecondPerGpu: number;
  gpuHours: number;
  usd: number;
  days: number;
  memory: { state: StateBytes; activationsPerToken: { recompute: number; noRecompute: number } };
  kvCache: KvCache;
}

/** Validates options (names the bad one) and computes the estimate. */
export function estimateCost(c: ArchConfig, opts: Partial<CostOptions> = {}): CostEstimate {
  const o: CostOptions = { ...defaultCostOptions, ...opts };
  const bad: string[] = [];
  if (!(o.tokens > 0)) bad.push(`tokens must be > 0, got ${o.tokens}`);
  if (!(Number.isInteger(o.seq) && o.seq > 0)) bad.push(`seq must be a positive integer, got ${o.seq}`);
  if (!(Number.isInteger(o.gpus) && o.gpus > 0)) bad.push(`gpus must be a positive integer, got ${o.gpus}`);
  if (!(o.price >= 0)) bad.push(`price must be ≥ 0, got ${o.price}`);
  if (!(o.mfu > 0 && o.mfu <= 1)) bad.push(`mfu must be in (0, 1], got ${o.mfu} (0.39 = 39% of the BF16 peak)`);
  if (!['fp32', 'bf16', 'fp8'].includes(o.recipe)) bad.push(`recipe must be fp32, bf16 or fp8, got ${o.recipe}`);
  if (bad.length) throw new Error(`cost: ${bad.join('; ')}`);
  const gpu = getGpu(o.gpu);
  const params = countParams(c);
  const flops = flopsPerToken(c, o.seq);
  const perToken = o.countMtp ? flops.training : flops.trainingMain;
  const totalFlops = perToken * o.tokens;
  const flopsPerSecondPerGpu = o.mfu * gpu.bf16Tflops * 1e12;
  const gpuHours = totalFlops / flopsPerSecondPerGpu / 3600;
  const six = sixN(params.active);
  return {
    options: o, gpu, params, flops, flopsPerToken: perToken,
    sixN: { flopsPerToken: six, lowBy: 1 - six / flops.trainingMain },
    totalFlops, flopsPerSecondPerGpu, gpuHours, usd: gpuHours * o.price, days: gpuHours / o.gpus / 24,
    memory: {
      state: stateBytes(c, o.recipe),
      activationsPerToken: { recompute: activationBytesPerToken(c, o.recipe, true), noRecompute: activationBytesPerToken(c, o.recipe, false) },
    },
    kvCache: kvCacheBytesPerToken(c, 2),
  };
}

/** MFU (vs dense BF16 peak) implied by a published GPU-hour figure for `tokens` at `seq`. */
export function impliedMfu(c: ArchConfig, tokens: number, seq: number, gpuHours: number, gpu: string, countMtp = false): number {
  const f = flopsPerToken(c, seq);
  return ((countMtp ? f.training : f.trainingMain) * tokens) / (gpuHours * 3600 * getGpu(gpu).bf16Tflops * 1e12);
}

/** DeepSeek-V3's published budget (report Table 1): H800 GPU-hours by stage, $2/GPU-hour. */
export const deepseekV3Published = Object.freeze({
  preTraining: 2_664_000, contextExtension: 119_000, postTraining: 5_000, total: 2_788_000, usd: 5_576_000,
  /** Context extension (report §4.3): 1000 steps at 32K × batch 1920, then 1000 at 128K × batch 480. */
  contextExtensionPhases: [{ seq: 32768, tokens: 1000 * 1920 * 32768 }, { seq: 131072, tokens: 1000 * 480 * 131072 }],
});

/** Re-exported for callers that only import the meter. */
export type { DeepSeekConfig };
