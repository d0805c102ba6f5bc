/**
 * Neural-network ops with fused gradients: RMSNorm, rotary embedding on interleaved pairs
 * (DeepSeek's official layout, SPEC §5.2), embedding lookup (scatter-add backward), cross-entropy
 * with an ignore index, and causal attention that keeps only one score row at a time (forward
 * saves the per-row log-sum-exp; backward recomputes probabilities row by row).
 */
import { Tensor, fmtShape, allocUninitF32 } from '../autograd/tensor.js';
import { allocZeroF32, recycleF32 } from '../backend/alloc.js';
import { slice } from './shape.js';
import { record, needsGrad } from '../autograd/tape.js';
import { kernel, optionalKernel, type AttnGeometry } from '../backend/registry.js';

/** x / sqrt(mean(x²) + eps) ⊙ w over the last axis. */
export function rmsNorm(x: Tensor, w: Tensor, eps = 1e-6): Tensor {
  const d = x.shape[x.rank - 1]!;
  if (w.size !== d) throw new Error(`rmsNorm: weight has ${w.size} elements, input ends in ${d}${w.name ? ` (${w.name})` : ''}`);
  const X = x.f32, W = w.f32;
  const rows = X.length / d;
  const out = allocUninitF32(X.length); // kernels write every element (here and below)
  const rstd = new Float32Array(rows);
  kernel('RMSNorm')(X, W, out, rows, d, eps, rstd);
  return record(new Tensor(out, x.shape), 'RMSNorm', [x, w], (g) => {
    const gx = x.requiresGrad ? allocUninitF32(X.length) : null;
    const gw = w.requiresGrad ? new Float32Array(d) : null;
    if (gx || gw) kernel('RMSNormBackward')(X, W, rstd, g, gx, gw, rows, d);
    return [gx, gw];
  });
}

/**
 * Rotary embedding on interleaved pairs: x [B, T, H, D], cos/sin [T, dr/2] (row t = position of
 * token t) with dr = D − offset: features [offset, D) of every head are rotated,
 * y[2i] = x[2i]cos − x[2i+1]sin, y[2i+1] = x[2i]sin + x[2i+1]cos (i over that tail), and features
 * [0, offset) are copied. With offset = dn, one op does MLA's split → rope → concat of
 * [q_nope | q_pe] (one copy instead of four).
 */
export function rope(x: Tensor, cos: Float32Array, sin: Float32Array, offset = 0): Tensor {
  if (x.rank !== 4) throw new Error(`rope: expected [B, T, H, D], got ${fmtShape(x.shape)}`);
  const [B, T, H, D] = x.shape as [number, number, number, number];
  const dr = D - offset, half = dr / 2;
  if (!(offset >= 0 && dr > 0) || dr % 2 !== 0 || cos.length < T * half || sin.length < T * half) {
    throw new Error(`rope: offset ${offset} of ${D} features, tables of ${cos.length} values: need an even tail covered for T=${T} × ${half}`);
  }
  const X = x.f32;
  const out = allocUninitF32(X.length); // the kernel writes every element
  const geo = { B, T, H, D, offset };
  kernel('Rope')(X, out, cos, sin, geo, 1);
  return record(new Tensor(out, x.shape), 'Rope', [x], (g) => {
    const gi = allocUninitF32(g.length);
    kernel('Rope')(g, gi, cos, sin, geo, -1);
    return [gi];
  });
}

/**
 * [a | b] along the last axis with b's single head repeated: a [B, T, H, Da], b [B, T, 1, Db] →
 * [B, T, H, Da + Db] (MLA's keys: per-head k_nope and the shared, roped k_pe) in one copy. With
 * `take` < Da only a's first `take` features are used (k_nope read straight out of [k_nope | v]).
 */
export function concatHeads(a: Tensor, b: Tensor, take?: number): Tensor {
  if (a.rank !== 4 || b.rank !== 4 || b.shape[2] !== 1 || a.shape[0] !== b.shape[0] || a.shape[1] !== b.shape[1]) {
    throw new Error(`concatHeads: expected a [B, T, H, Da] and b [B, T, 1, Db], got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  }
  const [B, T, H, Dfull] = a.shape as [number, number, number, number];
  const Da = take ?? Dfull;
  if (!(Da >= 0 && Da <= Dfull)) throw new Error(`concatHeads: take ${take} of ${Dfull} features`);
  const Db = b.shape[3]!, D = Da + Db;
  const A = a.f32, Bv = b.f32;
  const out = allocUninitF32(B * T * H * D); // the kernel sets every row
  kernel('ConcatHeads')(A, Bv, out, B * T, H, Dfull, Da, Db);
  return record(new Tensor(out, [B, T, H, D]), 'ConcatHeads', [a, b], (g) => {
    const ga = a.requiresGrad ? allocUninitF32(A.length) : null, gb = b.requiresGrad ? allocUninitF32(Bv.length) : null;
    if (ga || gb) kernel('ConcatHeadsBackward')(g, ga, gb, B * T, H, Dfull, Da, Db);
    return [ga, gb];
  });
}

/** Rows of `table` [V, D] picked by integer ids (any shape) -> [...ids.shape, D]. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  const [V, D] = table.shape as [number, number];
  const I = ids.data;
  const T = table.f32;
  const out = allocUninitF32(I.length * D); // every row is set below
  for (let i = 0; i < I.length; i++) {
    const id = I[i]!;
    if (!(id >= 0 && id < V)) throw new Error(`embedding: token id ${id} out of range [0, ${V})`);
    out.set(T.subarray(id * D, id * D + D), i * D);
  }
  return record(new Tensor(out, [...ids.shape, D]), 'Embedding', [table], (g) => [{
    addInto(gt: Float32Array): void {
      // Row i of g into row ids[i] of the table's gradient, in order (the backend's row add).
      if (I instanceof Int32Array) { kernel('RowsAxpy')(gt, I, g, null, null, I.length, D); return; }
      for (let i = 0; i < I.length; i++) {
        const o = I[i]! * D;
        for (let j = 0; j < D; j++) gt[o + j]! += g[i * D + j]!;
      }
    },
  }]);
}

/**
 * Mean cross-entropy of logits [N, V] against targets [N] (i32); rows whose target equals
 * `ignoreIndex` count neither in the sum nor in the mean. Returns a scalar.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, ignoreIndex = -100): Tensor {
  const V = logits.shape[logits.rank - 1]!;
  const N = logits.size / V;
  if (targets.size !== N) throw new Error(`crossEntropy: ${N} rows of logits but ${targets.size} targets`);
  const L = logits.f32, Y = targets.data;
  let total = 0, count = 0;
  // Softmax probabilities (the backend's kernel) are kept for backward: one exp per logit in total.
  const probs = new Float32Array(L.length);
  kernel('Softmax')(L, probs, N, V);
  for (let r = 0; r < N; r++) {
    const y = Y[r]!;
    if (y === ignoreIndex) continue;
    if (!(y >= 0 && y < V)) throw new Error(`crossEntropy: target ${y} out of range [0, ${V})`);
    const o = r * V, py = probs[o + y]!;
    if (py > 1e-30) total -= Math.log(py);
    else {
      // Probability underflows float32: exact log-sum-exp for this row.
      let mx = -Infinity;
      for (let j = 0; j < V; j++) mx = Math.max(mx, L[o + j]!);
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(L[o + j]! - mx);
      total += mx + Math.log(sum) - L[o + y]!;
    }
    count++;
  }
  const loss = count ? total / count : 0;
  return record(new Tensor(Float32Array.of(loss), []), 'CrossEntropy', [logits], (g) => {
    if (!count) return [new Float32Array(L.length)];
    const scale = g[0]! / count;
    for (let r = 0; r < N; r++) {
      const y = Y[r]!, o = r * V;
      if (y === ignoreIndex) { probs.fill(0, o, o + V); continue; }
      for (let j = 0; j < V; j++) probs[o + j]! *= scale;
      probs[o + y]! -= scale;
    }
    return [probs];
  });
}

/**
 * Fused output head and cross-entropy: the mean over non-ignored rows of −log softmax(x·Wᵀ)[y] for
 * x [..., H], W [V, H] (Linear layout) and targets [N] — equal to
 * `crossEntropy(linear(x, W), targets)`, without the [N, V] logits. Rows go in chunks of about 1M
 * logits: each chunk's logits, softmax and loss are formed and, when a gradient is needed, its
 * logit gradient (softmax − one-hot)/count is turned at once into the chunk's rows of ∂x and summed
 * into ∂W; backward only scales them by the upstream gradient. Peak memory: one chunk of logits
 * plus ∂x and ∂W, instead of N·V logits, their probabilities and their gradient (32 MB each for
 * 2,048 tokens × a 4K vocabulary; 1 GB each at DeepSeek-V3's 129K vocabulary).
 */
export function linearCrossEntropy(x: Tensor, w: Tensor, targets: Tensor, ignoreIndex = -100): Tensor {
  if (w.rank !== 2) throw new Error(`linearCrossEntropy: weight must be [vocab, hidden], got ${fmtShape(w.shape)}`);
  const [V, H] = w.shape as [number, number];
  if (x.shape[x.rank - 1] !== H) throw new Error(`linearCrossEntropy: input ${fmtShape(x.shape)} does not end in ${H} (weight ${fmtShape(w.shape)})`);
  const N = x.size / H;
  if (targets.size !== N) throw new Error(`linearCrossEntropy: ${N} rows but ${targets.size} targets`);
  const X = x.f32, W = w.f32, Y = targets.data;
  let count = 0;
  for (let r = 0; r < N; r++) {
    const y = Y[r]!;
    if (y === ignoreIndex) continue;
    if (!(y >= 0 && y < V)) throw new Error(`linearCrossEntropy: target ${y} out of range [0, ${V})`);
    count++;
  }
  const gx = needsGrad(x, w) && x.requiresGrad, gw = needsGrad(x, w) && w.requiresGrad;
  // dX is written chunk by chunk and dW by the first chunk's product (then summed into): no zeroing.
  const dX = gx ? (N > 0 ? allocUninitF32(X.length) : new Float32Array(X.length)) : null, dW = gw ? (N > 0 ? allocUninitF32(W.length) : new Float32Array(W.length)) : null;
  const C = Math.max(1, Math.min(N, Math.floor((1 << 20) / V)));
  // A backend with the fused chunk kernel (webgpu: one job, logits kept on the device) takes each chunk whole.
  const fusedChunk = optionalKernel('LinearCrossEntropy');
  const P = fusedChunk ? new Float32Array(0) : allocUninitF32(C * V);
  // Resolved only when used: a kernel is counted when it is looked up.
  const mm = fusedChunk ? null : kernel('MatMul'), ceRows = fusedChunk ? null : kernel('CrossEntropyRows');
  const Yi = Y instanceof Int32Array ? Y : Int32Array.from(Y as ArrayLike<number>);
  const inv = count ? 1 / count : 0;
  let total = 0, first = true;
  for (let r0 = 0; r0 < N; r0 += C) {
    const c = Math.min(C, N - r0);
    const Xc = X.subarray(r0 * H, (r0 + c) * H), Pc = P.subarray(0, c * V);
    if (fusedChunk) {
      total += fusedChunk(Xc, W, c, V, H, Yi.subarray(r0, r0 + c), ignoreIndex, inv, dX ? dX.subarray(r0 * H, (r0 + c) * H) : null, dW, !first);
      first = false;
      continue;
    }
    mm!({ a: Xc, b: W, c: Pc, batch: 1, m: c, n: V, k: H, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    // Loss (exact log-sum-exp per row) and, when needed, the logit gradient (softmax − onehot)/count in place.
    total += ceRows!(Pc, c, V, Yi.subarray(r0, r0 + c), ignoreIndex, inv, dX !== null || dW !== null);
    if (dX) mm!({ a: Pc, b: W, c: dX.subarray(r0 * H, (r0 + c) * H), batch: 1, m: c, n: H, k: V, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    if (dW) mm!({ a: Pc, b: Xc, c: dW, batch: 1, m: V, n: H, k: c, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: !first });
    first = false;
  }
  if (!fusedChunk) recycleF32(P);
  const loss = count ? total / count : 0;
  return record(new Tensor(Float32Array.of(loss), []), 'LinearCrossEntropy', [x, w], (g) => {
    const s = g[0]!;
    // dX and dW belong to this node alone and backward runs once: scaled in place.
    const scale = (a: Float32Array | null): Float32Array | null => {
      if (!a || s === 1) return a;
      for (let i = 0; i < a.length; i++) a[i]! *= s;
      return a;
    };
    return [scale(dX), scale(dW)];
  });
}

/**
 * Attention with one shared latent key/value head (MLA's absorbed form, SPEC §5.6): q [B, T, H, D],
 * keys [B, S, 1, D], and the values are the first `dv` features of the keys. Equal to
 * `causalAttention(q, keys, slice(keys, 3, 0, dv), scale)`; a backend with the fused kernel reads
 * the values in place (no [B, S, dv] copy per call, which at 1K context is most of a decode step's
 * attention traffic).
 */
export function latentAttention(q: Tensor, keys: Tensor, dv: number, scale: number): Tensor {
  if (q.rank !== 4 || keys.rank !== 4 || keys.shape[2] !== 1) throw new Error(`latentAttention: q must be [B, T, H, D] and keys [B, S, 1, D], got ${fmtShape(q.shape)} and ${fmtShape(keys.shape)}`);
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const S = keys.shape[1]!;
  if (keys.shape[0] !== B || keys.shape[3] !== Dk || !(dv >= 1 && dv <= Dk) || S < T) throw new Error(`latentAttention: shapes q ${fmtShape(q.shape)} keys ${fmtShape(keys.shape)} dv ${dv} do not fit`);
  return fusedAttention(q, keys, null, { B, T, S, H, KH: 1, Dk, Dv: dv, ldk: Dk, ldv: Dk, scale })
    ?? causalAttention(q, keys, slice(keys, 3, 0, dv), scale);
}

/**
 * The backend's fused attention kernels over `geo`, recorded with their backward; v = null reads
 * the values out of k (the latent form, one gradient array for both). Null when the backend
 * chain has no fused kernels (the caller then takes the TypeScript path).
 */
function fusedAttention(q: Tensor, k: Tensor, v: Tensor | null, geo: AttnGeometry): Tensor | null {
  const fwd = optionalKernel('AttentionForward'), bwd = optionalKernel('AttentionBackward');
  if (!fwd || !bwd) return null;
  const Q = q.f32, K = k.f32, Vv = v ? v.f32 : K;
  const out = allocUninitF32(geo.B * geo.T * geo.H * geo.Dv); // the kernel writes every row
  fwd(Q, K, Vv, out, geo);
  const t = new Tensor(out, [geo.B, geo.T, geo.H, geo.Dv]);
  return record(t, v ? 'CausalAttention' : 'LatentAttention', v ? [q, k, v] : [q, k], (g) => {
    const gq = allocZeroF32(Q.length), gk = allocZeroF32(K.length), gv = v ? allocZeroF32(Vv.length) : gk;
    bwd(Q, K, Vv, g, gq, gk, gv, geo);
    return v ? [gq, gk, gv] : [gq, gk];
  });
}

/**
 * Causal attention. q [B, T, H, Dk], k [B, S, H, Dk], v [B, S, H, Dv] with S ≥ T: query t sits at
 * position t + (S − T) and attends to keys 0..t+(S−T). k/v may have 1 head (shared by all query
 * heads, as in MLA's absorbed form). Returns [B, T, H, Dv].
 * Per (batch, head) the scores are one [T, S] block computed with the MatMul kernel, masked and
 * normalised in place; backward recomputes that block instead of storing probabilities.
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, scale: number): Tensor {
  if (q.rank !== 4 || k.rank !== 4 || v.rank !== 4) throw new Error('causalAttention: q, k, v must be [B, T, H, D]');
  const [B, T, H, Dk] = q.shape as [number, number, number, number];
  const S = k.shape[1]!, Dv = v.shape[3]!, KH = k.shape[2]!;
  if (k.shape[0] !== B || v.shape[0] !== B || (KH !== H && KH !== 1) || v.shape[2] !== KH || k.shape[3] !== Dk || v.shape[1] !== S || S < T) {
    throw new Error(`causalAttention: shapes q ${fmtShape(q.shape)} k ${fmtShape(k.shape)} v ${fmtShape(v.shape)} do not fit`);
  }
  // Fused backend kernel (native): strided heads, no gathers, probabilities recomputed in backward.
  const fused = fusedAttention(q, k, v, { B, T, S, H, KH, Dk, Dv, ldk: KH * Dk, ldv: KH * Dv, scale });
  if (fused) return fused;
  const Q = q.f32, K = k.f32, Vv = v.f32;
  const out = new Float32Array(B * T * H * Dv);
  const off = S - T;
  const mm = kernel('MatMul');
  // Per-head contiguous panels (reused across heads).
  const qh = new Float32Array(T * Dk);
  // With one shared K/V head the panels of batch b are contiguous already: use views, no copy.
  let kh = KH === 1 ? K.subarray(0, S * Dk) : new Float32Array(S * Dk), vh = KH === 1 ? Vv.subarray(0, S * Dv) : new Float32Array(S * Dv);
  const loadKV = (b: number, khd: number): void => {
    if (KH === 1) { kh = K.subarray(b * S * Dk, (b + 1) * S * Dk); vh = Vv.subarray(b * S * Dv, (b + 1) * S * Dv); return; }
    gather(K, kh, b, khd, S, KH, Dk); gather(Vv, vh, b, khd, S, KH, Dv);
  };
  const P = new Float32Array(T * S), oh = new Float32Array(T * Dv);
  const gather = (src: Float32Array, dst: Float32Array, b: number, h: number, L: number, NH: number, D: number): void => {
    for (let t = 0; t < L; t++) { const o = ((b * L + t) * NH + h) * D; for (let d = 0; d < D; d++) dst[t * D + d] = src[o + d]!; }
  };
  const scatterAdd = (src: Float32Array, dst: Float32Array, b: number, h: number, L: number, NH: number, D: number): void => {
    for (let t = 0; t < L; t++) { const o = ((b * L + t) * NH + h) * D; for (let d = 0; d < D; d++) dst[o + d]! += src[t * D + d]!; }
  };
  /** P = softmax(scale · q kᵀ + causal mask) for one (b, h); needs qh, kh filled. */
  const qs = new Float32Array(T * Dk);
  const softmaxK = kernel('Softmax');
  const probs = (): void => {
    for (let i = 0; i < qs.length; i++) qs[i] = qh[i]! * scale;
    mm({ a: qs, b: kh, c: P, batch: 1, m: T, n: S, k: Dk, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    if (S > off + 1) for (let t = 0; t < T; t++) P.fill(-Infinity, t * S + t + off + 1, (t + 1) * S);
    softmaxK(P, P, T, S);
    // Masked entries exactly 0 whatever the kernel's exp does with −∞.
    if (S > off + 1) for (let t = 0; t < T; t++) P.fill(0, t * S + t + off + 1, (t + 1) * S);
  };
  let lastKV = -1;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
    const khd = KH === 1 ? 0 : h;
    gather(Q, qh, b, h, T, H, Dk);
    if (lastKV !== b * KH + khd) { loadKV(b, khd); lastKV = b * KH + khd; }
    probs();
    mm({ a: P, b: vh, c: oh, batch: 1, m: T, n: Dv, k: S, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
    for (let t = 0; t < T; t++) out.set(oh.subarray(t * Dv, (t + 1) * Dv), ((b * T + t) * H + h) * Dv);
  }
  const softmaxBwd = kernel('SoftmaxBackward');
  return record(new Tensor(out, [B, T, H, Dv]), 'CausalAttention', [q, k, v], (g) => {
    const gq = new Float32Array(Q.length), gk = new Float32Array(K.length), gv = new Float32Array(Vv.length);
    const go = new Float32Array(T * Dv), dP = new Float32Array(T * S), gqh = new Float32Array(T * Dk);
    const gkh = new Float32Array(S * Dk), gvh = new Float32Array(S * Dv);
    lastKV = -1;
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) {
      const khd = KH === 1 ? 0 : h;
      gather(Q, qh, b, h, T, H, Dk);
      if (lastKV !== b * KH + khd) { loadKV(b, khd); lastKV = b * KH + khd; }
      gather(g, go, b, h, T, H, Dv);
      probs();
      // dV = Pᵀ·dO ; dP = dO·Vᵀ ; dS = P ⊙ (dP − rowsum(dO ⊙ O)) · scale ; dQ = dS·K ; dK = dSᵀ·Q
      mm({ a: P, b: go, c: gvh, batch: 1, m: S, n: Dv, k: T, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      mm({ a: go, b: vh, c: dP, batch: 1, m: T, n: S, k: Dv, transA: false, transB: true, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      // dS = scale · P ⊙ (dP − rowsum(P ⊙ dP)); masked entries have P = 0, so dS = 0 there.
      softmaxBwd(P, dP, dP, T, S, scale);
      mm({ a: dP, b: kh, c: gqh, batch: 1, m: T, n: Dk, k: S, transA: false, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      mm({ a: dP, b: qh, c: gkh, batch: 1, m: S, n: Dk, k: T, transA: true, transB: false, strideA: 0, strideB: 0, strideC: 0, accumulate: false });
      scatterAdd(gqh, gq, b, h, T, H, Dk);
      scatterAdd(gkh, gk, b, khd, S, KH, Dk);
      scatterAdd(gvh, gv, b, khd, S, KH, Dv);
    }
    return [gq, gk, gv];
  });
}
