// Latent-cache helpers for tests of the decode paths (engine and TypeScript): a cache holding a
// prompt prefilled by `forward`, and copies of a cache (the same rows, any capacity).
import { Tensor } from '../autograd/tensor.js';
import type { DeepSeekConfig } from './config.js';
import { forward, KVCache, type ModelParams } from './deepseek.js';

/** An absorb cache of `cap` positions (main and MTP layers) holding `prompt` prefilled by forward. */
export function prefilled(m: { cfg: DeepSeekConfig; params: ModelParams }, prompt: number[], cap = 32): KVCache {
  const c = new KVCache(m.cfg, 1, cap, 'absorb', m.params.mtp.length);
  forward(m.params, m.cfg, Tensor.ints(prompt, [1, prompt.length]), { cache: c });
  return c;
}

/** A copy of c's rows and length in a cache of `capacity` positions (default c's; not below it). */
export function copyCache(c: KVCache, capacity = c.capacity): KVCache {
  const d = new KVCache(c.cfg, 1, Math.max(capacity, c.capacity), 'absorb', c.layers.length - c.cfg.numHiddenLayers);
  c.layers.forEach((l, i) => d.layers[i]!.a.set(l.a));
  d.length = c.length;
  return d;
}
