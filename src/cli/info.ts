/**
 * `frugal info --model DIR [--json]`: from the model's config.json (no weights are read), the
 * parameter counts (total, activated per token, embedding, head, MTP), the KV-cache bytes per token
 * of MLA's latent cache next to the full multi-head K/V it replaces, and a layer/expert summary.
 * `--json` prints one JSON object.
 */
import { parseArgs, usage, type OptionSpec } from './args.js';
import { loadConfig } from '../model/load-node.js';
import { isMoeLayer, type DeepSeekConfig } from '../model/config.js';
import { countParams, kvCacheBytesPerToken } from '../cost/index.js';
import { checkModelDir } from '../serve/model-node.js';

export const summary = 'parameters, activated parameters and KV-cache size of a model';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json)' },
  json: { type: 'boolean', help: 'print one JSON object' },
  'kv-bytes': { type: 'number', help: 'bytes per cached value (2 = BF16, 4 = F32)', default: 2 },
};

/** The info report as plain data. */
export function modelInfo(cfg: DeepSeekConfig, bytesPerValue = 2): Record<string, unknown> {
  const p = countParams(cfg);
  const kv = kvCacheBytesPerToken(cfg, bytesPerValue);
  const moeLayers = Array.from({ length: cfg.numHiddenLayers }, (_, l) => l).filter((l) => isMoeLayer(cfg, l)).length;
  return {
    modelType: cfg.modelType,
    parameters: {
      total: p.total, activatedPerToken: p.active, embedding: p.embedding, head: p.head,
      attention: p.attention, denseFfn: p.denseFfn, sharedExperts: p.shared, routedExperts: p.routed, norms: p.norms,
      mtp: p.mtp.stored, mtpUnique: p.mtp.unique, totalWithMtp: p.totalWithMtp,
    },
    kvCache: {
      bytesPerValue, valuesPerTokenPerLayer: kv.valuesPerLayer, mlaLatentBytesPerToken: kv.actual, mhaBytesPerToken: kv.mha,
      reduction: kv.mha / kv.actual,
    },
    layers: {
      total: cfg.numHiddenLayers, dense: cfg.numHiddenLayers - moeLayers, moe: moeLayers, mtp: cfg.numNextnPredictLayers,
      hiddenSize: cfg.hiddenSize, heads: cfg.numAttentionHeads, qLoraRank: cfg.qLoraRank, kvLoraRank: cfg.kvLoraRank,
      qkNopeHeadDim: cfg.qkNopeHeadDim, qkRopeHeadDim: cfg.qkRopeHeadDim, vHeadDim: cfg.vHeadDim,
    },
    experts: {
      routed: cfg.nRoutedExperts, shared: cfg.nSharedExperts, perToken: cfg.numExpertsPerTok, groups: cfg.nGroup, topkGroup: cfg.topkGroup,
      scoring: cfg.scoringFunc, topkMethod: cfg.topkMethod, routedScalingFactor: cfg.routedScalingFactor,
    },
    vocabSize: cfg.vocabSize, context: cfg.maxPositionEmbeddings,
  };
}

const fmt = (n: number): string => (n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n.toLocaleString('en-US'));

export async function run(argv: string[]): Promise<number> {
  const a = parseArgs(argv, spec);
  if (a.help) { console.log(usage('info', '--model DIR [--json]', spec)); return 0; }
  const dir = checkModelDir(a.model);
  const cfg = await loadConfig(dir);
  const info = modelInfo(cfg, a['kv-bytes']) as { parameters: Record<string, number>; kvCache: Record<string, number>; layers: Record<string, number | null>; experts: Record<string, number | string> };
  if (a.json) { console.log(JSON.stringify(info)); return 0; }
  const p = info.parameters, kv = info.kvCache, l = info.layers, e = info.experts;
  const rows: [string, string][] = [
    ['model', `${dir} (${cfg.modelType}, vocab ${cfg.vocabSize}, context ${cfg.maxPositionEmbeddings})`],
    ['parameters (main model)', `${fmt(p.total!)} total, ${fmt(p.activatedPerToken!)} activated per token`],
    ['  embedding / head', `${fmt(p.embedding!)} / ${fmt(p.head!)}`],
    ['  attention / dense FFN', `${fmt(p.attention!)} / ${fmt(p.denseFfn!)}`],
    ['  shared / routed experts', `${fmt(p.sharedExperts!)} / ${fmt(p.routedExperts!)}`],
    ['MTP modules', `${fmt(p.mtp!)} as stored (${fmt(p.mtpUnique!)} unique); with MTP ${fmt(p.totalWithMtp!)}`],
    [`KV cache per token (${kv.bytesPerValue} B/value)`, `MLA latent ${fmt(kv.mlaLatentBytesPerToken!)} B (${kv.valuesPerTokenPerLayer} values/layer) vs MHA ${fmt(kv.mhaBytesPerToken!)} B: ${kv.reduction!.toFixed(1)}x smaller`],
    ['layers', `${l.total} (${l.dense} dense, ${l.moe} MoE) + ${l.mtp} MTP; hidden ${l.hiddenSize}, ${l.heads} heads, q_lora ${l.qLoraRank ?? 'none'}, kv_lora ${l.kvLoraRank}`],
    ['experts', `${e.routed} routed (${e.perToken} per token, ${e.groups} groups, top ${e.topkGroup}) + ${e.shared} shared; ${e.scoring} scores, ${e.topkMethod}`],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(32)} ${v}`);
  return 0;
}
