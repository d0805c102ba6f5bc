// AdamW with BF16-stored moments (the FP8 recipe's optimizer state, report §3.3): one pass over
// the parameter in L1-sized chunks that widens m and v exactly to f32, runs adamw() of optim.cc,
// and rounds m and v back to BF16 to nearest even (NaN stays a quiet NaN, sign kept) - the same
// bits as decode + adamw + encode, without two f32 copies of the moments in memory.
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

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void widen512(const uint16_t* m, const uint16_t* v, float* mb, float* vb, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_store_ps(mb + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(m + i))), 16)));
    _mm512_store_ps(vb + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)(v + i))), 16)));
  }
  for (; i < n; i++) { mb[i] = bf16ToF32(m[i]); vb[i] = bf16ToF32(v[i]); }
}
FRUGAL_AVX512 static inline __m256i narrow16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i rne = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rne, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40))));
}
FRUGAL_AVX512 static void narrow512(const float* mb, const float* vb, uint16_t* m, uint16_t* v, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256((__m256i*)(m + i), narrow16(_mm512_load_ps(mb + i)));
    _mm256_storeu_si256((__m256i*)(v + i), narrow16(_mm512_load_ps(vb + i)));
  }
  for (; i < n; i++) { m[i] = f32ToBf16(mb[i]); v[i] = f32ToBf16(vb[i]); }
}
#endif

void widen(const uint16_t* m, const uint16_t* v, float* mb, float* vb, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return widen512(m, v, mb, vb, n);
#endif
  for (long i = 0; i < n; i++) { mb[i] = bf16ToF32(m[i]); vb[i] = bf16ToF32(v[i]); }
}
void narrow(const float* mb, const float* vb, uint16_t* m, uint16_t* v, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return narrow512(mb, vb, m, v, n);
#endif
  for (long i = 0; i < n; i++) { m[i] = f32ToBf16(mb[i]); v[i] = f32ToBf16(vb[i]); }
}

}  // namespace

void adamwBf16(float* w, const float* g, uint16_t* m, uint16_t* v, long n, const AdamWHyper& h) {
  // Chunks of 1024: moments widened into buffers on the stack (L1), the very adamw() of optim.cc
  // on them (same instructions, so the same bits, whatever the compiler contracts), rounded back.
  auto run = [&](long i0, long i1) {
    alignas(64) float mb[1024], vb[1024];
    for (long j = i0; j < i1; j += 1024) {
      const long e = std::min(i1, j + 1024);
      widen(m + j, v + j, mb, vb, e - j);
      adamw(w + j, g + j, mb, vb, e - j, h);  // under 2^18 elements: runs on this thread
      narrow(mb, vb, m + j, v + j, e - j);
    }
  };
  if (n < (1L << 18) || poolThreads() <= 1) return run(0, n);
  const long P = 2L * poolThreads();
  poolRunChunks(P, [&](long pc, int) {
    const long a = (n * pc / P) & ~1023L, b = pc == P - 1 ? n : (n * (pc + 1) / P) & ~1023L;
    run(a, b);
  });
}

}  // namespace frugal
