// Whole-array kernels of the optimizer and the tape: the AdamW update (in place over parameter,
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
