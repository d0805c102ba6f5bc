// Whole-array kernels of the optimizer and the tape, and the BF16-weight matrix-vector product of
// decoding (at the end). The first group: the AdamW update (in place over parameter,
// first and second moments), a sum of squares (gradient norm, in double) and dst += src (gradient
// accumulation). All are memory-bound, so they are plain loops the compiler vectorises, compiled
// once per ISA family with target attributes, and split over the pool for large arrays.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace {

template <class F>
static void splitRange(long n, F fn) {
  const int T = n < (1L << 18) ? 1 : std::min<int>(poolThreads(), (int)std::max<long>(1, n >> 16));
  if (T <= 1) { fn(0, 0L, n); return; }
  // Pieces stay multiples of 64 elements so vector loops see aligned-size blocks.
  const long P = 2L * T;
  poolRunChunks(P, [&](long pc, int t) {
    const long a = (n * pc / P) & ~63L, b = pc == P - 1 ? n : (n * (pc + 1) / P) & ~63L;
    fn(t, a, b);
  });
}

#define ADAMW_BODY                                                           \
  for (long j = i0; j < i1; j++) {                                          \
    const float gj = g[j];                                                  \
    const float mj = h.beta1 * m[j] + h.oneMinusBeta1 * gj;                 \
    const float vj = h.beta2 * v[j] + h.oneMinusBeta2 * gj * gj;            \
    m[j] = mj;                                                              \
    v[j] = vj;                                                              \
    w[j] = w[j] * h.decay - h.stepSize * mj / (std::sqrt(vj) * h.invBc2Sqrt + h.eps); \
  }

static void adamwRange(float* w, const float* g, float* m, float* v, const AdamWHyper& h, long i0, long i1) { ADAMW_BODY }
#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void adamwRange512(float* w, const float* g, float* m, float* v, const AdamWHyper& h, long i0, long i1) { ADAMW_BODY }
FRUGAL_AVX2 static void adamwRange256(float* w, const float* g, float* m, float* v, const AdamWHyper& h, long i0, long i1) { ADAMW_BODY }
#endif

static double sumSqRange(const float* x, long i0, long i1) {
  // Blocks of 1024 in float lanes, accumulated in double: vectorised and still accurate.
  double total = 0;
  for (long b = i0; b < i1; b += 1024) {
    const long e = std::min(i1, b + 1024);
    float s = 0.f;
    for (long j = b; j < e; j++) s += x[j] * x[j];
    total += s;
  }
  return total;
}
#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static double sumSqRange512(const float* x, long i0, long i1) {
  double total = 0;
  for (long b = i0; b < i1; b += 1024) {
    const long e = std::min(i1, b + 1024);
    float s = 0.f;
#pragma GCC ivdep
    for (long j = b; j < e; j++) s += x[j] * x[j];
    total += s;
  }
  return total;
}
#endif

static void addRange(float* d, const float* s, long i0, long i1) { for (long j = i0; j < i1; j++) d[j] += s[j]; }
#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void addRange512(float* d, const float* s, long i0, long i1) { for (long j = i0; j < i1; j++) d[j] += s[j]; }
#endif

}  // namespace

void adamw(float* w, const float* g, float* m, float* v, long n, const AdamWHyper& h) {
  splitRange(n, [&](int, long i0, long i1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return adamwRange512(w, g, m, v, h, i0, i1);
    if (cpu().isa == Isa::Avx2) return adamwRange256(w, g, m, v, h, i0, i1);
#endif
    adamwRange(w, g, m, v, h, i0, i1);
  });
}

double sumSquares(const float* x, long n) {
  std::vector<double> part((size_t)std::max(1, poolThreads()), 0.0);
  splitRange(n, [&](int t, long i0, long i1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) { part[(size_t)t] += sumSqRange512(x, i0, i1); return; }
#endif
    part[(size_t)t] += sumSqRange(x, i0, i1);
  });
  double s = 0;
  for (double p : part) s += p;
  return s;
}

namespace {
static void rowsAxpyPortable(float* dst, const int32_t* dr, const float* src, const int32_t* sr, const float* sc, long count, long D) {
  for (long i = 0; i < count; i++) {
    float* d = dst + (dr ? dr[i] : i) * D;
    const float* s = src + (sr ? sr[i] : i) * D;
    const float a = sc ? sc[i] : 1.f;
    for (long j = 0; j < D; j++) d[j] += a * s[j];
  }
}
#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void rowsAxpy512(float* dst, const int32_t* dr, const float* src, const int32_t* sr, const float* sc, long count, long D) {
  for (long i = 0; i < count; i++) {
    float* d = dst + (dr ? dr[i] : i) * D;
    const float* s = src + (sr ? sr[i] : i) * D;
    const __m512 a = _mm512_set1_ps(sc ? sc[i] : 1.f);
    long j = 0;
    for (; j + 16 <= D; j += 16) _mm512_storeu_ps(d + j, _mm512_fmadd_ps(a, _mm512_loadu_ps(s + j), _mm512_loadu_ps(d + j)));
    if (j < D) {
      const __mmask16 mk = (__mmask16)((1u << (D - j)) - 1);
      _mm512_mask_storeu_ps(d + j, mk, _mm512_fmadd_ps(a, _mm512_maskz_loadu_ps(mk, s + j), _mm512_maskz_loadu_ps(mk, d + j)));
    }
  }
}
#endif
}  // namespace

void rowsAxpy(float* dst, const int32_t* dr, const float* src, const int32_t* sr, const float* sc, long count, long D) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return rowsAxpy512(dst, dr, src, sr, sc, count, D);
#endif
  rowsAxpyPortable(dst, dr, src, sr, sc, count, D);
}

void addInto(float* dst, const float* src, long n) {
  splitRange(n, [&](int, long i0, long i1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return addRange512(dst, src, i0, i1);
#endif
    addRange(dst, src, i0, i1);
  });
}

}  // namespace frugal

// ---- BF16-weight matrix-vector products (decode with bf16 weights) ----
namespace frugal {
namespace {

static inline float bf16ToF32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static void gemvBf16RowsPortable(const float* x, const uint16_t* w, float* y, long j0, long j1, long k) {
  for (long j = j0; j < j1; j++) {
    const uint16_t* wr = w + j * k;
    float s = 0.f;
    for (long d = 0; d < k; d++) s += bf16ToF32(wr[d]) * x[d];
    y[j] = s;
  }
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static inline __m512 widen16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// Two weight rows per pass (two independent streams keep more loads in flight).
FRUGAL_AVX512 static void gemvBf16Rows512(const float* x, const uint16_t* w, float* y, long j0, long j1, long k) {
  long j = j0;
  for (; j + 2 <= j1; j += 2) {
    const uint16_t* r0 = w + j * k;
    const uint16_t* r1 = r0 + k;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    long d = 0;
    for (; d + 32 <= k; d += 32) {
      const __m512 x0 = _mm512_loadu_ps(x + d), x1 = _mm512_loadu_ps(x + d + 16);
      a0 = _mm512_fmadd_ps(widen16(_mm256_loadu_si256((const __m256i*)(r0 + d))), x0, a0);
      a1 = _mm512_fmadd_ps(widen16(_mm256_loadu_si256((const __m256i*)(r0 + d + 16))), x1, a1);
      b0 = _mm512_fmadd_ps(widen16(_mm256_loadu_si256((const __m256i*)(r1 + d))), x0, b0);
      b1 = _mm512_fmadd_ps(widen16(_mm256_loadu_si256((const __m256i*)(r1 + d + 16))), x1, b1);
    }
    for (; d < k; d += 16) {
      const __mmask16 mk = k - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - d)) - 1);
      const __m512 xv = _mm512_maskz_loadu_ps(mk, x + d);
      a0 = _mm512_fmadd_ps(widen16(_mm256_maskz_loadu_epi16(mk, r0 + d)), xv, a0);
      b0 = _mm512_fmadd_ps(widen16(_mm256_maskz_loadu_epi16(mk, r1 + d)), xv, b0);
    }
    y[j] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    y[j + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
  }
  if (j < j1) {
    const uint16_t* r0 = w + j * k;
    __m512 a0 = _mm512_setzero_ps();
    for (long d = 0; d < k; d += 16) {
      const __mmask16 mk = k - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - d)) - 1);
      a0 = _mm512_fmadd_ps(widen16(_mm256_maskz_loadu_epi16(mk, r0 + d)), _mm512_maskz_loadu_ps(mk, x + d), a0);
    }
    y[j] = _mm512_reduce_add_ps(a0);
  }
}
#endif

}  // namespace

void gemvBf16(const float* x, const uint16_t* w, float* y, long m, long n, long k) {
  auto rows = gemvBf16RowsPortable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) rows = gemvBf16Rows512;
#endif
  // Same policy as the f32 matrix-vector product: past ~128K weights, pieces over the pool.
  const long units = (n + 63) / 64;
  const long pieces = n * k < (1L << 17) || poolThreads() <= 1 ? 1 : std::min<long>(units, 4L * poolThreads());
  auto piece = [&](long pc, int) {
    const long j0 = std::min(n, units * pc / pieces * 64), j1 = std::min(n, units * (pc + 1) / pieces * 64);
    for (long i = 0; i < m; i++) rows(x + i * k, w, y + i * n, j0, j1, k);
  };
  if (pieces <= 1) { piece(0, 0); return; }
  poolRunChunks(pieces, piece);
}

}  // namespace frugal
