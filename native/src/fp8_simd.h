// E4M3 encode/decode shared by the FP8 quantisers and the FP8 GEMM: a scalar form (every CPU)
// and AVX-512 forms (16 floats -> 16 codes; 32 codes -> 32 BF16 words; 16 codes -> 16 floats).
// Encoding is src/fp8/codec.ts encodeInto for e4m3 with saturation, bit for bit: round to
// nearest even (subnormals too), overflow and +-inf -> +-448 (0x7E|sign), NaN -> 0x7F.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace fp8 {

constexpr uint32_t kMinNormalBits = 0x3C800000u;  // 2^-6, smallest E4M3 normal, as f32 bits
constexpr float kMax = 448.f;

inline uint8_t encodeE4M3(float y) {
  uint32_t u;
  std::memcpy(&u, &y, 4);
  const uint32_t a = u & 0x7fffffffu, sign = (u >> 24) & 0x80u;
  uint32_t code;
  if (a >= kMinNormalBits) {
    if (a > 0x7f800000u) return 0x7F;
    code = ((a + 0x7FFFFu + ((a >> 20) & 1u)) >> 20) - 960u;  // round the mantissa to 3 bits, rebias 127 -> 7
    if (code > 0x7E) code = 0x7E;
  } else {
    code = (uint32_t)std::nearbyint(std::fabs(y) * 512.f);  // subnormal: m * 2^-9, ties to even
  }
  return (uint8_t)(sign | code);
}

inline float decodeE4M3(uint8_t c) {
  const int e = (c >> 3) & 15, m = c & 7;
  const float v = (e == 15 && m == 7) ? NAN : e == 0 ? std::ldexp((float)m, -9) : std::ldexp(8.f + m, e - 10);
  return (c & 0x80) ? -v : v;
}

#if FRUGAL_HAVE_X86_KERNELS
// 16 floats (already divided by the scale) -> 16 E4M3 codes.
FRUGAL_AVX512 static inline __m128i enc16(__m512 y) {
  const __m512i u = _mm512_castps_si512(y);
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(u, 24), _mm512_set1_epi32(0x80));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
  __m512i cn = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0x7FFFF)), odd), 20);
  cn = _mm512_min_epi32(_mm512_sub_epi32(cn, _mm512_set1_epi32(960)), _mm512_set1_epi32(0x7E));
  const __mmask16 sub = _mm512_cmplt_epu32_mask(a, _mm512_set1_epi32((int)kMinNormalBits));
  const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(512.f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512i code = _mm512_mask_mov_epi32(cn, sub, _mm512_cvttps_epi32(r));
  code = _mm512_or_si512(code, sign);
  code = _mm512_mask_mov_epi32(code, _mm512_cmpgt_epu32_mask(a, _mm512_set1_epi32(0x7f800000)), _mm512_set1_epi32(0x7F));
  return _mm512_cvtepi32_epi8(code);
}

// 32 E4M3 codes (zero-extended to words) -> 32 BF16 words, exact: normals are a shift and a
// rebias, the 7 subnormals come from a table, 0x7F/0xFF give a quiet NaN.
FRUGAL_AVX512 static inline __m512i decWordsBf16(__m512i w) {
  const __m512i subTab = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                          0x3C60, 0x3C40, 0x3C20, 0x3C00, 0x3BC0, 0x3B80, 0x3B00, 0);
  const __m512i mag = _mm512_and_si512(w, _mm512_set1_epi16(0x7f));
  const __m512i sign = _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x80)), 8);
  __m512i r = _mm512_add_epi16(_mm512_slli_epi16(mag, 4), _mm512_set1_epi16(0x3C00));
  r = _mm512_mask_mov_epi16(r, _mm512_cmplt_epu16_mask(mag, _mm512_set1_epi16(8)), _mm512_permutexvar_epi16(mag, subTab));
  r = _mm512_mask_mov_epi16(r, _mm512_cmpeq_epi16_mask(mag, _mm512_set1_epi16(0x7f)), _mm512_set1_epi16(0x7FC0));
  return _mm512_or_si512(r, sign);
}
FRUGAL_AVX512 static inline __m512i dec32Bf16(__m256i codes) { return decWordsBf16(_mm512_cvtepu8_epi16(codes)); }

// 16 E4M3 codes -> 16 floats (exact).
FRUGAL_AVX512 static inline __m512 dec16F32(__m128i codes) {
  const __m512i c = _mm512_cvtepu8_epi32(codes);
  const __m512i subTab = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0x3C600000, 0x3C400000, 0x3C200000, 0x3C000000, 0x3BC00000, 0x3B800000, 0x3B000000, 0);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7f));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
  __m512i r = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
  r = _mm512_mask_mov_epi32(r, _mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(8)), _mm512_permutexvar_epi32(mag, subTab));
  r = _mm512_mask_mov_epi32(r, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)), _mm512_set1_epi32(0x7FC00000));
  return _mm512_castsi512_ps(_mm512_or_si512(r, sign));
}

// Stores/loads that take the plain instruction for a full mask: masked stores are slow on some
// cores (AMD Zen 4), and most calls are full.
FRUGAL_AVX512 static inline void store16B(uint8_t* p, __mmask16 mk, __m128i v) {
  if (mk == (__mmask16)0xFFFF) _mm_storeu_si128((__m128i*)p, v); else _mm_mask_storeu_epi8(p, mk, v);
}
FRUGAL_AVX512 static inline __m512 load16F(const float* p, __mmask16 mk) {
  return mk == (__mmask16)0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mk, p);
}
FRUGAL_AVX512 static inline __mmask16 tail16(long n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }
FRUGAL_AVX512 static inline __mmask32 tail32(long n) { return n >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << n) - 1); }
FRUGAL_AVX512 static inline __mmask64 tail64(long n) { return n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1); }
#endif

}  // namespace fp8
}  // namespace frugal
