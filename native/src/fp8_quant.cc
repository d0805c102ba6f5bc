// FP8 (E4M3) quantisers of the DeepSeek-V3 training recipe, bit-exact with src/fp8/quant.ts:
// 1x128 row tiles (activations), 128x1 column tiles in place (the along-token tiles of Wgrad,
// no transpose), re-tiling of FP8 rows to column tiles (the cached activation of Wgrad), and
// 128x128 weight blocks with an optional transposed copy of the codes (for the forward GEMM).
// amax over the tile (NaN propagates), s = fp32(max(amax, 1e-4) / 448) (ue8m0: power of two at
// or above), code = e4m3(fp32(x / s)) with IEEE division (never a reciprocal). AVX-512 where the
// f32 family is avx512, else portable C++ with the same results.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fp8.h"
#include "fp8_simd.h"

namespace frugal {

float fp8ScaleOf(float amax, bool sawNan, bool ue8m0) {
  if (sawNan) return ue8m0 ? INFINITY : NAN;
  const float s = (float)(std::max((double)amax, 1e-4) / 448.0);
  if (!ue8m0) return s;
  if (!(s < INFINITY)) return INFINITY;
  uint32_t u;
  std::memcpy(&u, &s, 4);
  if ((u & 0x7fffffu) == 0) return s;
  u = ((u >> 23) + 1) << 23;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

namespace {

constexpr long T = 128;  // tile / block edge

inline bool vectorOk() {
#if FRUGAL_HAVE_X86_KERNELS
  return cpu().isa == Isa::Avx512;
#else
  return false;
#endif
}

// Runs fn(i) for i < count, over the pool when the work (elements) is large enough.
template <class F>
void forEach(long count, long elements, F fn) {
  if (count <= 1 || elements < (1L << 16) || poolThreads() <= 1) { for (long i = 0; i < count; i++) fn(i); return; }
  poolRunChunks(count, [&](long i, int) { fn(i); });
}

// ---- portable ----
void rowsPortable(const float* x, long r, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  const long CB = (cols + T - 1) / T;
  for (long t = 0; t < CB; t++) {
    const long c0 = t * T, c1 = std::min(cols, c0 + T);
    const float* p = x + r * cols;
    float amax = 0;
    bool nan = false;
    for (long c = c0; c < c1; c++) { const float a = std::fabs(p[c]); if (a != a) nan = true; else if (a > amax) amax = a; }
    const float s = fp8ScaleOf(amax, nan, ue8m0);
    scales[r * CB + t] = s;
    for (long c = c0; c < c1; c++) codes[r * cols + c] = fp8::encodeE4M3(p[c] / s);
  }
}

// Column tiles of rows [r0, r1) (block rb), columns [c0, c1); v(r, c) gives the value.
template <class V>
void colsPortable(V v, long r0, long r1, long rb, long c0, long c1, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  for (long c = c0; c < c1; c++) {
    float amax = 0; bool nan = false;
    for (long r = r0; r < r1; r++) { const float a = std::fabs(v(r, c)); if (a != a) nan = true; else if (a > amax) amax = a; }
    const float s = fp8ScaleOf(amax, nan, ue8m0);
    scales[rb * cols + c] = s;
    for (long r = r0; r < r1; r++) codes[r * cols + c] = fp8::encodeE4M3(v(r, c) / s);
  }
}

void weightBlockPortable(const float* w, long rows, long cols, long rb, long cb, uint8_t* codes, float* scales, bool ue8m0) {
  const long r0 = rb * T, r1 = std::min(rows, r0 + T), c0 = cb * T, c1 = std::min(cols, c0 + T);
  float amax = 0;
  bool nan = false;
  for (long r = r0; r < r1; r++)
    for (long c = c0; c < c1; c++) { const float a = std::fabs(w[r * cols + c]); if (a != a) nan = true; else if (a > amax) amax = a; }
  const float s = fp8ScaleOf(amax, nan, ue8m0);
  scales[rb * ((cols + T - 1) / T) + cb] = s;
  for (long r = r0; r < r1; r++)
    for (long c = c0; c < c1; c++) codes[r * cols + c] = fp8::encodeE4M3(w[r * cols + c] / s);
}

#if FRUGAL_HAVE_X86_KERNELS
using namespace fp8;

FRUGAL_AVX512 static float hmax(__m512 m) { return _mm512_reduce_max_ps(m); }

FRUGAL_AVX512 void rows512(const float* x, long r, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  const long CB = (cols + T - 1) / T;
  const float* p = x + r * cols;
  uint8_t* o = codes + r * cols;
  for (long t = 0; t < CB; t++) {
    const long c0 = t * T, n = std::min(cols, c0 + T) - c0;
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (long j = 0; j < n; j += 16) {
      const __mmask16 mk = tail16(n - j);
      const __m512 v = load16F(p + c0 + j, mk);
      m = _mm512_max_ps(m, _mm512_abs_ps(v));
      nan |= _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
    }
    const float s = fp8ScaleOf(hmax(m), nan != 0, ue8m0);
    scales[r * CB + t] = s;
    const __m512 sv = _mm512_set1_ps(s);
    for (long j = 0; j < n; j += 16) {
      const __mmask16 mk = tail16(n - j);
      const __m512 v = load16F(p + c0 + j, mk);
      store16B(o + c0 + j, mk, enc16(_mm512_div_ps(v, sv)));
    }
  }
}

// Column tiles over rows [r0, r1) for 16 columns from c0; load(r) gives the 16 values of row r.
template <class L>
FRUGAL_AVX512 static inline void colStrip512(L load, long r0, long r1, long rb, long c0, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  const __mmask16 mk = tail16(cols - c0);
  __m512 m = _mm512_setzero_ps();
  __mmask16 nan = 0;
  for (long r = r0; r < r1; r++) {
    const __m512 v = load(r, mk);
    m = _mm512_max_ps(m, _mm512_abs_ps(v));
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  alignas(64) float am[16], s[16];
  _mm512_store_ps(am, m);
  for (int l = 0; l < 16; l++) s[l] = (mk >> l) & 1 ? fp8ScaleOf(am[l], (nan >> l) & 1, ue8m0) : 1.f;
  _mm512_mask_storeu_ps(scales + rb * cols + c0, mk, _mm512_load_ps(s));
  const __m512 sv = _mm512_load_ps(s);
  for (long r = r0; r < r1; r++) store16B(codes + r * cols + c0, mk, enc16(_mm512_div_ps(load(r, mk), sv)));
}

FRUGAL_AVX512 void colsF32_512(const float* x, long r0, long r1, long rb, long c0, long c1, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  for (long c = c0; c < c1; c += 16)
    colStrip512([&](long r, __mmask16 mk) FRUGAL_AVX512 { return load16F(x + r * cols + c, mk); }, r0, r1, rb, c, cols, codes, scales, ue8m0);
}

FRUGAL_AVX512 void requant512(const uint8_t* in, const float* rs, long r0, long r1, long rb, long c0, long c1, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  const long CB = (cols + T - 1) / T;
  for (long c = c0; c < c1; c += 16) {
    const long tile = c / T;  // 16 | 128: a strip lies in one row tile
    colStrip512([&](long r, __mmask16 mk) FRUGAL_AVX512 {
      return _mm512_mul_ps(dec16F32(_mm_maskz_loadu_epi8(mk, in + r * cols + c)), _mm512_set1_ps(rs[r * CB + tile]));
    }, r0, r1, rb, c, cols, codes, scales, ue8m0);
  }
}

FRUGAL_AVX512 void weightBlock512(const float* w, long rows, long cols, long rb, long cb, uint8_t* codes, float* scales, bool ue8m0) {
  const long r0 = rb * T, r1 = std::min(rows, r0 + T), c0 = cb * T, n = std::min(cols, c0 + T) - c0;
  __m512 m = _mm512_setzero_ps();
  __mmask16 nan = 0;
  for (long r = r0; r < r1; r++)
    for (long j = 0; j < n; j += 16) {
      const __mmask16 mk = tail16(n - j);
      const __m512 v = load16F(w + r * cols + c0 + j, mk);
      m = _mm512_max_ps(m, _mm512_abs_ps(v));
      nan |= _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
    }
  const float s = fp8ScaleOf(hmax(m), nan != 0, ue8m0);
  scales[rb * ((cols + T - 1) / T) + cb] = s;
  const __m512 sv = _mm512_set1_ps(s);
  for (long r = r0; r < r1; r++)
    for (long j = 0; j < n; j += 16) {
      const __mmask16 mk = tail16(n - j);
      store16B(codes + r * cols + c0 + j, mk, enc16(_mm512_div_ps(load16F(w + r * cols + c0 + j, mk), sv)));
    }
}

// 16x16 byte transpose: rows src[i*ls .. +16] -> dst[j*ld + i].
FRUGAL_AVX512 static inline void transpose16x16(const uint8_t* src, long ls, uint8_t* dst, long ld) {
  __m128i r[16];
  for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i*)(src + i * ls));
  __m128i t[16];
  for (int i = 0; i < 8; i++) { t[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]); t[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]); }
  for (int i = 0; i < 4; i++)
    for (int h = 0; h < 2; h++) { r[4 * i + 2 * h] = _mm_unpacklo_epi16(t[4 * i + h], t[4 * i + 2 + h]); r[4 * i + 2 * h + 1] = _mm_unpackhi_epi16(t[4 * i + h], t[4 * i + 2 + h]); }
  for (int i = 0; i < 2; i++)
    for (int h = 0; h < 4; h++) { t[8 * i + 2 * h] = _mm_unpacklo_epi32(r[8 * i + h], r[8 * i + 4 + h]); t[8 * i + 2 * h + 1] = _mm_unpackhi_epi32(r[8 * i + h], r[8 * i + 4 + h]); }
  for (int h = 0; h < 8; h++) { r[2 * h] = _mm_unpacklo_epi64(t[h], t[8 + h]); r[2 * h + 1] = _mm_unpackhi_epi64(t[h], t[8 + h]); }
  for (int j = 0; j < 16; j++) _mm_storeu_si128((__m128i*)(dst + j * ld), r[j]);
}
#endif

// Transposes the codes of one 128x128 block into codesT [cols, rows].
void transposeBlock(const uint8_t* codes, long rows, long cols, long rb, long cb, uint8_t* codesT, bool vec) {
  const long r0 = rb * T, r1 = std::min(rows, r0 + T), c0 = cb * T, c1 = std::min(cols, c0 + T);
  long rf = r0, cf = c0;  // [r0, rf) x [c0, cf) goes through 16x16 register transposes
#if FRUGAL_HAVE_X86_KERNELS
  if (vec) {
    rf = r0 + (r1 - r0) / 16 * 16;
    cf = c0 + (c1 - c0) / 16 * 16;
    for (long r = r0; r < rf; r += 16)
      for (long c = c0; c < cf; c += 16) transpose16x16(codes + r * cols + c, cols, codesT + c * rows + r, rows);
  }
#else
  (void)vec;
#endif
  for (long r = r0; r < rf; r++)
    for (long c = cf; c < c1; c++) codesT[c * rows + r] = codes[r * cols + c];
  for (long r = rf; r < r1; r++)
    for (long c = c0; c < c1; c++) codesT[c * rows + r] = codes[r * cols + c];
}

}  // namespace

void fp8QuantizeRows(const float* x, long rows, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  if (rows <= 0 || cols <= 0) return;
  const long per = std::max(1L, (1L << 15) / cols);  // rows per chunk: ~32K values
  const bool vec = vectorOk();
  forEach((rows + per - 1) / per, rows * cols, [&](long i) {
    for (long r = i * per, e = std::min(rows, r + per); r < e; r++) {
#if FRUGAL_HAVE_X86_KERNELS
      if (vec) { rows512(x, r, cols, codes, scales, ue8m0); continue; }
#endif
      rowsPortable(x, r, cols, codes, scales, ue8m0);
    }
  });
  (void)vec;
}

// Units: (128-row block) x (column group of 256).
template <class VecFn, class PortFn>
static void colUnits(long rows, long cols, VecFn vecFn, PortFn portFn) {
  const long RB = (rows + T - 1) / T, G = 256, CG = (cols + G - 1) / G;
  const bool vec = vectorOk();
  forEach(RB * CG, rows * cols, [&](long u) {
    const long rb = u / CG, cg = u % CG;
    const long r0 = rb * T, r1 = std::min(rows, r0 + T), c0 = cg * G, c1 = std::min(cols, c0 + G);
    if (vec) vecFn(r0, r1, rb, c0, c1);
    else portFn(r0, r1, rb, c0, c1);
  });
}

void fp8QuantizeCols(const float* x, long rows, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  if (rows <= 0 || cols <= 0) return;
  colUnits(rows, cols,
    [&](long r0, long r1, long rb, long c0, long c1) {
#if FRUGAL_HAVE_X86_KERNELS
      colsF32_512(x, r0, r1, rb, c0, c1, cols, codes, scales, ue8m0);
#else
      (void)r0; (void)r1; (void)rb; (void)c0; (void)c1;
#endif
    },
    [&](long r0, long r1, long rb, long c0, long c1) {
      colsPortable([&](long r, long c) { return x[r * cols + c]; }, r0, r1, rb, c0, c1, cols, codes, scales, ue8m0);
    });
}

void fp8RequantizeCols(const uint8_t* in, const float* rs, long rows, long cols, uint8_t* codes, float* scales, bool ue8m0) {
  if (rows <= 0 || cols <= 0) return;
  const long CB = (cols + T - 1) / T;
  colUnits(rows, cols,
    [&](long r0, long r1, long rb, long c0, long c1) {
#if FRUGAL_HAVE_X86_KERNELS
      requant512(in, rs, r0, r1, rb, c0, c1, cols, codes, scales, ue8m0);
#else
      (void)r0; (void)r1; (void)rb; (void)c0; (void)c1;
#endif
    },
    [&](long r0, long r1, long rb, long c0, long c1) {
      colsPortable([&](long r, long c) { return fp8::decodeE4M3(in[r * cols + c]) * rs[r * CB + c / T]; }, r0, r1, rb, c0, c1, cols, codes, scales, ue8m0);
    });
}

void fp8QuantizeWeight(const float* w, long rows, long cols, uint8_t* codes, float* scales, uint8_t* codesT, bool ue8m0) {
  if (rows <= 0 || cols <= 0) return;
  const long RB = (rows + T - 1) / T, CB = (cols + T - 1) / T;
  const bool vec = vectorOk();
  forEach(RB * CB, rows * cols, [&](long u) {
    const long rb = u / CB, cb = u % CB;
#if FRUGAL_HAVE_X86_KERNELS
    if (vec) weightBlock512(w, rows, cols, rb, cb, codes, scales, ue8m0);
    else
#endif
      weightBlockPortable(w, rows, cols, rb, cb, codes, scales, ue8m0);
    if (codesT) transposeBlock(codes, rows, cols, rb, cb, codesT, vec);
  });
}

}  // namespace frugal
