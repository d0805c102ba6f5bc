// Matrix-vector products and products of a few rows (decode: one token per row), f32 and
// bf16-weight. They stream the matrix once per call (memory bound) instead of packing it as the
// GEMM does, so a verify step of 2 rows reads each weight once, not twice.
//
// Contract: row i of a product of m rows is bit-identical to the same row computed alone (m = 1):
// the multi-row kernels load each matrix chunk once and feed it to every row, but each row's
// products are summed in exactly the single-row kernel's order. Speculative decoding relies on
// this: a 2-row verify step gives the logits plain decoding gives, so greedy outputs agree exactly.
// The split over threads is by output column in pieces of 64, which never changes a sum's order.
#include <algorithm>
#include <cstring>

#include "common.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace {

/** Rows of x (row stride ldx) times the matrix, into rows of y (row stride ldy), outputs [j0, j1). */
using RowsFn = void (*)(const float* x, long ldx, long rows, const float* M, long ld, float* y, long ldy, long j0, long j1, long k, bool acc);

#if FRUGAL_HAVE_X86_KERNELS
// y_i[j] (+)= sum_p x_i[p] * M[p*ld + j] for R rows (streams rows of M; each 8 rows of M loaded once).
template <int R>
FRUGAL_AVX512 static void streamRows512(const float* x, long ldx, const float* M, long ld, float* y, long ldy, long j0, long j1, long k, bool acc) {
  for (long jb = j0; jb < j1; jb += 1024) {
    const long je = std::min(j1, jb + 1024);
    if (!acc)
      for (int i = 0; i < R; i++) std::fill(y + i * ldy + jb, y + i * ldy + je, 0.f);
    long p = 0;
    for (; p + 8 <= k; p += 8) {
      const float* r = M + p * ld;
      for (long j = jb; j < je; j += 16) {
        const __mmask16 mk = je - j >= 16 ? 0xFFFF : (__mmask16)((1u << (je - j)) - 1);
        __m512 w[8];
        for (int t = 0; t < 8; t++) w[t] = _mm512_maskz_loadu_ps(mk, r + t * ld + j);
        for (int i = 0; i < R; i++) {
          const float* xi = x + i * ldx + p;
          float* yi = y + i * ldy + j;
          __m512 s0 = _mm512_maskz_loadu_ps(mk, yi), s1 = _mm512_setzero_ps();
          s0 = _mm512_fmadd_ps(_mm512_set1_ps(xi[0]), w[0], s0);
          s1 = _mm512_fmadd_ps(_mm512_set1_ps(xi[1]), w[1], s1);
          s0 = _mm512_fmadd_ps(_mm512_set1_ps(xi[2]), w[2], s0);
          s1 = _mm512_fmadd_ps(_mm512_set1_ps(xi[3]), w[3], s1);
          s0 = _mm512_fmadd_ps(_mm512_set1_ps(xi[4]), w[4], s0);
          s1 = _mm512_fmadd_ps(_mm512_set1_ps(xi[5]), w[5], s1);
          s0 = _mm512_fmadd_ps(_mm512_set1_ps(xi[6]), w[6], s0);
          s1 = _mm512_fmadd_ps(_mm512_set1_ps(xi[7]), w[7], s1);
          _mm512_mask_storeu_ps(yi, mk, _mm512_add_ps(s0, s1));
        }
      }
    }
    for (; p + 4 <= k; p += 4) {
      const float* r = M + p * ld;
      for (long j = jb; j < je; j += 16) {
        const __mmask16 mk = je - j >= 16 ? 0xFFFF : (__mmask16)((1u << (je - j)) - 1);
        const __m512 w0 = _mm512_maskz_loadu_ps(mk, r + j), w1 = _mm512_maskz_loadu_ps(mk, r + ld + j);
        const __m512 w2 = _mm512_maskz_loadu_ps(mk, r + 2 * ld + j), w3 = _mm512_maskz_loadu_ps(mk, r + 3 * ld + j);
        for (int i = 0; i < R; i++) {
          const float* xi = x + i * ldx + p;
          float* yi = y + i * ldy + j;
          __m512 s = _mm512_maskz_loadu_ps(mk, yi);
          s = _mm512_fmadd_ps(_mm512_set1_ps(xi[0]), w0, s);
          s = _mm512_fmadd_ps(_mm512_set1_ps(xi[1]), w1, s);
          s = _mm512_fmadd_ps(_mm512_set1_ps(xi[2]), w2, s);
          s = _mm512_fmadd_ps(_mm512_set1_ps(xi[3]), w3, s);
          _mm512_mask_storeu_ps(yi, mk, s);
        }
      }
    }
    for (; p < k; p++) {
      const float* r0 = M + p * ld;
      for (long j = jb; j < je; j += 16) {
        const __mmask16 mk = je - j >= 16 ? 0xFFFF : (__mmask16)((1u << (je - j)) - 1);
        const __m512 w0 = _mm512_maskz_loadu_ps(mk, r0 + j);
        for (int i = 0; i < R; i++) {
          float* yi = y + i * ldy + j;
          _mm512_mask_storeu_ps(yi, mk, _mm512_fmadd_ps(_mm512_set1_ps(x[i * ldx + p]), w0, _mm512_maskz_loadu_ps(mk, yi)));
        }
      }
    }
  }
}

// y_i[j] (+)= dot(x_i, M[j*ld .. +k]) for R rows: one 16-lane sum per (i, j) over p, then reduced.
// J matrix rows per pass share each x load (J = 4 for up to 2 rows: 4R sums stay in registers).
template <int R>
FRUGAL_AVX512 static void dots512(const float* x, long ldx, const float* M, long ld, float* y, long ldy, long j0, long j1, long k, bool acc) {
  constexpr int J = R <= 2 ? 4 : 2;
  long j = j0;
  for (; j + J <= j1; j += J) {
    __m512 s[J][R];
    for (int t = 0; t < J; t++)
      for (int i = 0; i < R; i++) s[t][i] = _mm512_setzero_ps();
    for (long p = 0; p < k; p += 16) {
      const __mmask16 mk = k - p >= 16 ? 0xFFFF : (__mmask16)((1u << (k - p)) - 1);
      __m512 w[J];
      for (int t = 0; t < J; t++) {
        // The same line of the next J rows (speed only; prefetches never fault past the end).
        _mm_prefetch((const char*)(M + (j + J + t) * ld + p), _MM_HINT_T0);
        w[t] = _mm512_maskz_loadu_ps(mk, M + (j + t) * ld + p);
      }
      for (int i = 0; i < R; i++) {
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * ldx + p);
        for (int t = 0; t < J; t++) s[t][i] = _mm512_fmadd_ps(xv, w[t], s[t][i]);
      }
    }
    for (int i = 0; i < R; i++)
      for (int t = 0; t < J; t++) {
        const float d = _mm512_reduce_add_ps(s[t][i]);
        float* yi = y + i * ldy + j + t;
        *yi = acc ? *yi + d : d;
      }
  }
  for (; j < j1; j++) {
    const float* r0 = M + j * ld;
    __m512 s0[R];
    for (int i = 0; i < R; i++) s0[i] = _mm512_setzero_ps();
    for (long p = 0; p < k; p += 16) {
      const __mmask16 mk = k - p >= 16 ? 0xFFFF : (__mmask16)((1u << (k - p)) - 1);
      const __m512 w0 = _mm512_maskz_loadu_ps(mk, r0 + p);
      for (int i = 0; i < R; i++) s0[i] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + i * ldx + p), w0, s0[i]);
    }
    for (int i = 0; i < R; i++) {
      const float d = _mm512_reduce_add_ps(s0[i]);
      y[i * ldy + j] = acc ? y[i * ldy + j] + d : d;
    }
  }
}

// Rows in groups of up to 4 (the register budget of the 4-row kernels).
#define FRUGAL_GROUPED(name)                                                                                              \
  static void name##Rows(const float* x, long ldx, long rows, const float* M, long ld, float* y, long ldy, long j0,      \
                         long j1, long k, bool acc) {                                                                     \
    long i = 0;                                                                                                           \
    for (; i + 4 <= rows; i += 4) name<4>(x + i * ldx, ldx, M, ld, y + i * ldy, ldy, j0, j1, k, acc);                     \
    switch (rows - i) {                                                                                                   \
      case 3: name<3>(x + i * ldx, ldx, M, ld, y + i * ldy, ldy, j0, j1, k, acc); break;                                  \
      case 2: name<2>(x + i * ldx, ldx, M, ld, y + i * ldy, ldy, j0, j1, k, acc); break;                                  \
      case 1: name<1>(x + i * ldx, ldx, M, ld, y + i * ldy, ldy, j0, j1, k, acc); break;                                  \
      default: break;                                                                                                     \
    }                                                                                                                     \
  }
FRUGAL_GROUPED(streamRows512)
FRUGAL_GROUPED(dots512)
#undef FRUGAL_GROUPED
#endif

// Portable (and AVX2-family) forms: one row at a time, plain loops.
static void streamRowsPortable(const float* x, long ldx, long rows, const float* M, long ld, float* y, long ldy, long j0, long j1, long k, bool acc) {
  for (long i = 0; i < rows; i++) {
    const float* xi = x + i * ldx;
    float* yi = y + i * ldy;
    if (!acc) std::fill(yi + j0, yi + j1, 0.f);
    for (long p = 0; p < k; p++) {
      const float xp = xi[p];
      const float* r = M + p * ld;
      for (long j = j0; j < j1; j++) yi[j] += xp * r[j];
    }
  }
}
static void dotsPortable(const float* x, long ldx, long rows, const float* M, long ld, float* y, long ldy, long j0, long j1, long k, bool acc) {
  for (long i = 0; i < rows; i++) {
    const float* xi = x + i * ldx;
    for (long j = j0; j < j1; j++) {
      const float* r = M + j * ld;
      float s[8] = {};
      long p = 0;
      for (; p + 8 <= k; p += 8)
        for (int t = 0; t < 8; t++) s[t] += xi[p + t] * r[p + t];
      float d = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
      for (; p < k; p++) d += xi[p] * r[p];
      y[i * ldy + j] = acc ? y[i * ldy + j] + d : d;
    }
  }
}

// ---- bf16 weights: y[i, j] = dot(x_i, widen(W[j])) ----
static inline float bf16ToF32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

static void bf16Portable(const float* x, long rows, const uint16_t* w, float* y, long n, long j0, long j1, long k) {
  for (long i = 0; i < rows; i++)
    for (long j = j0; j < j1; j++) {
      const uint16_t* wr = w + j * k;
      float s = 0.f;
      for (long d = 0; d < k; d++) s += bf16ToF32(wr[d]) * x[i * k + d];
      y[i * n + j] = s;
    }
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static inline __m512 widen16(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// Two weight rows per pass (two streams keep more loads in flight), each widened once for R rows
// of x; per (i, j): lanes over d in two interleaved 16-wide sums, a masked tail into the first.
template <int R>
FRUGAL_AVX512 static void bf16Rows512(const float* x, const uint16_t* w, float* y, long n, long j0, long j1, long k) {
  long j = j0;
  for (; j + 2 <= j1; j += 2) {
    const uint16_t* r0 = w + j * k;
    const uint16_t* r1 = r0 + k;
    __m512 a0[R], a1[R], b0[R], b1[R];
    for (int i = 0; i < R; i++) a0[i] = a1[i] = b0[i] = b1[i] = _mm512_setzero_ps();
    long d = 0;
    for (; d + 32 <= k; d += 32) {
      _mm_prefetch((const char*)(r0 + 2 * k + d), _MM_HINT_T0);
      _mm_prefetch((const char*)(r1 + 2 * k + d), _MM_HINT_T0);
      const __m512 w00 = widen16(_mm256_loadu_si256((const __m256i*)(r0 + d))), w01 = widen16(_mm256_loadu_si256((const __m256i*)(r0 + d + 16)));
      const __m512 w10 = widen16(_mm256_loadu_si256((const __m256i*)(r1 + d))), w11 = widen16(_mm256_loadu_si256((const __m256i*)(r1 + d + 16)));
      for (int i = 0; i < R; i++) {
        const __m512 x0 = _mm512_loadu_ps(x + i * k + d), x1 = _mm512_loadu_ps(x + i * k + d + 16);
        a0[i] = _mm512_fmadd_ps(w00, x0, a0[i]);
        a1[i] = _mm512_fmadd_ps(w01, x1, a1[i]);
        b0[i] = _mm512_fmadd_ps(w10, x0, b0[i]);
        b1[i] = _mm512_fmadd_ps(w11, x1, b1[i]);
      }
    }
    for (; d < k; d += 16) {
      const __mmask16 mk = k - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - d)) - 1);
      const __m512 w0 = widen16(_mm256_maskz_loadu_epi16(mk, r0 + d)), w1 = widen16(_mm256_maskz_loadu_epi16(mk, r1 + d));
      for (int i = 0; i < R; i++) {
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * k + d);
        a0[i] = _mm512_fmadd_ps(w0, xv, a0[i]);
        b0[i] = _mm512_fmadd_ps(w1, xv, b0[i]);
      }
    }
    for (int i = 0; i < R; i++) {
      y[i * n + j] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i], a1[i]));
      y[i * n + j + 1] = _mm512_reduce_add_ps(_mm512_add_ps(b0[i], b1[i]));
    }
  }
  if (j < j1) {
    const uint16_t* r0 = w + j * k;
    __m512 a0[R];
    for (int i = 0; i < R; i++) a0[i] = _mm512_setzero_ps();
    for (long d = 0; d < k; d += 16) {
      const __mmask16 mk = k - d >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (k - d)) - 1);
      const __m512 w0 = widen16(_mm256_maskz_loadu_epi16(mk, r0 + d));
      for (int i = 0; i < R; i++) a0[i] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mk, x + i * k + d), a0[i]);
    }
    for (int i = 0; i < R; i++) y[i * n + j] = _mm512_reduce_add_ps(a0[i]);
  }
}

static void bf16Grouped512(const float* x, long rows, const uint16_t* w, float* y, long n, long j0, long j1, long k) {
  long i = 0;
  for (; i + 4 <= rows; i += 4) bf16Rows512<4>(x + i * k, w, y + i * n, n, j0, j1, k);
  switch (rows - i) {
    case 3: bf16Rows512<3>(x + i * k, w, y + i * n, n, j0, j1, k); break;
    case 2: bf16Rows512<2>(x + i * k, w, y + i * n, n, j0, j1, k); break;
    case 1: bf16Rows512<1>(x + i * k, w, y + i * n, n, j0, j1, k); break;
    default: break;
  }
}
#endif

// Pieces of 64 outputs over the pool once the matrix passes `minWork` multiply-adds per call.
template <class F>
static void overOutputs(long outs, long work, long minWork, int maxT, F fn) {
  int T = work < minWork ? 1 : std::min(maxT, poolThreads());
  const long chunks = (outs + 63) / 64;
  if (chunks < T) T = (int)std::max<long>(1, chunks);
  // Work is handed out in pieces (dynamic): a worker that arrives late only takes fewer.
  const long pieces = T <= 1 ? 1 : std::min<long>(chunks, 4L * T);
  if (pieces <= 1) { fn(0L, outs); return; }
  poolRunChunks(pieces, [&](long pc, int) {
    fn(std::min(outs, chunks * pc / pieces * 64), std::min(outs, chunks * (pc + 1) / pieces * 64));
  });
}

}  // namespace

bool gemvF32Handles(const MatMulArgs& x) {
  return x.m == 1 || x.n == 1 || (x.m <= kGemvMaxRows && !x.transA);
}

void gemvF32(const MatMulArgs& x, int maxT) {
  RowsFn streamFn = streamRowsPortable, dotsFn = dotsPortable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) { streamFn = streamRows512Rows; dotsFn = dots512Rows; }
#endif
  // One column (n == 1): y = op(A) · b is the one-row product with A and B swapped.
  const bool col = x.n == 1 && x.m > 1;
  const long rows = col ? 1 : x.m, outs = col ? x.m : x.n;
  const bool stream = col ? x.transA : !x.transB;
  const long ld = col ? (x.transA ? x.m : x.k) : (x.transB ? x.k : x.n);
  // A matrix-vector product streams its matrix from memory once: past ~256 KB of matrix (L2 no
  // longer holds it across calls) one core's share of DRAM bandwidth (~9 GB/s on the reference
  // VM) is the limit, and a second core nearly doubles it. Workers spin ~100 µs after a job, so
  // back-to-back decode products find them awake.
  overOutputs(outs, x.batch * x.m * x.n * x.k, 1L << 16, maxT, [&](long j0, long j1) {
    for (long bi = 0; bi < x.batch; bi++) {
      const float* vec = col ? x.b + bi * x.strideB : x.a + bi * x.strideA;
      const float* mat = col ? x.a + bi * x.strideA : x.b + bi * x.strideB;
      (stream ? streamFn : dotsFn)(vec, x.k, rows, mat, ld, x.c + bi * x.strideC, x.n, j0, j1, x.k, x.accumulate);
    }
  });
}

void gemvBf16(const float* x, const uint16_t* w, float* y, long m, long n, long k) {
  auto fn = bf16Portable;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) fn = bf16Grouped512;
#endif
  // Same policy as the f32 product: past ~128K weights, pieces over the pool.
  overOutputs(n, n * k * 2, 1L << 18, 1 << 20, [&](long j0, long j1) {
    for (long i = 0; i < m; i += kGemvMaxRows) fn(x + i * k, std::min<long>(kGemvMaxRows, m - i), w, y + i * n, n, j0, j1, k);
  });
}

}  // namespace frugal
