/**
 * Auxiliary-loss-free load balancing (DeepSeek-V3 report §2.1.2, SPEC §11) and its measure
 * (browser-safe). After each optimizer step every MoE layer's expert bias moves by γ toward
 * balance: b_i += γ·sign(mean load − load_i), loads counted from the step's routing (all
 * micro-batches). The bias only changes which experts are chosen, never the gate weights.
 * MaxVio = (max load − mean load) / mean load, per layer; `maxVio` averages it over layers.
 */
import type { Tensor } from '../autograd/tensor.js';
import type { DeepSeekConfig } from '../model/config.js';
import type { ModelParams, RoutingRecord } from '../model/deepseek.js';

/** Token counts per expert, keyed by layer index (MTP layers follow the main ones). */
export type LayerLoads = Map<number, Float64Array>;

/** Adds the routing of one forward pass to `loads` (created when absent). */
export function countLoads(routing: readonly RoutingRecord[], experts: number, loads: LayerLoads = new Map()): LayerLoads {
  for (const r of routing) {
    let l = loads.get(r.layer);
    if (!l) { l = new Float64Array(experts); loads.set(r.layer, l); }
    const ids = r.ids;
    for (let i = 0; i < ids.length; i++) l[ids[i]!]! += 1;
  }
  return loads;
}

/** (max − mean) / mean of one layer's loads (0 when nothing was routed). */
export function layerMaxVio(load: Float64Array): number {
  let sum = 0, max = 0;
  for (const x of load) { sum += x; if (x > max) max = x; }
  if (sum === 0) return 0;
  const mean = sum / load.length;
  return (max - mean) / mean;
}

/** MaxVio averaged over the layers in `loads` (0 when there are none). */
export function maxVio(loads: LayerLoads): number {
  if (loads.size === 0) return 0;
  let s = 0;
  for (const l of loads.values()) s += layerMaxVio(l);
  return s / loads.size;
}

/** The correction-bias tensor of MoE layer `layer` (main layers, then MTP layers), or null. */
export function gateBias(p: ModelParams, cfg: DeepSeekConfig, layer: number): Tensor | null {
  const l = layer < cfg.numHiddenLayers ? p.layers[layer] : p.mtp[layer - cfg.numHiddenLayers]?.layer;
  return l?.moe?.bias ?? null;
}

/** The router (gate) weight matrices of every MoE layer, main layers then MTP layers. */
export function routerParams(p: ModelParams): Tensor[] {
  const out: Tensor[] = [];
  for (const l of [...p.layers, ...p.mtp.map((m) => m.layer)]) if (l.moe) out.push(l.moe.router);
  return out;
}

/** How the bias moves: DeepSeek's sign rule, or in proportion to the relative load error. */
export type BiasUpdate = 'sign' | 'relative';

/**
 * Applies b_i += γ·sign(mean − load_i) ('sign', DeepSeek) or b_i += γ·(mean − load_i)/mean
 * ('relative') to every layer in `loads`; returns the layers updated.
 */
export function updateGateBias(p: ModelParams, cfg: DeepSeekConfig, loads: LayerLoads, gamma: number, rule: BiasUpdate = 'sign'): number {
  if (gamma === 0) return 0;
  let n = 0;
  for (const [layer, load] of loads) {
    const bias = gateBias(p, cfg, layer);
    if (!bias) continue;
    const b = bias.f32;
    let sum = 0;
    for (const x of load) sum += x;
    const mean = sum / load.length;
    if (mean === 0) continue;
    for (let i = 0; i < b.length; i++) b[i] = b[i]! + gamma * (rule === 'sign' ? Math.sign(mean - load[i]!) : (mean - load[i]!) / mean);
    bias.version++; // an in-place write: announced (src/backend/residency.ts)
    n++;
  }
  return n;
}
