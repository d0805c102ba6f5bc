/**
 * `frugal info --model DIR|FILE.gguf [--json]`: from the model's config.json (no weights are read;
 * a GGUF file is read whole, with its file type, tensor types and vocabulary added), the
 * parameter counts (total, activated per token, embedding, head, MTP), the KV-cache bytes per token
 * of MLA's latent cache next to the full multi-head K/V it replaces, and a layer/expert summary.
 * `--json` prints one JSON object.
 */
import { parseArgs, usage, type OptionSpec } from './args.js';
import { loadConfig } from '../model/load-node.js';
import { isMoeLayer, type DeepSeekConfig } from '../model/config.js';
import { countParams, kvCacheBytesPerToken } from '../cost/index.js';
import { checkModelDir } from '../serve/model-node.js';
import { isGgufPath, loadGguf, type GgufModel } from '../model/gguf-node.js';

export const summary = 'parameters, activated parameters and KV-cache size of a model';

const spec: OptionSpec = {
  model: { type: 'string', help: 'model directory (config.json) or a .gguf file' },
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
  const gguf = isGgufPath(dir) ? await loadGguf(dir) : null;
  if (gguf?.kind === 'dense') return denseInfo(gguf, a.json === true);
  const cfg = gguf?.kind === 'deepseek' ? gguf.cfg : await loadConfig(dir);
  if (gguf) {
    const g = ggufSummary(gguf);
    if (a.json) { console.log(JSON.stringify({ ...modelInfo(cfg, a['kv-bytes']), gguf: g })); return 0; }
    console.log(`${'GGUF'.padEnd(32)} deepseek2, ${g.fileType}; tensors ${Object.entries(g.tensorTypes).map(([k, v]) => `${v} ${k}`).join(', ')}; ${g.tokenizer}`);
    if (g.unused.length) console.log(`${'  not used by Frugal'.padEnd(32)} ${g.unused.length} tensors (${g.unused.slice(0, 3).join(', ')}${g.unused.length > 3 ? ', …' : ''})`);
  }
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

/** What a GGUF file adds to the report: its file type, tensor types and vocabulary. */
function ggufSummary(g: GgufModel): { fileType: string; tensorTypes: Record<string, number>; tokenizer: string; unused: string[] } {
  const tokenizer = g.tokenizer ? `tokenizer from the file (${g.tokenizer.vocabSize} tokens)` : `token ids only (${g.tokenizerNote})`;
  return { fileType: g.fileType, tensorTypes: g.tensorTypes, tokenizer, unused: g.unused };
}

/** `info` for a llama-architecture GGUF (Frugal's dense model). */
function denseInfo(g: GgufModel & { kind: 'dense' }, json: boolean): number {
  const c = g.cfg;
  const perLayer = 4 * c.hiddenSize * c.hiddenSize + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize;
  const total = 2 * c.vocabSize * c.hiddenSize + c.numHiddenLayers * perLayer + c.hiddenSize;
  const out = { modelType: 'llama', parameters: { total }, config: c, gguf: ggufSummary(g) };
  if (json) { console.log(JSON.stringify(out)); return 0; }
  console.log(`${'model'.padEnd(32)} ${g.file} (llama / Frugal dense, vocab ${c.vocabSize}, context ${c.maxPositionEmbeddings})`);
  console.log(`${'parameters'.padEnd(32)} ${fmt(total)}`);
  console.log(`${'layers'.padEnd(32)} ${c.numHiddenLayers}; hidden ${c.hiddenSize}, ${c.numAttentionHeads} heads, SwiGLU ${c.intermediateSize}`);
  console.log(`${'GGUF'.padEnd(32)} ${out.gguf.fileType}; tensors ${Object.entries(out.gguf.tensorTypes).map(([k, v]) => `${v} ${k}`).join(', ')}; ${out.gguf.tokenizer}`);
  return 0;
}
