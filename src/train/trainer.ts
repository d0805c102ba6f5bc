/**
 * The training loop (browser-safe; all I/O goes through hooks): micro-batches with gradient
 * accumulation → loss (main + λ·MTP + α·sequence balance) → backward → NaN/Inf check → global-norm
 * clipping → AdamW at the scheduled lr → auxiliary-loss-free gate-bias update. Evaluation every
 * `evalEvery` steps (validation loss of the main head on fixed batches, plus a short sample).
 *
 * Contract:
 * - Deterministic given (params, data, options): no Math.random; eval never changes training state.
 * - `snapshot()` after step s + `restore()` on a fresh Trainer over the same data continues with
 *   exactly the losses the uninterrupted run has (parameters, gate biases, moments, data position).
 * - A step whose loss or gradient is not finite is skipped (no update, counted, logged); after
 *   `maxBadSteps` consecutive ones `run()` throws {@link TrainingDivergedError}. No snapshot is
 *   handed to `save` while the last step was bad, so the last good checkpoint stays intact.
 * - `shouldStop()` (e.g. SIGINT) is polled after every step; the loop saves ('interrupt') and returns.
 */
import { Tensor } from '../autograd/tensor.js';
import { backward, noGrad } from '../autograd/tape.js';
import * as op from '../ops/index.js';
import type { DeepSeekConfig } from '../model/config.js';
import { forward, KVCache, lossFn, trainableParams, type ModelParams } from '../model/deepseek.js';
import { AdamW, clipGradNorm, type AdamWState } from './optim.js';
import { checkSchedule, lrAt, type Schedule, type ScheduleKind } from './schedule.js';
import { countLoads, gateBias, layerMaxVio, routerParams, updateGateBias, type BiasUpdate, type LayerLoads } from './balance.js';
import { BatchSampler, type SamplerState } from './data.js';

/** Every knob of a run (the CLI fills them from flags and defaults). */
export interface TrainerOptions {
  steps: number;
  batch: number;
  seq: number;
  gradAccum: number;
  lr: number;
  warmup: number;
  schedule: ScheduleKind;
  minLrRatio: number;
  decayStart: number;
  weightDecay: number;
  clip: number;
  mtpWeight: number;
  biasGamma: number;
  /** Bias rule: 'sign' (DeepSeek) or 'relative' (step ∝ relative load error). */
  biasUpdate: BiasUpdate;
  /** Learning-rate multiplier of the router weights (an AdamW parameter group); 1 = same as the rest. */
  routerLrScale: number;
  auxAlpha: number;
  evalEvery: number;
  evalBatches: number;
  logEvery: number;
  /** 0 = only the final save. */
  saveEvery: number;
  /**
   * Steps the learning-rate schedule spans (default `steps`). A run extended past its plan keeps
   * its schedule: steps beyond `scheduleSteps` run at the schedule's final rate, never re-warm.
   */
  scheduleSteps?: number;
  seed: number;
  momentDtype: 'f32' | 'bf16';
  recompute: boolean;
  sampleTokens: number;
  maxBadSteps: number;
}

export const defaultTrainerOptions: Readonly<TrainerOptions> = Object.freeze({
  steps: 200, batch: 8, seq: 64, gradAccum: 1, lr: 3e-3, warmup: 20, schedule: 'wsd', minLrRatio: 0.1, decayStart: 0.5,
  weightDecay: 0.1, clip: 1.0, mtpWeight: 0.3, biasGamma: 0.001, biasUpdate: 'sign', routerLrScale: 1, auxAlpha: 0.0001, evalEvery: 50, evalBatches: 4,
  logEvery: 10, saveEvery: 100, seed: 1234, momentDtype: 'f32', recompute: false, sampleTokens: 24, maxBadSteps: 3,
} satisfies TrainerOptions);

/** Progress that a checkpoint must carry besides parameters and optimizer moments. */
export interface TrainerState {
  /** Optimizer steps completed (skipped ones included). */
  step: number;
  tokensSeen: number;
  sampler: SamplerState;
  skippedSteps: number;
  /** Wall time spent in steps so far (for the summary; not part of determinism). */
  elapsedMs: number;
}

export interface TrainerSnapshot { state: TrainerState; optim: AdamWState }

/** One logged line (also one object of metrics.jsonl). */
export interface LogEntry {
  step: number;
  loss: number;
  mainLoss: number;
  mtpLoss: number | null;
  valLoss: number | null;
  lr: number;
  gradNorm: number;
  tokensPerSec: number;
  mfu: number;
  maxVio: number;
  tokensSeen: number;
  usd: number;
  skippedSteps: number;
  elapsedSec: number;
  /** Per MoE layer over the interval: summed expert loads, mean MaxVio, the gate bias now. */
  experts?: ExpertStats;
  /** The eval sample, at steps that evaluated. */
  sample?: string | null;
}

/**
 * Expert balance of one log interval, per MoE layer (main layers, then MTP layers): token counts
 * per expert summed over the interval's steps, the layer's MaxVio averaged over those steps, and
 * its aux-loss-free correction bias after the interval's last update (null when it has none).
 */
export interface ExpertStats { layers: number[]; loads: Float64Array[]; maxVio: number[]; bias: (Float32Array | null)[] }

/** Cost meter inputs: FLOPs per trained token, this machine's peak FLOP/s, $ per trained token on the chosen GPU. */
export interface Meter { flopsPerToken: number; peakFlops: number; usdPerToken: number }

export interface TrainerHooks {
  onLog?(e: LogEntry): void;
  onEval?(e: { step: number; valLoss: number; sample: string }): void;
  /** Called after every step (progress bars). */
  onStep?(step: number, loss: number): void;
  /** A skipped (non-finite) step. */
  onSkip?(step: number, why: string): void;
  save?(reason: 'interval' | 'interrupt' | 'final', snap: TrainerSnapshot): Promise<void>;
  shouldStop?(): boolean;
  /** Token ids → text for samples. */
  decode?(ids: number[]): string;
  /** After gradients are complete, before the finite check (fault injection in tests). */
  afterBackward?(step: number, params: Tensor[]): void;
}

export interface TrainerInit {
  cfg: DeepSeekConfig;
  params: ModelParams;
  train: Int32Array;
  val: Int32Array;
  options: TrainerOptions;
  meter: Meter;
  /** FP8 (or other) projection linear passed to the model. */
  projLinear?: (x: Tensor, w: Tensor) => Tensor;
  /** Prompt for the eval sample. */
  promptIds?: number[];
  /** Tokenizer vocabulary size (samples stay below it). */
  sampleVocab?: number;
  eosId?: number | null;
}

/** Thrown after `maxBadSteps` consecutive non-finite steps. */
export class TrainingDivergedError extends Error {}

/** Result of `run()`. */
export interface TrainResult { state: TrainerState; interrupted: boolean; lastLog: LogEntry | null; firstLoss: number | null; finalValLoss: number | null }

/** Seeded uniform [0, 1) generator (mulberry32). */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Temperature / top-k sampling with the KV cache; temperature 0 = greedy. */
export function sampleTokens(p: ModelParams, cfg: DeepSeekConfig, prompt: number[], maxNew: number, o: { temperature: number; topK: number; seed: number; eosId?: number | null; vocab?: number }): number[] {
  return noGrad(() => {
    const rand = seededRandom(o.seed);
    const cache = new KVCache(cfg, 1, prompt.length + maxNew, 'absorb');
    let logits = forward(p, cfg, Tensor.ints(prompt, [1, prompt.length]), { cache }).logits.f32;
    const V = cfg.vocabSize, out: number[] = [];
    const usable = Math.min(V, o.vocab ?? V); // a tokenizer smaller than the model's vocab never sees ids ≥ its size
    for (let i = 0; i < maxNew; i++) {
      const row = logits.subarray(logits.length - V);
      let next = 0;
      if (o.temperature <= 0) { for (let j = 1; j < usable; j++) if (row[j]! > row[next]!) next = j; }
      else {
        const order = Array.from({ length: usable }, (_, j) => j).sort((a, b) => row[b]! - row[a]!).slice(0, Math.max(1, Math.min(usable, o.topK)));
        const mx = row[order[0]!]!;
        const w = order.map((j) => Math.exp((row[j]! - mx) / o.temperature));
        let r = rand() * w.reduce((a, b) => a + b, 0);
        next = order[order.length - 1]!;
        for (let k = 0; k < order.length; k++) { r -= w[k]!; if (r <= 0) { next = order[k]!; break; } }
      }
      out.push(next);
      if (o.eosId != null && next === o.eosId) break;
      if (i + 1 < maxNew) logits = forward(p, cfg, Tensor.ints([next], [1, 1]), { cache, startPos: cache.length }).logits.f32;
    }
    return out;
  });
}

/** Owns the optimizer, data samplers and state of one run. */
export class Trainer {
  readonly cfg: DeepSeekConfig;
  readonly params: ModelParams;
  readonly opts: TrainerOptions;
  readonly optimizer: AdamW;
  readonly trainable: Tensor[];
  readonly schedule: Schedule;
  private readonly sampler: BatchSampler;
  private readonly valBatches: { inputs: Int32Array; targets: Int32Array }[];
  private state: TrainerState;
  private consecutiveBad = 0;

  constructor(private readonly init: TrainerInit, private readonly hooks: TrainerHooks = {}) {
    const o = init.options;
    this.cfg = init.cfg;
    this.params = init.params;
    this.opts = o;
    for (const k of ['steps', 'batch', 'seq', 'gradAccum', 'evalEvery', 'logEvery', 'evalBatches', 'maxBadSteps'] as const) {
      if (!(Number.isInteger(o[k]) && o[k] >= 1)) throw new RangeError(`trainer: ${k} must be a positive integer, got ${o[k]}`);
    }
    if (!(Number.isInteger(o.saveEvery) && o.saveEvery >= 0)) throw new RangeError(`trainer: saveEvery must be a non-negative integer, got ${o.saveEvery}`);
    if (o.seq > init.cfg.maxPositionEmbeddings) throw new RangeError(`trainer: seq ${o.seq} exceeds the model's max_position_embeddings ${init.cfg.maxPositionEmbeddings}`);
    const total = o.scheduleSteps ?? o.steps;
    this.schedule = { kind: o.schedule, peak: o.lr, warmup: Math.min(o.warmup, total), total, minRatio: o.minLrRatio, decayStart: o.decayStart };
    checkSchedule(this.schedule);
    this.trainable = trainableParams(init.params, init.cfg);
    if (!(o.routerLrScale >= 0 && Number.isFinite(o.routerLrScale))) throw new RangeError(`trainer: routerLrScale must be a finite number >= 0, got ${o.routerLrScale}`);
    const routers = new Set(routerParams(init.params));
    const lrScale = this.trainable.map((t) => (routers.has(t) ? o.routerLrScale : 1));
    this.optimizer = new AdamW(this.trainable, { weightDecay: o.weightDecay, momentDtype: o.momentDtype, lrScale });
    this.sampler = new BatchSampler(init.train, o.batch, o.seq, o.seed);
    const valSampler = new BatchSampler(init.val, o.batch, o.seq, o.seed ^ 0x5a5a5a5a);
    this.valBatches = Array.from({ length: o.evalBatches }, () => valSampler.next());
    this.state = { step: 0, tokensSeen: 0, sampler: this.sampler.state(), skippedSteps: 0, elapsedMs: 0 };
  }

  /** Progress so far. */
  get progress(): Readonly<TrainerState> { return this.state; }

  /** State to checkpoint (after the current step). */
  snapshot(): TrainerSnapshot {
    return { state: { ...this.state, sampler: this.sampler.state() }, optim: this.optimizer.state() };
  }

  /** Continues from a snapshot (parameters and gate biases are restored by the caller). */
  restore(snap: TrainerSnapshot): void {
    this.optimizer.loadState(snap.optim);
    this.sampler.restore(snap.state.sampler);
    this.state = { ...snap.state, sampler: this.sampler.state() };
  }

  /** Validation loss (main head) on the fixed validation batches. */
  evaluate(): number {
    const { batch: B, seq: T } = this.opts;
    return noGrad(() => {
      let s = 0;
      for (const vb of this.valBatches) {
        const r = lossFn(this.params, this.cfg, new Tensor(vb.inputs, [B, T], 'i32'), new Tensor(vb.targets, [B * T], 'i32'), { mtpWeight: 0 });
        s += r.mainLoss;
      }
      return s / this.valBatches.length;
    });
  }

  /** One optimizer step over gradAccum micro-batches. Returns its numbers; skipped when not finite. */
  trainStep(): { loss: number; mainLoss: number; mtpLoss: number | null; gradNorm: number; lr: number; loads: LayerLoads; skipped: string | null } {
    const o = this.opts, step = this.state.step + 1;
    // Drop gradients (PyTorch's set_to_none): a parameter that gets none this step — an expert no
    // token was routed to — is not updated at all, whatever earlier steps did. Keeps resume exact.
    for (const p of this.trainable) p.grad = null;
    const loads: LayerLoads = new Map();
    let loss = 0, mainLoss = 0, mtpLoss: number | null = null;
    for (let micro = 0; micro < o.gradAccum; micro++) {
      const { inputs, targets } = this.sampler.next();
      const r = lossFn(this.params, this.cfg, new Tensor(inputs, [o.batch, o.seq], 'i32'), new Tensor(targets, [o.batch * o.seq], 'i32'), {
        mtpWeight: o.mtpWeight, balanceAlpha: o.auxAlpha, collectRouting: true, recompute: o.recompute,
        ...(this.init.projLinear ? { projLinear: this.init.projLinear } : {}),
      });
      backward(o.gradAccum > 1 ? op.mulScalar(r.loss, 1 / o.gradAccum) : r.loss);
      loss += r.loss.item() / o.gradAccum;
      mainLoss += r.mainLoss / o.gradAccum;
      if (r.mtpLoss !== null) mtpLoss = (mtpLoss ?? 0) + r.mtpLoss / o.gradAccum;
      countLoads(r.routing, this.cfg.nRoutedExperts, loads);
    }
    this.hooks.afterBackward?.(step, this.trainable);
    const gradNorm = clipGradNorm(this.trainable, o.clip);
    const lr = lrAt(this.schedule, step);
    this.state.step = step;
    this.state.tokensSeen += o.batch * o.seq * o.gradAccum;
    let skipped: string | null = null;
    if (!Number.isFinite(loss)) skipped = `loss is ${loss}`;
    else if (!Number.isFinite(gradNorm)) skipped = `gradient norm is ${gradNorm}`;
    if (skipped) {
      this.state.skippedSteps++;
      this.consecutiveBad++;
    } else {
      this.optimizer.step(lr);
      updateGateBias(this.params, this.cfg, loads, o.biasGamma, o.biasUpdate);
      this.consecutiveBad = 0;
    }
    return { loss, mainLoss, mtpLoss, gradNorm, lr, loads, skipped };
  }

  /** The interval's expert balance (layers in order; `steps` good steps were summed). */
  private expertStats(loads: LayerLoads, vio: Map<number, number>, steps: number): ExpertStats {
    const layers = [...loads.keys()].sort((a, b) => a - b);
    return {
      layers, loads: layers.map((l) => loads.get(l)!.slice()), maxVio: layers.map((l) => (steps ? vio.get(l)! / steps : 0)),
      bias: layers.map((l) => gateBias(this.params, this.cfg, l)?.f32.slice() ?? null),
    };
  }

  /** Runs until `steps` (or a stop request); see the file comment for saving and failures. */
  async run(): Promise<TrainResult> {
    const o = this.opts, m = this.init.meter;
    let lastLog: LogEntry | null = null, firstLoss: number | null = null, finalValLoss: number | null = null;
    let winMs = 0, winTokens = 0, winLoss = 0, winMain = 0, winMtp = 0, winMtpN = 0, winN = 0, winVio = 0, winNorm = 0;
    // Per layer over the interval: summed loads and summed per-step MaxVio.
    const winLoads: LayerLoads = new Map(), winLayerVio = new Map<number, number>();
    let sample: string | null = null;
    while (this.state.step < o.steps) {
      const t0 = performance.now();
      const r = this.trainStep();
      const dt = performance.now() - t0;
      this.state.elapsedMs += dt;
      const step = this.state.step;
      if (r.skipped) {
        this.hooks.onSkip?.(step, r.skipped);
        if (this.consecutiveBad >= o.maxBadSteps) {
          throw new TrainingDivergedError(`training diverged: ${this.consecutiveBad} consecutive steps with non-finite values (last at step ${step}: ${r.skipped}); lower --lr or check the data`);
        }
      } else {
        firstLoss ??= r.mainLoss;
        winLoss += r.loss; winMain += r.mainLoss; winN++; winNorm += r.gradNorm;
        if (r.mtpLoss !== null) { winMtp += r.mtpLoss; winMtpN++; }
        let stepVio = 0;
        for (const [layer, load] of r.loads) {
          const v = layerMaxVio(load);
          stepVio += v;
          winLayerVio.set(layer, (winLayerVio.get(layer) ?? 0) + v);
          const acc = winLoads.get(layer) ?? winLoads.set(layer, new Float64Array(load.length)).get(layer)!;
          for (let i = 0; i < load.length; i++) acc[i]! += load[i]!;
        }
        winVio += r.loads.size ? stepVio / r.loads.size : 0;
      }
      winMs += dt; winTokens += o.batch * o.seq * o.gradAccum;
      this.hooks.onStep?.(step, r.loss);
      const last = step === o.steps;
      let valLoss: number | null = null;
      if (step % o.evalEvery === 0 || last) {
        valLoss = this.evaluate();
        finalValLoss = valLoss;
        const prompt = this.init.promptIds ?? [this.init.eosId ?? 0];
        const ids = sampleTokens(this.params, this.cfg, prompt, o.sampleTokens, { temperature: 0.8, topK: 40, seed: (o.seed ^ step) >>> 0, eosId: this.init.eosId ?? null, ...(this.init.sampleVocab ? { vocab: this.init.sampleVocab } : {}) });
        sample = this.hooks.decode ? this.hooks.decode([...(this.init.promptIds ?? []), ...ids]) : ids.join(' ');
        this.hooks.onEval?.({ step, valLoss, sample });
      }
      if ((step % o.logEvery === 0 || last || valLoss !== null) && winN + this.consecutiveBad > 0) {
        const tps = winTokens / Math.max(1e-9, winMs / 1000);
        lastLog = {
          step, loss: winN ? winLoss / winN : NaN, mainLoss: winN ? winMain / winN : NaN, mtpLoss: winMtpN ? winMtp / winMtpN : null,
          valLoss, lr: r.lr, gradNorm: winN ? winNorm / winN : NaN, tokensPerSec: tps, mfu: (tps * m.flopsPerToken) / m.peakFlops,
          maxVio: winN ? winVio / winN : 0, tokensSeen: this.state.tokensSeen, usd: this.state.tokensSeen * m.usdPerToken,
          skippedSteps: this.state.skippedSteps, elapsedSec: this.state.elapsedMs / 1000,
          experts: this.expertStats(winLoads, winLayerVio, winN), sample,
        };
        this.hooks.onLog?.(lastLog);
        winMs = winTokens = winLoss = winMain = winMtp = winMtpN = winN = winVio = winNorm = 0;
        winLoads.clear(); winLayerVio.clear(); sample = null;
      }
      if (this.consecutiveBad === 0) {
        if (this.hooks.shouldStop?.()) {
          await this.hooks.save?.('interrupt', this.snapshot());
          return { state: this.state, interrupted: true, lastLog, firstLoss, finalValLoss };
        }
        if (last) await this.hooks.save?.('final', this.snapshot());
        else if (o.saveEvery > 0 && step % o.saveEvery === 0) await this.hooks.save?.('interval', this.snapshot());
      }
      // Let signal handlers and I/O run between steps.
      await new Promise<void>((res) => setTimeout(res, 0));
    }
    return { state: this.state, interrupted: false, lastLog, firstLoss, finalValLoss };
  }
}
