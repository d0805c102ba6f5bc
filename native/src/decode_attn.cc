// Latent attention of decode queries (absorbed MLA): each query [D] (a head of a row, already
// scaled) against its row's L cached latents [L, D] = [ĉ | k_pe], softmax, and the weighted sum of
// the latents' first dc entries (ĉ are the values). Keys are read in place from the cache (no
// gather), each latent row once for up to 8 queries — the heads of one row, or of several rows of
// one sequence (a speculative verify), each over its own length; scores of several keys × queries
// come out of one transposing reduction. A query's result does not depend on its group.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "decode.h"
#include "vecmath.h"

namespace frugal {
namespace dec {
namespace {

void attendPortable(const float* q, const float* cache, long L, long nh, long D, long dc, float* out, float* sc, long h0, long h1) {
  for (long h = h0; h < h1; h++) {
    const float* qh = q + h * D;
    float* s = sc + h * L;
    float m = -INFINITY;
    for (long j = 0; j < L; j++) {
      float a = 0.f;
      for (long d = 0; d < D; d++) a += qh[d] * cache[j * D + d];
      s[j] = a;
      m = std::max(m, a);
    }
    double sum = 0;
    for (long j = 0; j < L; j++) { s[j] = std::exp(s[j] - m); sum += s[j]; }
    const float inv = (float)(1.0 / sum);
    float* o = out + h * dc;
    std::fill(o, o + dc, 0.f);
    for (long j = 0; j < L; j++) {
      const float p = s[j] * inv;
      for (long d = 0; d < dc; d++) o[d] += p * cache[j * D + d];
    }
  }
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 inline __mmask16 tail16(long left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }


// Q query vectors (Q ≤ 8: heads of one or more rows) over the same cache, query i over keys
// [0, L_i). Each key chunk is loaded once for all Q queries. A query's score of a key is its own
// accumulator (lanes in d order, reduced by the position-independent tree), its softmax runs over
// its own L, its values are summed over keys in order: so its result does not depend on which
// queries share the call.
template <int Q>
FRUGAL_AVX512 void attendQueries(const AttnQuery* qs, const float* cache, long D, long dc, float* sc, long ld) {
  constexpr int KK = Q <= 4 ? 4 : 2;
  long maxL = 0;
  for (int i = 0; i < Q; i++) maxL = std::max(maxL, qs[i].L);
  for (long j0 = 0; j0 < maxL; j0 += KK) {
    const long nk = std::min<long>(KK, maxL - j0);
    const float* kr[KK];
    for (int kk = 0; kk < KK; kk++) kr[kk] = cache + (kk < nk ? j0 + kk : j0) * D;
    __m512 acc[16];
    for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
    for (long d = 0; d < D; d += 16) {
      const __mmask16 mk = tail16(D - d);
      __m512 kv[KK];
      for (int kk = 0; kk < KK; kk++) kv[kk] = _mm512_maskz_loadu_ps(mk, kr[kk] + d);
      for (int i = 0; i < Q; i++) {
        const __m512 qv = _mm512_maskz_loadu_ps(mk, qs[i].q + d);
        for (int kk = 0; kk < KK; kk++) acc[KK * i + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[KK * i + kk]);
      }
    }
    alignas(64) float t[16];
    _mm512_store_ps(t, reduce16(acc));
    for (int i = 0; i < Q; i++)
      for (long kk = 0; kk < nk && j0 + kk < qs[i].L; kk++) sc[i * ld + j0 + kk] = t[KK * i + kk];
  }
  // Softmax of each query's scores over its own keys.
  for (int i = 0; i < Q; i++) {
    float* s = sc + i * ld;
    const long L = qs[i].L;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (long j = 0; j < L; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tail16(L - j), s + j));
    const __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (long j = 0; j < L; j += 16) {
      const __mmask16 mk = tail16(L - j);
      const __m512 e = _mm512_maskz_mov_ps(mk, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, s + j), mv)));
      _mm512_mask_storeu_ps(s + j, mk, e);
      sum = _mm512_add_ps(sum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(sum));
    for (long j = 0; j < L; j += 16) {
      const __mmask16 mk = tail16(L - j);
      _mm512_mask_storeu_ps(s + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, s + j), inv));
    }
  }
  // Values: 16·DB entries of ĉ at a time, each latent row loaded once for the queries that see it.
  constexpr int DB = Q <= 4 ? 4 : 2;
  for (long d = 0; d < dc; d += 16 * DB) {
    __mmask16 mk[DB];
    __m512 acc[Q][DB];
    for (int u = 0; u < DB; u++) mk[u] = d + 16 * u < dc ? tail16(dc - d - 16 * u) : 0;
    for (int i = 0; i < Q; i++)
      for (int u = 0; u < DB; u++) acc[i][u] = _mm512_setzero_ps();
    for (long j = 0; j < maxL; j++) {
      const float* v = cache + j * D + d;
      __m512 vv[DB];
      for (int u = 0; u < DB; u++) vv[u] = _mm512_maskz_loadu_ps(mk[u], v + 16 * u);
      for (int i = 0; i < Q; i++) {
        if (j >= qs[i].L) continue;
        const __m512 p = _mm512_set1_ps(sc[i * ld + j]);
        for (int u = 0; u < DB; u++) acc[i][u] = _mm512_fmadd_ps(p, vv[u], acc[i][u]);
      }
    }
    for (int i = 0; i < Q; i++)
      for (int u = 0; u < DB; u++) _mm512_mask_storeu_ps(qs[i].out + d + 16 * u, mk[u], acc[i][u]);
  }
}

FRUGAL_AVX512 void attendQueries512(const AttnQuery* qs, long Q, const float* cache, long D, long dc, float* sc, long ld) {
  for (long i = 0; i < Q;) {
    const long g = std::min<long>(8, Q - i);
    switch (g) {
      case 8: attendQueries<8>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 7: attendQueries<7>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 6: attendQueries<6>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 5: attendQueries<5>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 4: attendQueries<4>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 3: attendQueries<3>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      case 2: attendQueries<2>(qs + i, cache, D, dc, sc + i * ld, ld); break;
      default: attendQueries<1>(qs + i, cache, D, dc, sc + i * ld, ld); break;
    }
    i += g;
  }
}

#endif

}  // namespace

void latentAttendQueries(const AttnQuery* qs, long Q, const float* cache, long D, long dc, float* scores, long ld) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return attendQueries512(qs, Q, cache, D, dc, scores, ld);
#endif
  for (long i = 0; i < Q; i++) attendPortable(qs[i].q, cache, qs[i].L, 1, D, dc, qs[i].out, scores + i * ld, 0, 1);
}

void latentAttendRow(const float* q, const float* cache, long L, long nh, long D, long dc, float* out, float* scores, long h0, long h1) {
  (void)nh;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) {
    AttnQuery qs[8];
    for (long h = h0; h < h1; h += 8) {
      const long n = std::min<long>(8, h1 - h);
      for (long i = 0; i < n; i++) qs[i] = {q + (h + i) * D, L, out + (h + i) * dc};
      attendQueries512(qs, n, cache, D, dc, scores + h * L, L);
    }
    return;
  }
#endif
  attendPortable(q, cache, L, nh, D, dc, out, scores, h0, h1);
}

}  // namespace dec
}  // namespace frugal
