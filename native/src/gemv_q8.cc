// Q8_0 matrix-vector product for decode, y[m,n] = x[m,k] · W[n,k]^T with W in ggml's Q8_0 blocks
// (per 32 weights: an IEEE-half scale d then 32 int8, 34 bytes, read in place from a GGUF file).
// Like llama.cpp's x86 CPU path, each row of x is first quantised to Q8_0 (d = max|x|/127 stored as
// half, q = round-half-even(x · 127/max|x|)), then every block contributes
// f16(dw)·f16(dx)·Σ qw·qx (exact int32 sum) to an f32 accumulator. Same arithmetic as the ts
// reference (src/infer/q8.ts) up to the order of the f32 additions.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.h"
#include "decode.h"
#include "vecmath.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace {

constexpr long QK = 32, QB = 34;


// float -> half bits, round to nearest even (values here are finite and non-negative scales).
uint16_t floatToHalf(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000, exp = (u >> 23) & 0xff;
  uint32_t mant = u & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
  int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000;
    const int shift = 14 - e;
    const uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    return (uint16_t)(sign | (half + ((rem > mid || (rem == mid && (half & 1))) ? 1 : 0)));
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | ((h >> 10) >= 31 ? 0x7c00 : h));
}

// One row of x (k a multiple of 32) -> int16 codes and the f32 value of each block's f16 scale.
#if FRUGAL_HAVE_X86_KERNELS
// quantizeRow's blocks with AVX-512: the same float products, rounded to nearest even by
// vrndscaleps (as nearbyintf in the default rounding mode), so the same codes.
FRUGAL_AVX512 void quantizeRow512(const float* x, long k, int16_t* q, float* d) {
  const __m512 sign = _mm512_set1_ps(-0.f);
  for (long b = 0; b < k / QK; b++) {
    const __m512 x0 = _mm512_loadu_ps(x + b * QK), x1 = _mm512_loadu_ps(x + b * QK + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1)));
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    d[b] = halfToF32(floatToHalf(amax / 127.f));
    const __m512 s = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(x0, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(x1, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    _mm256_storeu_si256((__m256i*)(q + b * QK), _mm512_cvtepi32_epi16(q0));
    _mm256_storeu_si256((__m256i*)(q + b * QK + 16), _mm512_cvtepi32_epi16(q1));
  }
}
#endif

void quantizeRow(const float* x, long k, int16_t* q, float* d) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return quantizeRow512(x, k, q, d);
#endif
  for (long b = 0; b < k / QK; b++) {
    const float* xb = x + b * QK;
    float amax = 0.f;
    for (int i = 0; i < QK; i++) amax = std::max(amax, std::fabs(xb[i]));
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    d[b] = halfToF32(floatToHalf(amax / 127.f));
    for (int i = 0; i < QK; i++) q[b * QK + i] = (int16_t)std::nearbyintf(xb[i] * id);  // ties to even
  }
}

inline uint16_t scaleBits(const uint8_t* blk) { return (uint16_t)(blk[0] | (blk[1] << 8)); }

void rowsPortable(const int16_t* q, const float* d, const uint8_t* w, float* y, long j0, long j1, long k) {
  const long nb = k / QK;
  for (long j = j0; j < j1; j++) {
    const uint8_t* row = w + j * nb * QB;
    float acc = 0.f;
    for (long b = 0; b < nb; b++) {
      const uint8_t* blk = row + b * QB;
      const int8_t* qs = (const int8_t*)(blk + 2);
      int32_t s = 0;
      for (int i = 0; i < QK; i++) s += (int32_t)qs[i] * q[b * QK + i];
      acc += halfToF32(scaleBits(blk)) * d[b] * (float)s;
    }
    y[j] = acc;
  }
}

#if FRUGAL_HAVE_X86_KERNELS
// Per block: 32 int8 weights sign-extended to int16, pairwise products summed to 16 int32 lanes
// (vpmaddwd, exact), converted and scaled into 16 f32 lanes. Two rows per pass share x's loads.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c")))
void rows512(const int16_t* q, const float* d, const uint8_t* w, float* y, long j0, long j1, long k) {
  const long nb = k / QK;
  long j = j0;
  for (; j + 2 <= j1; j += 2) {
    const uint8_t* r0 = w + j * nb * QB;
    const uint8_t* r1 = r0 + nb * QB;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (long b = 0; b < nb; b++) {
      _mm_prefetch((const char*)(r0 + 2 * nb * QB + b * QB), _MM_HINT_T0);
      _mm_prefetch((const char*)(r1 + 2 * nb * QB + b * QB), _MM_HINT_T0);
      const __m512i xq = _mm512_loadu_si512((const void*)(q + b * QK));
      const __m512i p0 = _mm512_madd_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(r0 + b * QB + 2))), xq);
      const __m512i p1 = _mm512_madd_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(r1 + b * QB + 2))), xq);
      const float s0 = _cvtsh_ss(scaleBits(r0 + b * QB)) * d[b], s1 = _cvtsh_ss(scaleBits(r1 + b * QB)) * d[b];
      a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_set1_ps(s0), a0);
      a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_set1_ps(s1), a1);
    }
    y[j] = _mm512_reduce_add_ps(a0);
    y[j + 1] = _mm512_reduce_add_ps(a1);
  }
  if (j < j1) rowsPortable(q, d, w, y, j, j1, k);
}

__attribute__((target("avx2,fma,f16c")))
void rows256(const int16_t* q, const float* d, const uint8_t* w, float* y, long j0, long j1, long k) {
  const long nb = k / QK;
  for (long j = j0; j < j1; j++) {
    const uint8_t* r = w + j * nb * QB;
    __m256 acc = _mm256_setzero_ps();
    for (long b = 0; b < nb; b++) {
      const uint8_t* blk = r + b * QB + 2;
      const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)blk)), _mm256_loadu_si256((const __m256i*)(q + b * QK)));
      const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(blk + 16))), _mm256_loadu_si256((const __m256i*)(q + b * QK + 16)));
      const float s = _cvtsh_ss(scaleBits(r + b * QB)) * d[b];
      acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(lo, hi)), _mm256_set1_ps(s), acc);
    }
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    v = _mm_add_ss(v, _mm_movehdup_ps(v));
    y[j] = _mm_cvtss_f32(v);
  }
}
#endif

}  // namespace

namespace dec {
// The decode engine's activations, quantised exactly as gemvQ8 quantises them (decode.h).
void quantizeRowsQ8(const float* x, long ldx, long R, long k, int16_t* q, float* d) {
  for (long i = 0; i < R; i++) quantizeRow(x + i * ldx, k, q + i * k, d + i * (k / QK));
}
}  // namespace dec

const char* q8Family() {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return "avx512bw";
  if (cpu().isa == Isa::Avx2) return "avx2";
#endif
  return "portable";
}

void gemvQ8(const float* x, const uint8_t* w, float* y, long m, long n, long k) {
  auto rows = rowsPortable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) rows = rows512;
  else if (cpu().isa == Isa::Avx2) rows = rows256;
#endif
  // x quantised once per call (m rows), in the caller's scratch; weight rows split over the pool.
  int16_t* q = (int16_t*)threadScratch(0, sizeof(int16_t) * (size_t)(m * k) + 64);
  float* d = (float*)threadScratch(1, sizeof(float) * (size_t)(m * (k / QK)) + 64);
  for (long i = 0; i < m; i++) quantizeRow(x + i * k, k, q + i * k, d + i * (k / QK));
  const long units = (n + 63) / 64;
  const long pieces = n * k < (1L << 17) || poolThreads() <= 1 ? 1 : std::min<long>(units, 4L * poolThreads());
  auto piece = [&](long pc, int) {
    const long j0 = std::min(n, units * pc / pieces * 64), j1 = std::min(n, units * (pc + 1) / pieces * 64);
    for (long i = 0; i < m; i++) rows(q + i * k, d + i * (k / QK), w, y + i * n, j0, j1, k);
  };
  if (pieces <= 1) { piece(0, 0); return; }
  poolRunChunks(pieces, piece);
}

}  // namespace frugal
