// Latent attention of one decode row (absorbed MLA): each head's query [D] (already scaled) against
// the L cached latents [L, D] = [ĉ | k_pe], softmax, and the weighted sum of the latents' first dc
// entries (ĉ are the values). Keys are read in place from the cache (no gather), each latent row
// once for up to 4 heads; scores of 4 keys × 4 heads come out of one transposing reduction. One
// row at a time, so rows are independent; a head's result does not depend on its group.
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


// G heads at once (G ≤ 4): each key chunk is loaded once for all G queries; scores of 4 keys × G
// heads come out of one reduce16 (accumulator 4·hh + kk is key kk of head hh).
template <int G>
FRUGAL_AVX512 void attendHeads(const float* q, const float* cache, long L, long D, long dc, float* out, float* sc) {
  for (long j0 = 0; j0 < L; j0 += 4) {
    const long nk = std::min<long>(4, L - j0);
    const float* kr[4];
    for (int kk = 0; kk < 4; kk++) kr[kk] = cache + (kk < nk ? j0 + kk : j0) * D;
    __m512 acc[16];
    for (int t = 0; t < 16; t++) acc[t] = _mm512_setzero_ps();
    for (long d = 0; d < D; d += 16) {
      const __mmask16 mk = tail16(D - d);
      __m512 kv[4];
      for (int kk = 0; kk < 4; kk++) kv[kk] = _mm512_maskz_loadu_ps(mk, kr[kk] + d);
      for (int hh = 0; hh < G; hh++) {
        const __m512 qv = _mm512_maskz_loadu_ps(mk, q + hh * D + d);
        for (int kk = 0; kk < 4; kk++) acc[4 * hh + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[4 * hh + kk]);
      }
    }
    const __m512 z = reduce16(acc);
    const __mmask8 km = (__mmask8)((1u << nk) - 1);
    if (G > 0) _mm_mask_storeu_ps(sc + j0, km, _mm512_extractf32x4_ps(z, 0));
    if (G > 1) _mm_mask_storeu_ps(sc + L + j0, km, _mm512_extractf32x4_ps(z, 1));
    if (G > 2) _mm_mask_storeu_ps(sc + 2 * L + j0, km, _mm512_extractf32x4_ps(z, 2));
    if (G > 3) _mm_mask_storeu_ps(sc + 3 * L + j0, km, _mm512_extractf32x4_ps(z, 3));
  }
  // Softmax of each head's scores.
  for (int hh = 0; hh < G; hh++) {
    float* s = sc + hh * L;
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
  // Values: 64 entries of ĉ at a time, each latent row loaded once for the G heads, keys in order.
  for (long d = 0; d < dc; d += 64) {
    __mmask16 mk[4];
    __m512 acc[G][4];
    for (int t = 0; t < 4; t++) mk[t] = d + 16 * t < dc ? tail16(dc - d - 16 * t) : 0;
    for (int hh = 0; hh < G; hh++)
      for (int t = 0; t < 4; t++) acc[hh][t] = _mm512_setzero_ps();
    for (long j = 0; j < L; j++) {
      const float* v = cache + j * D + d;
      __m512 vv[4];
      for (int t = 0; t < 4; t++) vv[t] = _mm512_maskz_loadu_ps(mk[t], v + 16 * t);
      for (int hh = 0; hh < G; hh++) {
        const __m512 p = _mm512_set1_ps(sc[hh * L + j]);
        for (int t = 0; t < 4; t++) acc[hh][t] = _mm512_fmadd_ps(p, vv[t], acc[hh][t]);
      }
    }
    for (int hh = 0; hh < G; hh++)
      for (int t = 0; t < 4; t++) _mm512_mask_storeu_ps(out + hh * dc + d + 16 * t, mk[t], acc[hh][t]);
  }
}

FRUGAL_AVX512 void attend512(const float* q, const float* cache, long L, long nh, long D, long dc, float* out, float* sc, long h0, long h1) {
  (void)nh;
  for (long h = h0; h < h1; h += 4) {
    const float* qh = q + h * D;
    float* oh = out + h * dc;
    float* sh = sc + h * L;
    switch (std::min<long>(4, h1 - h)) {
      case 4: attendHeads<4>(qh, cache, L, D, dc, oh, sh); break;
      case 3: attendHeads<3>(qh, cache, L, D, dc, oh, sh); break;
      case 2: attendHeads<2>(qh, cache, L, D, dc, oh, sh); break;
      default: attendHeads<1>(qh, cache, L, D, dc, oh, sh); break;
    }
  }
}
#endif

}  // namespace

void latentAttendRow(const float* q, const float* cache, long L, long nh, long D, long dc, float* out, float* scores, long h0, long h1) {
  (void)nh;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return attend512(q, cache, L, nh, D, dc, out, scores, h0, h1);
#endif
  attendPortable(q, cache, L, nh, D, dc, out, scores, h0, h1);
}

}  // namespace dec
}  // namespace frugal
