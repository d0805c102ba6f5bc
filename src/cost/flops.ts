/**
 * Training FLOPs per token from a config, GEMM by GEMM. A GEMM [m×k]·[k×n] costs 2·m·k·n; per
 * token that is 2 × (weights it multiplies). Counted: every MLA / GQA projection, the causal
 * attention core (QKᵀ and PV, on average (s+1)/2 keys per query at sequence length s), the dense
 * FFN, shared and activated routed experts, the router, the output head, and the MTP module(s)
 * (eh_proj, their decoder layer, their head). Not counted: norms, RoPE, softmax, SwiGLU, routing
 * top-k, the optimizer (elementwise, < 1% at these sizes). Training = forward × 3 (the backward
 * pass computes gradients for inputs and for weights, each as costly as the forward GEMM).
 * Browser-safe.
 */
import { type ArchConfig, isDense, layerParams } from './params.js';

/** Forward FLOPs per token, by component; `training` = 3 × `forward`. */
export interface FlopsBreakdown {
  /** Attention projections (MLA q/kv down- and up-projections, o_proj; or GQA q/k/v/o). */
  attnProj: number;
  /** Causal attention scores and weighted values at the given sequence length. */
  attnCore: number;
  denseFfn: number;
  sharedExperts: number;
  routedExperts: number;
  gate: number;
  head: number;
  /** MTP module(s): eh_proj, decoder layer incl. its attention core, its head. */
  mtp: number;
  /** Sum of the above (forward pass). */
  forward: number;
  /** Forward without the MTP module. */
  forwardMain: number;
  /** 3 × forward: training FLOPs per token. */
  training: number;
  /** 3 × forwardMain. */
  trainingMain: number;
  /** Sequence length the attention core was counted at. */
  seq: number;
}

/** Forward FLOPs per token of the attention core (QKᵀ + PV) of one layer, causal, length `seq`. */
export function attentionCoreFlops(c: ArchConfig, seq: number): number {
  const avgKeys = (seq + 1) / 2;
  if (isDense(c)) return 2 * c.numAttentionHeads * c.headDim * 2 * avgKeys;
  const dq = c.qkNopeHeadDim + c.qkRopeHeadDim;
  return 2 * c.numAttentionHeads * (dq + c.vHeadDim) * avgKeys;
}

/** FLOPs per token of `c` at sequence length `seq` (training context), with the breakdown. */
export function flopsPerToken(c: ArchConfig, seq: number): FlopsBreakdown {
  if (!(Number.isInteger(seq) && seq > 0)) throw new Error(`flops: seq must be a positive integer, got ${seq}`);
  const H = c.hiddenSize;
  const core = attentionCoreFlops(c, seq);
  const b = { attnProj: 0, attnCore: 0, denseFfn: 0, sharedExperts: 0, routedExperts: 0, gate: 0, head: 2 * c.vocabSize * H, mtp: 0 };
  const layerGemm = (layer: number): { attnProj: number; denseFfn: number; shared: number; routed: number; gate: number } => {
    const p = layerParams(c, layer);
    // Norm weights (and the q_a/kv_a norm vectors inside `attention`) are not GEMM operands.
    const normsInAttn = isDense(c) ? 0 : (c.qLoraRank ?? 0) + c.kvLoraRank;
    const gateGemm = isDense(c) ? 0 : p.gate === 0 ? 0 : c.nRoutedExperts * H;
    return { attnProj: 2 * (p.attention - normsInAttn), denseFfn: 2 * p.denseFfn, shared: 2 * p.shared, routed: 2 * p.routedActive, gate: 2 * gateGemm };
  };
  for (let l = 0; l < c.numHiddenLayers; l++) {
    const g = layerGemm(l);
    b.attnProj += g.attnProj;
    b.attnCore += core;
    b.denseFfn += g.denseFfn;
    b.sharedExperts += g.shared;
    b.routedExperts += g.routed;
    b.gate += g.gate;
  }
  const depth = isDense(c) ? 0 : c.numNextnPredictLayers;
  for (let k = 0; k < depth; k++) {
    const g = layerGemm(c.numHiddenLayers + k);
    b.mtp += 2 * (2 * H * H) + g.attnProj + core + g.denseFfn + g.shared + g.routed + g.gate + 2 * c.vocabSize * H;
  }
  const forwardMain = b.attnProj + b.attnCore + b.denseFfn + b.sharedExperts + b.routedExperts + b.gate + b.head;
  const forward = forwardMain + b.mtp;
  return { ...b, forward, forwardMain, training: 3 * forward, trainingMain: 3 * forwardMain, seq };
}

/** The rule of thumb 6·N per token (N = activated parameters): no attention core, no MTP. */
export function sixN(activeParams: number): number {
  return 6 * activeParams;
}
