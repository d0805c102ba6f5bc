// AdamW with BF16-stored moments (the FP8 recipe's optimizer state, report §3.3): one pass that
// decodes m and v exactly to f32, applies the same f32 update as adamw() in optim.cc (same
// expression, no fused multiply-add, IEEE sqrt and division), and rounds m and v back to BF16
// to nearest even (NaN stays a quiet NaN, sign kept) - the same bits as decode + adamw + encode,
// without the two f32 scratch copies of the moments.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fp8.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace {

inline float bf16ToF32(uint16_t h) { const uint32_t u = (uint32_t)h << 16; float f; std::memcpy(&f, &u, 4); return f; }
inline uint16_t f32ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

void rangePortable(float* w, const float* g, uint16_t* m, uint16_t* v, const AdamWHyper& h, long i0, long i1) {
  for (long j = i0; j < i1; j++) {
    const float gj = g[j];
    const float mj = h.beta1 * bf16ToF32(m[j]) + h.oneMinusBeta1 * gj;
    const float vj = h.beta2 * bf16ToF32(v[j]) + h.oneMinusBeta2 * gj * gj;
    w[j] = w[j] * h.decay - h.stepSize * mj / (std::sqrt(vj) * h.invBc2Sqrt + h.eps);
    m[j] = f32ToBf16(mj);
    v[j] = f32ToBf16(vj);
  }
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static inline __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
FRUGAL_AVX512 static inline __m256i narrow(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i rne = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rne, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40))));
}
FRUGAL_AVX512 void range512(float* w, const float* g, uint16_t* m, uint16_t* v, const AdamWHyper& h, long i0, long i1) {
  const __m512 b1 = _mm512_set1_ps(h.beta1), ob1 = _mm512_set1_ps(h.oneMinusBeta1), b2 = _mm512_set1_ps(h.beta2), ob2 = _mm512_set1_ps(h.oneMinusBeta2);
  const __m512 dec = _mm512_set1_ps(h.decay), step = _mm512_set1_ps(h.stepSize), ibc = _mm512_set1_ps(h.invBc2Sqrt), eps = _mm512_set1_ps(h.eps);
  long j = i0;
  // Full vectors with plain loads and stores (masked stores are slow on some cores); the tail in C++.
  for (; j + 16 <= i1; j += 16) {
    const __m512 gj = _mm512_loadu_ps(g + j);
    const __m512 mj = _mm512_add_ps(_mm512_mul_ps(b1, widen(_mm256_loadu_si256((const __m256i*)(m + j)))), _mm512_mul_ps(ob1, gj));
    const __m512 vj = _mm512_add_ps(_mm512_mul_ps(b2, widen(_mm256_loadu_si256((const __m256i*)(v + j)))), _mm512_mul_ps(_mm512_mul_ps(ob2, gj), gj));
    const __m512 den = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vj), ibc), eps);
    _mm512_storeu_ps(w + j, _mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(w + j), dec), _mm512_div_ps(_mm512_mul_ps(step, mj), den)));
    _mm256_storeu_si256((__m256i*)(m + j), narrow(mj));
    _mm256_storeu_si256((__m256i*)(v + j), narrow(vj));
  }
  rangePortable(w, g, m, v, h, j, i1);
}
#endif

}  // namespace

void adamwBf16(float* w, const float* g, uint16_t* m, uint16_t* v, long n, const AdamWHyper& h) {
  auto run = [&](long i0, long i1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return range512(w, g, m, v, h, i0, i1);
#endif
    rangePortable(w, g, m, v, h, i0, i1);
  };
  if (n < (1L << 18) || poolThreads() <= 1) return run(0, n);
  const long P = 2L * poolThreads();
  poolRunChunks(P, [&](long pc, int) {
    const long a = (n * pc / P) & ~63L, b = pc == P - 1 ? n : (n * (pc + 1) / P) & ~63L;
    run(a, b);
  });
}

}  // namespace frugal
