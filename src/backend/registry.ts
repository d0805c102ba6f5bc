/**
 * Kernel registry: ops validate shapes and dtypes, then call a named kernel from the active
 * backend. A backend registers the kernels it implements and may name a fallback backend for the
 * rest (wasm falls back to ts for the kernels it does not accelerate). A kernel missing from the
 * whole chain is an error naming kernel and backend. Every call is counted so a run can report
 * which backend and kernels actually ran.
 */

/** Batched GEMM: C[b] = op(A[b]) · op(B[b]) (+ C[b] if accumulate), row-major, op = transpose when flagged.
 *  A is [M,K] (or [K,M] when transA), B is [K,N] (or [N,K] when transB), C is [M,N].
 *  Batch strides in elements; a stride of 0 broadcasts that operand. */
export interface MatMulArgs {
  a: Float32Array; b: Float32Array; c: Float32Array;
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  strideA: number; strideB: number; strideC: number;
  accumulate: boolean;
}

/** The kernels a backend may provide. Signatures are over flat typed arrays; callers allocate outputs. */
export interface Kernels {
  MatMul(args: MatMulArgs): void;
  /** Several MatMuls in one call (a linear layer's dX and dW): the same as MatMul on each item in order
   *  (webgpu: one submission, an operand shared by items uploaded once). Optional. */
  MatMulBatch(items: MatMulArgs[]): void;
  /** out[r,:] = x[r,:] * rsqrt(mean(x[r,:]^2) + eps) * w ; also writes rstd[r] when given. */
  RMSNorm(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, cols: number, eps: number, rstd?: Float32Array): void;
  /** Row-wise softmax over the last axis, in place allowed. */
  Softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  /** out = silu(g) * u elementwise. */
  SiluMul(g: Float32Array, u: Float32Array, out: Float32Array): void;
  /** Backward of SiluMul over i < gradG.length, s = sigmoid(g):
   *  gradU = gradOut * g * s ; gradG = gradOut * u * s * (1 + g * (1 - s)). Outputs are overwritten. */
  SiluMulBackward(g: Float32Array, u: Float32Array, gradOut: Float32Array, gradG: Float32Array, gradU: Float32Array): void;
  /** gradIn[r,:] = scale · p[r,:] ⊙ (gradOut[r,:] − Σ p[r,:] ⊙ gradOut[r,:]) — softmax backward; gradIn may alias gradOut. */
  SoftmaxBackward(p: Float32Array, gradOut: Float32Array, gradIn: Float32Array, rows: number, cols: number, scale: number): void;
  /** Backward of RMSNorm given the forward's rstd[r]: with c = rstd² · Σ_j gradOut·w·x / cols,
   *  gradX[r,j] = rstd · (gradOut·w − x·c) (overwritten) and gradW[j] += Σ_r gradOut·x·rstd
   *  (accumulated). Either output may be null to skip it. */
  RMSNormBackward(x: Float32Array, w: Float32Array, rstd: Float32Array, gradOut: Float32Array,
    gradX: Float32Array | null, gradW: Float32Array | null, rows: number, cols: number): void;
  /** In-place AdamW over one parameter with f32 moments (src/train/optim.ts): m = β1·m + (1−β1)·g,
   *  v = β2·v + (1−β2)·g², w = w·decay − stepSize·m / (√v·invBc2Sqrt + eps). */
  AdamW(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWHyper): void;
  /** AdamW over several parameters in one call: the same as AdamW on each item in order, with no array
   *  shared between items (webgpu: one submission for all). Optional: optim.ts loops over AdamW. */
  AdamWBatch(items: AdamWItem[]): void;
  /** Σ x² (accumulated in double, or in float blocks summed in double). */
  SumSquares(x: Float32Array): number;
  /** SumSquares of each array, in one call (webgpu: one submission). Optional: optim.ts loops over SumSquares. */
  SumSquaresBatch(xs: Float32Array[]): number[];
  /** dst += src over dst.length elements (gradient accumulation). */
  AddInto(dst: Float32Array, src: Float32Array): void;
  /** Row gather/scatter-add: dst row dstRows[i] += scales[i] · src row srcRows[i] for i < count, rows
   *  of D; a null row list means row i, null scales mean 1 (MoE dispatch/combine and their grads). */
  RowsAxpy(dst: Float32Array, dstRows: Int32Array | null, src: Float32Array, srcRows: Int32Array | null,
    scales: Float32Array | null, count: number, D: number): void;
  /** Fused causal attention over strided Q/K/V (layout in AttnGeometry); writes out [B, T, H, Dv]. Optional. */
  AttentionForward(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, geo: AttnGeometry): void;
  /** Its backward (probabilities recomputed): ADDS into gradQ, gradK, gradV (gradK may be gradV). Optional. */
  AttentionBackward(q: Float32Array, k: Float32Array, v: Float32Array, gradOut: Float32Array,
    gradQ: Float32Array, gradK: Float32Array, gradV: Float32Array, geo: AttnGeometry): void;
  /** FP8 E4M3 quantisation of x [rows, cols] in 1×128 tiles along cols: codes [rows, cols], scales
   *  [rows, ⌈cols/128⌉] (src/fp8/quant.ts quantizeTiles, bit for bit). Optional: src/fp8 has the TS one. */
  Fp8QuantizeRows(x: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, ue8m0: boolean): void;
  /** The same in 128×1 column tiles, codes in place [rows, cols], scales [⌈rows/128⌉, cols] (quantizeColumnTiles). Optional. */
  Fp8QuantizeCols(x: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, ue8m0: boolean): void;
  /** FP8 rows (codes + 1×128 row scales) re-tiled to 128×1 column tiles (requantizeColumnTiles). Optional. */
  Fp8RequantizeCols(codes: Uint8Array, rowScales: Float32Array, rows: number, cols: number, outCodes: Uint8Array, outScales: Float32Array, ue8m0: boolean): void;
  /** 128×128 weight blocks (quantizeBlocks) plus, when codesT is given, the codes transposed [cols, rows]. Optional. */
  Fp8QuantizeWeight(w: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, codesT: Uint8Array | null, ue8m0: boolean): void;
  /** Scaled FP8 GEMM with promotion every 128 of K (see Fp8GemmArgs). Optional. */
  Fp8ScaledGemm(args: Fp8GemmArgs): void;
  /** AdamW with BF16-stored moments: same bits as decoding m, v, AdamW, and encoding back. Optional. */
  AdamWBf16(w: Float32Array, g: Float32Array, m: Uint16Array, v: Uint16Array, h: AdamWHyper): void;
  /** Rotary embedding on interleaved pairs (src/ops/nn.ts rope): out [B, T, H, D] from x; sign −1 rotates back (the backward). */
  Rope(x: Float32Array, out: Float32Array, cos: Float32Array, sin: Float32Array, geo: RopeGeometry, sign: number): void;
  /** out [R, H, Da+Db] = [a[r, h, :Da] | b[r, :]] for a [R, H, Dfull], b [R, Db] (MLA's keys). */
  ConcatHeads(a: Float32Array, b: Float32Array, out: Float32Array, R: number, H: number, Dfull: number, Da: number, Db: number): void;
  /** Its backward: ga [R, H, Dfull] (zeros past Da) and gb [R, Db] (Σ over heads) overwritten; either may be null. */
  ConcatHeadsBackward(g: Float32Array, ga: Float32Array | null, gb: Float32Array | null, R: number, H: number, Dfull: number, Da: number, Db: number): void;
  /** Cross-entropy rows of logits p [rows, V]: returns Σ_r (log Σ_j exp p[r,j] − p[r,y_r]) over rows
   *  whose target is not ignoreIndex; with grad, p is overwritten by (softmax − onehot)·inv (ignored rows 0). */
  CrossEntropyRows(p: Float32Array, rows: number, V: number, targets: Int32Array, ignoreIndex: number, inv: number, grad: boolean): number;
  /** One chunk of rows of the fused output head (src/ops/nn.ts linearCrossEntropy), in one call: logits
   *  P = x·wᵀ [rows, V] from x [rows, H] and w [V, H], their CrossEntropyRows loss sum (returned), and
   *  when dX or dW is given, with G = (softmax(P) − onehot)·inv (ignored rows 0): dX [rows, H] = G·w
   *  overwritten, dW [V, H] = Gᵀ·x (added when accumulateDW). Optional (nn.ts composes it from
   *  MatMul and CrossEntropyRows); webgpu: one job, the logits never leave the device. */
  LinearCrossEntropy(x: Float32Array, w: Float32Array, rows: number, V: number, H: number, targets: Int32Array, ignoreIndex: number,
    inv: number, dX: Float32Array | null, dW: Float32Array | null, accumulateDW: boolean): number;
  /** A whole DeepSeekMoE feed-forward layer in one call (see MoeFfnArgs): out [N, H] overwritten;
   *  g, u, y, sg, su filled for the backward. Optional (src/ops/moe.ts composes it from the others). */
  MoeFfnForward(args: MoeFfnArgs, out: Float32Array): void;
  /** Its backward from the saved g, u, y, sg, su (see MoeFfnGrads). Optional. */
  MoeFfnBackward(args: MoeFfnArgs, grads: MoeFfnGrads): void;
  /** The decode engine over a model's arrays (src/model/decode-engine.ts lays them out); returns its handle, or null
   *  when this backend's engine does not take these arrays (webgpu: f32 only). Optional. */
  DecodeEngineCreate(cfg: Float64Array, kinds: Int32Array, arrays: Array<EngineArray | null>): object | null;
  /** One main-model decode pass of the engine (src/model/decode-engine.ts runMain). Optional. */
  DecodeEngineMain(engine: object, tokens: Int32Array, segs: Int32Array, caches: Float32Array[], cos: Float32Array, sin: Float32Array,
    from: number, hidden: Float32Array, logits: Float32Array): void;
  /** One MTP decode pass of the engine (src/model/decode-engine.ts runMtp); `window` > 0 (native only): each row attends over at most its last `window` cache rows. Optional. */
  DecodeEngineMtp(engine: object, depth: number, hiddenIn: Float32Array, nextTokens: Int32Array, segs: Int32Array, caches: Float32Array[],
    cos: Float32Array, sin: Float32Array, from: number, hidden: Float32Array, logits: Float32Array, window?: number): void;
  /**
   * One greedy speculative step (native/src/decode_engine.cc runSpec): `draft`'s MTP depth 0 over
   * (hiddenIn, nextTokens) rows of its one segment (the last row drafts: argmax of mtpLogits over
   * [0, vocab)), then `engine`'s main model over [token, draft], a segment of 2 rows. picks gets
   * [draft, argmax row 0, argmax row 1] (first index on ties). Same results as DecodeEngineMtp then
   * a 2-row DecodeEngineMain; with 2+ threads the two verify rows run one per thread. Optional.
   */
  DecodeEngineSpec(engine: object, draft: object, hiddenIn: Float32Array, nextTokens: Int32Array, mtpSegs: Int32Array, mtpCaches: Float32Array[],
    mtpCos: Float32Array, mtpSin: Float32Array, token: number, segs: Int32Array, caches: Float32Array[], cos: Float32Array, sin: Float32Array,
    vocab: number, hidden: Float32Array, logits: Float32Array, mtpLogits: Float32Array, picks: Int32Array): void;
  /**
   * Up to `steps` greedy speculative steps in one call, each fed to the next (RowDecoder.specLoop),
   * each chaining `drafts` MTP drafts (default 1: DecodeEngineSpec's step) verified in one
   * (drafts + 1)-row pass: state [token, n, mtpStart, m, proposed, accepted] and the pending MTP
   * rows (hin, next: room for drafts + 1) in and out, rope tables of positions [0, cosT.length /
   * (dr/2)), emitted tokens into out; stops after `budget` tokens or at a token in `stops`. Returns
   * the number emitted. Drafts may come from an approximate (int8) copy of the MTP head unless
   * exactHead, and attend over at most their last draftWindow cache rows (0: all); draftsOut
   * receives each step's drafts. Optional.
   */
  DecodeEngineSpecLoop(engine: object, draft: object, hin: Float32Array, next: Int32Array, state: Float64Array, caches: Float32Array[], mtpCache: Float32Array,
    cosT: Float32Array, sinT: Float32Array, vocab: number, steps: number, budget: number, stops: Int32Array, out: Int32Array, drafts?: number,
    draftsOut?: Int32Array | null, exactHead?: boolean, draftWindow?: number): number;
  /** y[rows, n] = x[rows, k] · Wᵀ on the decode engine's row-exact product (W [n, k] f32, bf16 bits or Q8_0 blocks). Optional. */
  DecodeMatRows(w: EngineArray, n: number, k: number, x: Float32Array, rows: number, y: Float32Array): void;
}
/**
 * One MoE feed-forward layer over x [N, H]: E routed SwiGLU experts (gate/up [I, H], down [H, I])
 * and an optional shared one (width Is; sGate = null for none). Slot s = n·k + j is token n's j-th
 * expert; `order` lists the N·k slots grouped by expert (expert e: order[offsets[e] ..
 * offsets[e+1]]); slotW[s] is the slot's gate weight. g, u [N·k, I] and y [N·k, H] are stored in
 * `order` (the routed gate/up projections and unweighted outputs), sg, su [N, Is] the shared ones.
 * out[n] = shared(x[n]) + Σ_j slotW[n·k+j] · y[slot].
 */
export interface MoeFfnArgs {
  x: Float32Array; N: number; H: number; I: number; k: number;
  gate: Float32Array[]; up: Float32Array[]; down: Float32Array[];
  sGate: Float32Array | null; sUp: Float32Array | null; sDown: Float32Array | null; Is: number;
  order: Int32Array; offsets: Int32Array; slotW: Float32Array;
  g: Float32Array; u: Float32Array; y: Float32Array; sg: Float32Array | null; su: Float32Array | null;
}
/** Gradients of MoeFfnForward: gradX [N, H] and gradW [N·k] (by slot) overwritten; weight
 *  gradients (null entries skipped) accumulated (+=). */
export interface MoeFfnGrads {
  gradOut: Float32Array; gradX: Float32Array; gradW: Float32Array;
  gGate: (Float32Array | null)[]; gUp: (Float32Array | null)[]; gDown: (Float32Array | null)[];
  gsGate: Float32Array | null; gsUp: Float32Array | null; gsDown: Float32Array | null;
}
/** A decode-engine weight: f32, bf16 bit patterns (Uint16Array) or Q8_0 blocks (Uint8Array). */
export type EngineArray = Float32Array | Uint16Array | Uint8Array;
/**
 * C[m,n] (+)= Σ_kb sa(m,kb)·sb(kb,n)·Σ_{k∈kb} A(m,k)·B(k,n) over 128-wide K blocks kb, E4M3 codes.
 * A is [m,k] row-major, or [k,m] when aTrans; B is [k,n] row-major. sa(m,kb) = sa[kb·saKb + m·saRow],
 * sb(kb,n) = sb[kb·sbKb + ⌊n/sbDiv⌋·sbCol]. C is overwritten unless accumulate.
 */
export interface Fp8GemmArgs {
  a: Uint8Array; aTrans: boolean; sa: Float32Array; saKb: number; saRow: number;
  b: Uint8Array; sb: Float32Array; sbKb: number; sbDiv: number; sbCol: number;
  c: Float32Array; m: number; n: number; k: number; accumulate: boolean;
  /** Accumulator ablation: 0 fp32 (default); 1 ~14-bit within each 128-K block, promoted to fp32;
   *  2 ~14-bit over all of K, never promoted (H800 tensor cores keep ~14 bits: report §3.3.2). */
  accum?: 0 | 1 | 2 | undefined;
}
/**
 * Attention geometry: q (b,t,h,d) at ((b·T+t)·H+h)·Dk+d; k (b,s,kh,d) at (b·S+s)·ldk+kh·Dk+d;
 * v (b,s,kh,d) at (b·S+s)·ldv+kh·Dv+d; out (b,t,h,d) at ((b·T+t)·H+h)·Dv+d; KH is 1 or H; query t
 * sits at position t+S−T and sees keys 0..t+S−T.
 */
export interface AttnGeometry { B: number; T: number; S: number; H: number; KH: number; Dk: number; Dv: number; ldk: number; ldv: number; scale: number }
/** Rope layout: x [B, T, H, D], tables [T, (D − offset)/2]; features [0, offset) are copied. */
export interface RopeGeometry { B: number; T: number; H: number; D: number; offset: number }
/** One parameter of Kernels.AdamWBatch. */
export interface AdamWItem { w: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array; h: AdamWHyper }
/** Per-parameter AdamW constants (see Kernels.AdamW). */
export interface AdamWHyper { beta1: number; beta2: number; eps: number; stepSize: number; decay: number; invBc2Sqrt: number }
export type KernelName = keyof Kernels;

export interface Backend {
  name: string;
  /** Backend to ask for kernels this one lacks (null = none). */
  fallback: string | null;
  kernels: Partial<Kernels>;
  /** Number of worker threads this backend uses (1 when single-threaded). */
  threads: number;
  /** Free workers/memory so the process can exit. */
  dispose?: () => void | Promise<void>;
  /** Human-readable description for reports (SIMD width, threads, CPU features). */
  describe?: () => string;
}

const backends = new Map<string, Backend>();
let active: Backend | null = null;
const resolved = new Map<string, { fn: (...a: never[]) => void; backend: string }>();
const counts = new Map<string, number>();

export function registerBackend(b: Backend): void {
  backends.set(b.name, b);
  resolved.clear();
  if (!active) active = b;
}

export function listBackends(): string[] { return [...backends.keys()]; }

/** Removes a (disposed) backend; if it was active, `ts` becomes active again. */
export function unregisterBackend(name: string): void {
  const b = backends.get(name);
  if (!b) return;
  backends.delete(name);
  resolved.clear();
  if (active === b) active = backends.get('ts') ?? null;
}

export function setBackend(name: string): Backend {
  const b = backends.get(name);
  if (!b) throw new Error(`backend '${name}' is not available (available: ${listBackends().join(', ') || 'none'})`);
  active = b;
  resolved.clear();
  return b;
}

export function getBackend(): Backend {
  if (!active) throw new Error('no backend registered (import frugal-lm, which registers the ts backend)');
  return active;
}

export function getBackendByName(name: string): Backend | undefined { return backends.get(name); }

/** Returns the kernel `name` of the active backend (or its fallback chain). */
export function kernel<K extends KernelName>(name: K): Kernels[K] {
  const hit = resolved.get(name);
  if (hit) {
    const key = hit.backend + ':' + name;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    return hit.fn as unknown as Kernels[K];
  }
  let b: Backend | undefined = getBackend();
  const tried: string[] = [];
  while (b) {
    tried.push(b.name);
    const fn = b.kernels[name];
    if (fn) {
      resolved.set(name, { fn: fn as unknown as (...a: never[]) => void, backend: b.name });
      return kernel(name);
    }
    b = b.fallback ? backends.get(b.fallback) : undefined;
  }
  throw new Error(`kernel '${name}' is not implemented by backend '${tried.join("' or '")}'`);
}

/** Name of the backend that serves kernel `name` now (after fallbacks), or null; not counted as a call. */
export function kernelBackend(name: KernelName): string | null {
  for (let b: Backend | undefined = active ?? undefined; b; b = b.fallback ? backends.get(b.fallback) : undefined) if (b.kernels[name]) return b.name;
  return null;
}

/** Kernel `name` when some backend in the active chain has it, else null (for optional fused kernels). */
/** Whether the active backend (or its fallback chain) has kernel `name`; not counted as a call. */
export function hasKernel(name: KernelName): boolean {
  for (let b: Backend | undefined = active ?? undefined; b; b = b.fallback ? backends.get(b.fallback) : undefined) if (b.kernels[name]) return true;
  return false;
}

export function optionalKernel<K extends KernelName>(name: K): Kernels[K] | null {
  for (let b: Backend | undefined = active ?? undefined; b; b = b.fallback ? backends.get(b.fallback) : undefined) {
    if (b.kernels[name]) return kernel(name);
  }
  return null;
}

/** Which backend serves each kernel now (after fallbacks). */
export function kernelTable(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['MatMul', 'MatMulBatch', 'RMSNorm', 'Softmax', 'SiluMul', 'SiluMulBackward', 'RMSNormBackward', 'SoftmaxBackward', 'AdamW', 'AdamWBatch', 'SumSquares', 'SumSquaresBatch', 'AddInto', 'RowsAxpy', 'AttentionForward', 'AttentionBackward', 'Rope', 'ConcatHeads', 'ConcatHeadsBackward', 'CrossEntropyRows', 'LinearCrossEntropy',
    'Fp8QuantizeRows', 'Fp8QuantizeCols', 'Fp8RequantizeCols', 'Fp8QuantizeWeight', 'Fp8ScaledGemm', 'AdamWBf16', 'MoeFfnForward', 'MoeFfnBackward', 'DecodeEngineMain', 'DecodeEngineSpec', 'DecodeEngineSpecLoop'] as KernelName[]) {
    let b: Backend | undefined = active ?? undefined;
    while (b && !b.kernels[name]) b = b.fallback ? backends.get(b.fallback) : undefined;
    out[name] = b ? b.name : 'missing';
  }
  return out;
}

/** Calls per `backend:kernel` since the last reset. */
export function kernelCounts(): Record<string, number> { return Object.fromEntries(counts); }
export function resetKernelCounts(): void { counts.clear(); }
