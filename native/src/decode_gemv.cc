// Few-row matrix products of the decode engine, y = x·Wᵀ for W [n, k] in f32, bf16 or Q8_0, over a
// range of outputs. The AVX-512 kernels keep 16 accumulators (C columns × R rows, C·R = 16) of 16
// lanes each and sum each accumulator's lanes with one transposing tree (reduce16), instead of a
// horizontal reduction per output: ~3 instructions per 16 outputs instead of ~8 per output, which
// is most of the cost when k is small (128–256) and the matrix sits in cache.
//
// Contract: every output (r, j) is the same lane-wise accumulation over p (in order, masked tail)
// followed by the same fixed tree (lanes i+8, then i+4, i+2, i+1), whatever R, C or the output
// range, so results are bit-identical per row and per column split.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "decode.h"
#include "vecmath.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace dec {
namespace {

constexpr long QK = 32, QB = 34;

inline float bf16ToF32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Portable forms: 16 partial sums per output in the AVX-512 kernels' lane order and tree, so an
// output does not depend on R here either.
inline float tree16(float* s) {
  for (int w = 8; w >= 1; w /= 2)
    for (int i = 0; i < w; i++) s[i] += s[i + w];
  return s[0];
}

void f32Portable(const float* W, long k, const Rows& x, long R, float* y, long ldy, long j0, long j1) {
  for (long r = 0; r < R; r++)
    for (long j = j0; j < j1; j++) {
      const float* w = W + j * k;
      const float* xr = x.x + r * x.ldx;
      float s[16] = {};
      for (long p = 0; p < k; p++) s[p & 15] += xr[p] * w[p];
      y[r * ldy + j] = tree16(s);
    }
}

void bf16Portable(const uint16_t* W, long k, const Rows& x, long R, float* y, long ldy, long j0, long j1) {
  for (long r = 0; r < R; r++)
    for (long j = j0; j < j1; j++) {
      const uint16_t* w = W + j * k;
      const float* xr = x.x + r * x.ldx;
      float s[16] = {};
      for (long p = 0; p < k; p++) s[p & 15] += xr[p] * bf16ToF32(w[p]);
      y[r * ldy + j] = tree16(s);
    }
}

void q8Portable(const uint8_t* W, long k, const Rows& x, long R, float* y, long ldy, long j0, long j1) {
  const long nb = k / QK;
  for (long r = 0; r < R; r++)
    for (long j = j0; j < j1; j++) {
      const uint8_t* row = W + j * nb * QB;
      const int16_t* q = x.q + r * k;
      const float* d = x.d + r * nb;
      float s[16] = {};
      for (long b = 0; b < nb; b++) {
        const uint8_t* blk = row + b * QB;
        const int8_t* qs = (const int8_t*)(blk + 2);
        const float sc = halfToF32((uint16_t)(blk[0] | (blk[1] << 8))) * d[b];
        // Lane l of the AVX-512 kernel holds products 2l and 2l+1 of the block (vpmaddwd).
        for (int l = 0; l < 16; l++) s[l] += (float)((int32_t)qs[2 * l] * q[b * QK + 2 * l] + (int32_t)qs[2 * l + 1] * q[b * QK + 2 * l + 1]) * sc;
      }
      y[r * ldy + j] = tree16(s);
    }
}

#if FRUGAL_HAVE_X86_KERNELS

FRUGAL_AVX512 inline __mmask16 tail16(long left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }
FRUGAL_AVX512 inline __m512 widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

// Stores accumulator c·R + r of the reduced vector to y[r, j + c] for columns c < nc.
template <int R, int C>
FRUGAL_AVX512 inline void store16(__m512 z, float* y, long ldy, long j, long nc) {
  alignas(64) float t[16];
  _mm512_store_ps(t, z);
  for (int c = 0; c < C && c < nc; c++)
    for (int r = 0; r < R; r++) y[r * ldy + j + c] = t[c * R + r];
}

// W rows (f32 or bf16) for C columns of R rows of x; missing columns read column j and are dropped.
template <int R, bool Bf16>
FRUGAL_AVX512 void denseBlocks(const void* Wv, long k, const Rows& x, float* y, long ldy, long j0, long j1) {
  constexpr int C = 16 / R;
  for (long j = j0; j < j1; j += C) {
    const long nc = std::min<long>(C, j1 - j);
    const float* wf[C];
    const uint16_t* wh[C];
    for (int c = 0; c < C; c++) {
      const long col = c < nc ? j + c : j;
      wf[c] = (const float*)Wv + col * k;
      wh[c] = (const uint16_t*)Wv + col * k;
    }
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (long p = 0; p < k; p += 16) {
      const __mmask16 mk = tail16(k - p);
      __m512 xv[R];
      for (int r = 0; r < R; r++) xv[r] = _mm512_maskz_loadu_ps(mk, x.x + r * x.ldx + p);
      for (int c = 0; c < C; c++) {
        // The same line of the next block's rows (prefetches never fault past the end).
        if (Bf16) { if (!(p & 16)) _mm_prefetch((const char*)(wh[c] + C * k + p), _MM_HINT_T0); }
        else _mm_prefetch((const char*)(wf[c] + C * k + p), _MM_HINT_T0);
        const __m512 w = Bf16 ? widen(_mm256_maskz_loadu_epi16(mk, wh[c] + p)) : _mm512_maskz_loadu_ps(mk, wf[c] + p);
        for (int r = 0; r < R; r++) acc[c * R + r] = _mm512_fmadd_ps(xv[r], w, acc[c * R + r]);
      }
    }
    store16<R, C>(reduce16(acc), y, ldy, j, nc);
  }
}

// Q8_0 weights against Q8_0 rows of x: per 32-weight block, exact int16 pair products summed into
// 16 int32 lanes (vpmaddwd), converted and scaled by f16(dw)·dx into the f32 lanes.
template <int R>
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,f16c"))) void q8Blocks(const uint8_t* W, long k, const Rows& x, float* y, long ldy, long j0, long j1) {
  constexpr int C = 16 / R;
  const long nb = k / QK;
  for (long j = j0; j < j1; j += C) {
    const long nc = std::min<long>(C, j1 - j);
    const uint8_t* wr[C];
    for (int c = 0; c < C; c++) wr[c] = W + (c < nc ? j + c : j) * nb * QB;
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    for (long b = 0; b < nb; b++) {
      __m512i xq[R];
      for (int r = 0; r < R; r++) xq[r] = _mm512_loadu_si512((const void*)(x.q + r * k + b * QK));
      for (int c = 0; c < C; c++) {
        const uint8_t* blk = wr[c] + b * QB;
        _mm_prefetch((const char*)(blk + C * nb * QB), _MM_HINT_T0);
        const __m512i wq = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(blk + 2)));
        const float dw = _cvtsh_ss((uint16_t)(blk[0] | (blk[1] << 8)));
        for (int r = 0; r < R; r++) {
          const __m512 p = _mm512_cvtepi32_ps(_mm512_madd_epi16(wq, xq[r]));
          acc[c * R + r] = _mm512_fmadd_ps(p, _mm512_set1_ps(dw * x.d[r * nb + b]), acc[c * R + r]);
        }
      }
    }
    store16<R, C>(reduce16(acc), y, ldy, j, nc);
  }
}

// Rows in groups the kernels take at once (each group reads the weights once): up to 5 rows
// together (a speculative step's verify rows), longer passes in fours.
template <class F>
FRUGAL_AVX512 inline void byRowGroups(long R, F f) {
  long r = 0;
  while (R - r > 5) { f(r, 4); r += 4; }
  if (r < R) f(r, R - r);
}

template <template <int> class K, class... A>
FRUGAL_AVX512 inline void withRows(long g, A&&... a) {
  switch (g) {
    case 5: K<5>::run(a...); break;
    case 4: K<4>::run(a...); break;
    case 3: K<3>::run(a...); break;
    case 2: K<2>::run(a...); break;
    default: K<1>::run(a...); break;
  }
}
template <int R> struct Q8K { template <class... A> static void run(A... a) { q8Blocks<R>(a...); } };
template <int R> struct F32K { template <class... A> static void run(A... a) { denseBlocks<R, false>(a...); } };
template <int R> struct Bf16K { template <class... A> static void run(A... a) { denseBlocks<R, true>(a...); } };
#endif

}  // namespace

void matRows(const Mat& m, const Rows& x, long R, float* y, long ldy, long j0, long j1) {
  if (j0 >= j1 || R <= 0) return;
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) {
    byRowGroups(R, [&](long r, long g) {
      Rows xs = x;
      xs.x = x.x + r * x.ldx;
      if (x.q) { xs.q = x.q + r * m.k; xs.d = x.d + r * (m.k / QK); }
      float* yr = y + r * ldy;
      if (m.fmt == Q8) withRows<Q8K>(g, (const uint8_t*)m.w, m.k, (const Rows&)xs, yr, ldy, j0, j1);
      else if (m.fmt == BF16) withRows<Bf16K>(g, m.w, m.k, (const Rows&)xs, yr, ldy, j0, j1);
      else withRows<F32K>(g, m.w, m.k, (const Rows&)xs, yr, ldy, j0, j1);
    });
    return;
  }
#endif
  if (m.fmt == Q8) q8Portable((const uint8_t*)m.w, m.k, x, R, y, ldy, j0, j1);
  else if (m.fmt == BF16) bf16Portable((const uint16_t*)m.w, m.k, x, R, y, ldy, j0, j1);
  else f32Portable((const float*)m.w, m.k, x, R, y, ldy, j0, j1);
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 static void streamRow512(const float* x, const float* M, long ld, long k, float* y, long n) {
  for (long j = 0; j < n; j += 64) {
    __mmask16 mk[4];
    __m512 acc[4];
    for (int t = 0; t < 4; t++) { mk[t] = j + 16 * t < n ? tail16(n - j - 16 * t) : 0; acc[t] = _mm512_setzero_ps(); }
    for (long p = 0; p < k; p++) {
      const __m512 xv = _mm512_set1_ps(x[p]);
      for (int t = 0; t < 4; t++) acc[t] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(mk[t], M + p * ld + j + 16 * t), acc[t]);
    }
    for (int t = 0; t < 4; t++) _mm512_mask_storeu_ps(y + j + 16 * t, mk[t], acc[t]);
  }
}
#endif

void streamRow(const float* x, const float* M, long ld, long k, float* y, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return streamRow512(x, M, ld, k, y, n);
#endif
  for (long j = 0; j < n; j++) {
    float s = 0.f;
    for (long p = 0; p < k; p++) s += x[p] * M[p * ld + j];
    y[j] = s;
  }
}

}  // namespace dec
}  // namespace frugal
