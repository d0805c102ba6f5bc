// Fused causal attention, forward and backward, over strided Q/K/V (no gathers, no score
// matrices): per (batch, head) task, each query row forms its scores against the transposed key
// panel, a numerically safe softmax, and the weighted sum of value rows; backward recomputes that
// row's probabilities (nothing is stored between passes) and forms dQ, dK, dV. Tasks run on the
// pool: (b, h) pairs when every head has its own K/V; whole batch entries when one K/V head is
// shared (MLA's absorbed form), so no two threads add into the same dK/dV rows.
//
// Layout (elements): q (b,t,h,d) at ((b*T+t)*H+h)*Dk+d; k (b,s,kh,d) at (b*S+s)*ldk+kh*Dk+d;
// v (b,s,kh,d) at (b*S+s)*ldv+kh*Dv+d; out/dO (b,t,h,d) at ((b*T+t)*H+h)*Dv+d. Query t sits at
// position t+S−T. The AVX-512 build uses the shared exp512 (vecmath.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#include "vecmath.h"

namespace frugal {
namespace {

struct Scratch {
  std::vector<float> kt, vt, s, dp, acc, dk, dv;
};

static Scratch& scratch() {
  static thread_local Scratch sc;
  return sc;
}

#if FRUGAL_HAVE_X86_KERNELS
static inline __mmask16 tailMask(long n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

// p[j] ← softmax_j(sc·p[j]) for j < L, zeros on [L, ld): max, exp and scale passes in 16 lanes.
FRUGAL_AVX512 static void softmaxRow512(float* p, long L, long ld, float sc) {
  const __m512 scv = _mm512_set1_ps(sc);
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (long j = 0; j < L; j += 16)
    mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tailMask(L - j), p + j));
  const __m512 mv = _mm512_set1_ps(sc * _mm512_reduce_max_ps(mx));
  __m512 acc = _mm512_setzero_ps();
  for (long j = 0; j < L; j += 16) {
    const __mmask16 mk = tailMask(L - j);
    const __m512 e = _mm512_maskz_mov_ps(mk, exp512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(mk, p + j), scv, mv)));
    _mm512_mask_storeu_ps(p + j, mk, e);
    acc = _mm512_add_ps(acc, e);
  }
  const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(acc));
  for (long j = 0; j < L; j += 16) {
    const __mmask16 mk = tailMask(L - j);
    _mm512_mask_storeu_ps(p + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, p + j), inv));
  }
  for (long j = L; j < ld; j += 16) _mm512_mask_storeu_ps(p + j, tailMask(ld - j), _mm512_setzero_ps());
}

// d[j] ← sc·p[j]·(d[j] − Σ_i p[i]·d[i]) for j < n (the softmax backward of one row).
FRUGAL_AVX512 static void softmaxGradRow512(const float* p, float* d, long n, float sc) {
  __m512 acc = _mm512_setzero_ps();
  for (long j = 0; j < n; j += 16) {
    const __mmask16 mk = tailMask(n - j);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, p + j), _mm512_maskz_loadu_ps(mk, d + j), acc);
  }
  const __m512 D = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), scv = _mm512_set1_ps(sc);
  for (long j = 0; j < n; j += 16) {
    const __mmask16 mk = tailMask(n - j);
    const __m512 pv = _mm512_mul_ps(scv, _mm512_maskz_loadu_ps(mk, p + j));
    _mm512_mask_storeu_ps(d + j, mk, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(mk, d + j), D)));
  }
}

// dst[d] = mul·src[d] for d < n (head rows of 16–128 floats: no library call per row).
FRUGAL_AVX512 static void copyRow512(float* dst, const float* src, long n, float mul) {
  const __m512 mv = _mm512_set1_ps(mul);
  for (long j = 0; j < n; j += 16) {
    const __mmask16 mk = tailMask(n - j);
    _mm512_mask_storeu_ps(dst + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, src + j), mv));
  }
}
#endif
static float expSubPortable(float* s, long n, float m) {
  double sum = 0;
  for (long j = 0; j < n; j++) { s[j] = std::exp(s[j] - m); sum += s[j]; }
  return (float)sum;
}

struct Geo {
  long B, T, S, H, KH, Dk, Dv, ldk, ldv;
  float scale;
};

// C[m,n] (+)= op(A)·op(B) on this thread (A [m,k] or [k,m] if ta; B [k,n] or [n,k] if tb).
static inline void gemm(const float* a, const float* b, float* c, long m, long n, long k, bool ta, bool tb, bool acc) {
  MatMulArgs x{a, b, c, 1, m, n, k, ta, tb, 0, 0, 0, acc};
  matmulF32Serial(x);
}

// dst[d] = mul·src[d] for d < n.
template <bool Avx>
static inline __attribute__((always_inline)) void copyRow(float* dst, const float* src, long n, float mul = 1.f) {
#if FRUGAL_HAVE_X86_KERNELS
  if (Avx) return copyRow512(dst, src, n, mul);
#endif
  for (long d = 0; d < n; d++) dst[d] = src[d] * mul;
}

// dst[r*D + d] = src[(b*L + r)*ld + off + d] for r < L, d < D (a strided head panel made contiguous).
template <bool Avx>
static inline __attribute__((always_inline)) void gatherPanel(const float* src, long ld, long off, long b, long L, long D, float* dst) {
  for (long r = 0; r < L; r++) copyRow<Avx>(dst + r * D, src + (b * L + r) * ld + off, D);
}

// Masked softmax of sc·P in place over `rows` rows of P (row stride ld): row r is query t = t0 + r,
// or r % T when `stacked` (heads stacked T rows each); keys past t + S − T are masked (set to 0).
template <bool Avx>
static inline __attribute__((always_inline)) void maskSoftmax(const Geo& g, float* P, long rows, long ld, long t0, bool stacked, float sc = 1.f) {
  const long off = g.S - g.T;
  for (long r = 0; r < rows; r++) {
    float* p = P + r * ld;
    const long L = (stacked ? r % g.T : t0 + r) + off + 1;
#if FRUGAL_HAVE_X86_KERNELS
    if (Avx) { softmaxRow512(p, L, ld, sc); continue; }
#endif
    if (sc != 1.f) for (long j = 0; j < L; j++) p[j] *= sc;
    float m = -INFINITY;
    for (long j = 0; j < L; j++) m = std::max(m, p[j]);
    const float sum = expSubPortable(p, L, m);
    const float inv = 1.f / sum;
    for (long j = 0; j < L; j++) p[j] *= inv;
    std::fill(p + L, p + ld, 0.f);
  }
}

// Query rows are processed in causal blocks of kRB: a block only needs the keys its last row sees,
// so about half of the masked work of a full T×S block is skipped in training.
constexpr long kRB = 64;

// Forward for heads [h0, h1) of batch entry b. Queries of those heads are stacked into one panel
// when they share a K/V head, so scores and outputs are one GEMM each.
template <bool Avx>
static inline __attribute__((always_inline)) void fwdTask(const Geo& g, const float* q, const float* k, const float* v, float* out, long b, long h0, long h1) {
  Scratch& sc = scratch();
  const long nh = g.KH == 1 ? h1 - h0 : 1, rows = nh * g.T;
  sc.acc.resize((size_t)(rows * g.Dk));
  sc.s.resize((size_t)(rows * g.S));
  sc.kt.resize((size_t)(g.S * g.Dk));
  sc.vt.resize((size_t)(g.S * g.Dv));
  sc.dp.resize((size_t)(rows * g.Dv));
  float *Q = sc.acc.data(), *P = sc.s.data(), *K = sc.kt.data(), *V = sc.vt.data(), *O = sc.dp.data();
  for (long hb = h0; hb < h1; hb += nh) {
    const long kh = g.KH == 1 ? 0 : hb;
    if (hb == h0 || g.KH != 1) {
      gatherPanel<Avx>(k, g.ldk, kh * g.Dk, b, g.S, g.Dk, K);
      gatherPanel<Avx>(v, g.ldv, kh * g.Dv, b, g.S, g.Dv, V);
    }
    // Q rows (head-major, then t), pre-scaled.
    for (long i = 0; i < nh; i++)
      for (long t = 0; t < g.T; t++) {
        copyRow<Avx>(Q + (i * g.T + t) * g.Dk, q + ((b * g.T + t) * g.H + hb + i) * g.Dk, g.Dk, g.scale);
      }
    if (nh == 1) {
      for (long t0 = 0; t0 < g.T; t0 += kRB) {
        const long nb = std::min(kRB, g.T - t0), L = std::min(g.S, t0 + nb + g.S - g.T);
        gemm(Q + t0 * g.Dk, K, P, nb, L, g.Dk, false, true, false);
        maskSoftmax<Avx>(g, P, nb, L, t0, false);
        gemm(P, V, O + t0 * g.Dv, nb, g.Dv, L, false, false, false);
      }
    } else {
      gemm(Q, K, P, rows, g.S, g.Dk, false, true, false);
      maskSoftmax<Avx>(g, P, rows, g.S, 0, true);
      gemm(P, V, O, rows, g.Dv, g.S, false, false, false);
    }
    for (long i = 0; i < nh; i++)
      for (long t = 0; t < g.T; t++)
        copyRow<Avx>(out + ((b * g.T + t) * g.H + hb + i) * g.Dv, O + (i * g.T + t) * g.Dv, g.Dv);
  }
}

// Backward of head h of batch entry b: adds dK/dV of this head into the panels dk [S, Dk], dv [S, Dv].
template <bool Avx>
static inline __attribute__((always_inline)) void bwdTask(const Geo& g, const float* q, const float* k, const float* v, const float* go,
                                                          float* gq, float* dk, float* dv, long b, long h, bool loadKV) {
  Scratch& sc = scratch();
  const long kh = g.KH == 1 ? 0 : h;
  sc.kt.resize((size_t)(g.S * g.Dk));
  sc.vt.resize((size_t)(g.S * g.Dv));
  sc.s.resize((size_t)(g.T * g.S));
  sc.dp.resize((size_t)(g.T * g.S));
  sc.acc.resize((size_t)(g.T * (2 * g.Dk + g.Dv)));
  float *K = sc.kt.data(), *V = sc.vt.data(), *P = sc.s.data(), *dP = sc.dp.data();
  float *Q = sc.acc.data(), *dO = Q + g.T * g.Dk, *dQ = dO + g.T * g.Dv;
  if (loadKV) {
    gatherPanel<Avx>(k, g.ldk, kh * g.Dk, b, g.S, g.Dk, K);
    gatherPanel<Avx>(v, g.ldv, kh * g.Dv, b, g.S, g.Dv, V);
  }
  for (long t = 0; t < g.T; t++) {
    copyRow<Avx>(Q + t * g.Dk, q + ((b * g.T + t) * g.H + h) * g.Dk, g.Dk);
    copyRow<Avx>(dO + t * g.Dv, go + ((b * g.T + t) * g.H + h) * g.Dv, g.Dv);
  }
  for (long t0 = 0; t0 < g.T; t0 += kRB) {
    const long nb = std::min(kRB, g.T - t0), L = std::min(g.S, t0 + nb + g.S - g.T);
    const float* Qb = Q + t0 * g.Dk;
    const float* dOb = dO + t0 * g.Dv;
    // P = softmax(mask(scale·Q·Kᵀ)) over this block's keys, the forward's probabilities recomputed.
    gemm(Qb, K, P, nb, L, g.Dk, false, true, false);
    maskSoftmax<Avx>(g, P, nb, L, t0, false, g.scale);
    // dV += Pᵀ·dO ; dP = dO·Vᵀ ; dS = scale·P⊙(dP − rowsum(P⊙dP)) ; dQ = dS·K ; dK += dSᵀ·Q
    gemm(P, dOb, dv, L, g.Dv, nb, true, false, true);
    gemm(dOb, V, dP, nb, L, g.Dv, false, true, false);
    for (long t = 0; t < nb; t++) {
      const float* p = P + t * L;
      float* d = dP + t * L;
#if FRUGAL_HAVE_X86_KERNELS
      if (Avx) { softmaxGradRow512(p, d, L, g.scale); continue; }
#endif
      float D = 0.f;
      for (long j = 0; j < L; j++) D += p[j] * d[j];
      for (long j = 0; j < L; j++) d[j] = g.scale * p[j] * (d[j] - D);
    }
    gemm(dP, K, dQ + t0 * g.Dk, nb, g.Dk, L, false, false, false);
    gemm(dP, Qb, dk, L, g.Dk, nb, true, false, true);
  }
  for (long t = 0; t < g.T; t++) {
    float* dst = gq + ((b * g.T + t) * g.H + h) * g.Dk;
    const float* src = dQ + t * g.Dk;
    for (long d = 0; d < g.Dk; d++) dst[d] += src[d];  // (vectorised by the compiler)
  }
}

static void fwdPortable(const Geo& g, const float* q, const float* k, const float* v, float* out, long b, long h0, long h1) { fwdTask<false>(g, q, k, v, out, b, h0, h1); }
static void bwdPortable(const Geo& g, const float* q, const float* k, const float* v, const float* go, float* gq, float* dk, float* dv, long b, long h, bool l) {
  bwdTask<false>(g, q, k, v, go, gq, dk, dv, b, h, l);
}
#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void fwd512(const Geo& g, const float* q, const float* k, const float* v, float* out, long b, long h0, long h1) { fwdTask<true>(g, q, k, v, out, b, h0, h1); }
FRUGAL_AVX512 static void bwd512(const Geo& g, const float* q, const float* k, const float* v, const float* go, float* gq, float* dk, float* dv, long b, long h, bool l) {
  bwdTask<true>(g, q, k, v, go, gq, dk, dv, b, h, l);
}
#endif

static int tasksThreads(long tasks, long workPerTask) {
  if (tasks * workPerTask < (1L << 17)) return 1;
  return (int)std::max<long>(1, std::min<long>(poolThreads(), tasks));
}

}  // namespace

void attentionForward(const AttnArgs& a) {
  const Geo g{a.B, a.T, a.S, a.H, a.KH, a.Dk, a.Dv, a.ldk, a.ldv, a.scale};
  auto fn = fwdPortable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) fn = fwd512;
#endif
  // Tasks: (b, h) with per-head K/V; with one shared K/V head, (b, group of heads) so the key
  // panel is transposed once per group — G groups per entry, enough to give every thread work.
  const long G = g.KH == 1 ? std::max<long>(1, std::min<long>(g.H, (poolThreads() + g.B - 1) / g.B)) : g.H;
  const long tasks = g.B * G;
  auto task = [&](long i) {
    const long b = i / G, gi = i % G;
    fn(g, a.q, a.k, a.v, a.out, b, g.H * gi / G, g.H * (gi + 1) / G);
  };
  const int T = tasksThreads(tasks, (g.H / G) * g.T * g.S * (g.Dk + g.Dv) / 2);
  if (T <= 1) { for (long i = 0; i < tasks; i++) task(i); return; }
  poolRunChunks(tasks, [&](long i, int) { task(i); });
}

void attentionBackward(const AttnArgs& a, const float* go, float* gq, float* gk, float* gv) {
  const Geo g{a.B, a.T, a.S, a.H, a.KH, a.Dk, a.Dv, a.ldk, a.ldv, a.scale};
  auto fn = bwdPortable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) fn = bwd512;
#endif
  // A task owns the dK/dV rows of one (b, kv head): (b, h) when KH = H, all heads of b when KH = 1.
  const long perTask = g.KH == 1 ? g.H : 1;
  const long tasks = g.B * g.H / perTask;
  auto task = [&](long i) {
    thread_local std::vector<float> dk, dv;
    dk.assign((size_t)(g.S * g.Dk), 0.f);
    dv.assign((size_t)(g.S * g.Dv), 0.f);
    const long b = g.KH == 1 ? i : i / g.H, h0 = g.KH == 1 ? 0 : i % g.H, kh = g.KH == 1 ? 0 : h0;
    for (long h = h0; h < h0 + perTask; h++) fn(g, a.q, a.k, a.v, go, gq, dk.data(), dv.data(), b, h, h == h0);
    // Strided add into the K/V gradients (their own layout, which may interleave K and V).
    for (long s = 0; s < g.S; s++) {
      float* kr = gk + (b * g.S + s) * g.ldk + kh * g.Dk;
      float* vr = gv + (b * g.S + s) * g.ldv + kh * g.Dv;
      for (long d = 0; d < g.Dk; d++) kr[d] += dk[(size_t)(s * g.Dk + d)];
      for (long d = 0; d < g.Dv; d++) vr[d] += dv[(size_t)(s * g.Dv + d)];
    }
  };
  const int T = tasksThreads(tasks, perTask * g.T * g.S * (g.Dk + g.Dv));
  if (T <= 1) { for (long i = 0; i < tasks; i++) task(i); return; }
  poolRunChunks(tasks, [&](long i, int) { task(i); });
}

}  // namespace frugal
