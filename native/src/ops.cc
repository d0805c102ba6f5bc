// Row-wise fused kernels: RMSNorm (with optional rstd output) and its backward, softmax, and
// silu(g)*u and its backward. AVX-512 versions use a Cephes-style exp (|rel err| < 2e-7); the
// portable ones use std::exp. Large inputs are split over the thread pool by rows; the RMSNorm
// weight gradient is summed per thread and reduced afterwards (race-free).
#include <algorithm>
#include <cmath>
#include <vector>

#include "common.h"
#include "vecmath.h"

namespace frugal {
namespace {

#if FRUGAL_HAVE_X86_KERNELS
static inline __mmask16 tailMask(long left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

FRUGAL_AVX512 static void rmsnormRows512(const float* x, const float* w, float* out, long r0, long r1, long cols, float eps, float* rstd) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    __m512 s = _mm512_setzero_ps();
    for (long j = 0; j < cols; j += 16) {
      __m512 v = _mm512_maskz_loadu_ps(tailMask(cols - j), xr + j);
      s = _mm512_fmadd_ps(v, v, s);
    }
    const float rs = (float)(1.0 / std::sqrt((double)_mm512_reduce_add_ps(s) / cols + eps));
    if (rstd) rstd[r] = rs;
    const __m512 rv = _mm512_set1_ps(rs);
    for (long j = 0; j < cols; j += 16) {
      __mmask16 mk = tailMask(cols - j);
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, xr + j), rv);
      _mm512_mask_storeu_ps(o + j, mk, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(mk, w + j)));
    }
  }
}

FRUGAL_AVX512 static void softmaxRows512(const float* x, float* out, long r0, long r1, long cols) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (long j = 0; j < cols; j += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), tailMask(cols - j), xr + j));
    const float m = _mm512_reduce_max_ps(mx);
    if (m == -INFINITY) { std::fill(o, o + cols, 0.f); continue; }
    const __m512 mv = _mm512_set1_ps(m);
    __m512 s = _mm512_setzero_ps();
    for (long j = 0; j < cols; j += 16) {
      __mmask16 mk = tailMask(cols - j);
      __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, xr + j), mv));
      e = _mm512_maskz_mov_ps(mk, e);
      s = _mm512_add_ps(s, e);
      _mm512_mask_storeu_ps(o + j, mk, e);
    }
    const __m512 inv = _mm512_set1_ps(1.f / _mm512_reduce_add_ps(s));
    for (long j = 0; j < cols; j += 16) {
      __mmask16 mk = tailMask(cols - j);
      _mm512_mask_storeu_ps(o + j, mk, _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, o + j), inv));
    }
  }
}

FRUGAL_AVX512 static void siluMul512(const float* g, const float* u, float* out, long i0, long i1) {
  for (long i = i0; i < i1; i += 16) {
    __mmask16 mk = tailMask(i1 - i);
    __m512 z = _mm512_maskz_loadu_ps(mk, g + i);
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), z));
    __m512 sig = _mm512_div_ps(z, _mm512_add_ps(_mm512_set1_ps(1.f), e));
    _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(sig, _mm512_maskz_loadu_ps(mk, u + i)));
  }
}

FRUGAL_AVX512 static void siluMulBackward512(const float* g, const float* u, const float* go, float* gg, float* gu, long i0, long i1) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (long i = i0; i < i1; i += 16) {
    __mmask16 mk = tailMask(i1 - i);
    __m512 z = _mm512_maskz_loadu_ps(mk, g + i);
    __m512 d = _mm512_maskz_loadu_ps(mk, go + i);
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), z))));
    _mm512_mask_storeu_ps(gu + i, mk, _mm512_mul_ps(_mm512_mul_ps(d, z), s));
    // 1 + z * (1 - s)
    __m512 t = _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one);
    __m512 ds = _mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, u + i)), s);
    _mm512_mask_storeu_ps(gg + i, mk, _mm512_mul_ps(ds, t));
  }
}

FRUGAL_AVX512 static void rmsnormBackwardRows512(const float* x, const float* w, const float* rstd, const float* go, float* gx, float* gw,
                                                 long r0, long r1, long cols) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    const float* gr = go + r * cols;
    const float rs = rstd[r];
    __m512 acc = _mm512_setzero_ps();
    if (gx) {
      for (long j = 0; j < cols; j += 16) {
        __mmask16 mk = tailMask(cols - j);
        __m512 gw_ = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, gr + j), _mm512_maskz_loadu_ps(mk, w + j));
        acc = _mm512_fmadd_ps(gw_, _mm512_maskz_loadu_ps(mk, xr + j), acc);
      }
    }
    const __m512 cv = _mm512_set1_ps(gx ? _mm512_reduce_add_ps(acc) * rs * rs / (float)cols : 0.f);
    const __m512 rv = _mm512_set1_ps(rs);
    for (long j = 0; j < cols; j += 16) {
      __mmask16 mk = tailMask(cols - j);
      __m512 gv = _mm512_maskz_loadu_ps(mk, gr + j), xv = _mm512_maskz_loadu_ps(mk, xr + j);
      if (gx) {
        __m512 a = _mm512_fnmadd_ps(xv, cv, _mm512_mul_ps(gv, _mm512_maskz_loadu_ps(mk, w + j)));
        _mm512_mask_storeu_ps(gx + r * cols + j, mk, _mm512_mul_ps(rv, a));
      }
      if (gw) {
        __m512 a = _mm512_fmadd_ps(_mm512_mul_ps(gv, xv), rv, _mm512_maskz_loadu_ps(mk, gw + j));
        _mm512_mask_storeu_ps(gw + j, mk, a);
      }
    }
  }
}
#endif

static void rmsnormRows(const float* x, const float* w, float* out, long r0, long r1, long cols, float eps, float* rstd) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    double ss = 0;
    for (long j = 0; j < cols; j++) ss += (double)xr[j] * xr[j];
    const double rs = 1.0 / std::sqrt(ss / cols + eps);
    if (rstd) rstd[r] = (float)rs;
    for (long j = 0; j < cols; j++) out[r * cols + j] = (float)(xr[j] * rs * w[j]);
  }
}
static void softmaxRows(const float* x, float* out, long r0, long r1, long cols) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    float* o = out + r * cols;
    float m = -INFINITY;
    for (long j = 0; j < cols; j++) m = std::max(m, xr[j]);
    if (m == -INFINITY) { std::fill(o, o + cols, 0.f); continue; }
    double s = 0;
    for (long j = 0; j < cols; j++) { o[j] = std::exp(xr[j] - m); s += o[j]; }
    const float inv = (float)(1.0 / s);
    for (long j = 0; j < cols; j++) o[j] *= inv;
  }
}
static void siluMulRange(const float* g, const float* u, float* out, long i0, long i1) {
  for (long i = i0; i < i1; i++) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

static void siluMulBackwardRange(const float* g, const float* u, const float* go, float* gg, float* gu, long i0, long i1) {
  for (long i = i0; i < i1; i++) {
    const double z = g[i], s = 1.0 / (1.0 + std::exp(-z));
    gu[i] = (float)(go[i] * z * s);
    gg[i] = (float)(go[i] * (double)u[i] * s * (1.0 + z * (1.0 - s)));
  }
}
static void rmsnormBackwardRows(const float* x, const float* w, const float* rstd, const float* go, float* gx, float* gw,
                                long r0, long r1, long cols) {
  for (long r = r0; r < r1; r++) {
    const float* xr = x + r * cols;
    const float* gr = go + r * cols;
    const double rs = rstd[r];
    double dot = 0;
    if (gx) for (long j = 0; j < cols; j++) dot += (double)gr[j] * w[j] * xr[j];
    const double c = dot * rs * rs / cols;
    for (long j = 0; j < cols; j++) {
      if (gx) gx[r * cols + j] = (float)(rs * ((double)gr[j] * w[j] - xr[j] * c));
      if (gw) gw[j] += (float)((double)gr[j] * xr[j] * rs);
    }
  }
}

// Threads for a row op over `count` items of `workPerItem`: memory-bound row ops are only worth a
// worker wake-up for large tensors (~1M elements).
static int splitThreads(long count, long workPerItem) {
  return count * workPerItem < (1L << 20) ? 1 : (int)std::min<long>(poolThreads(), count);
}

// Runs fn(tid, r0, r1) over [0, count) split across T threads (T from splitThreads).
template <class Fn>
static void splitRowsT(int T, long count, Fn fn) {
  if (T <= 1) { fn(0, 0L, count); return; }
  // Two pieces per thread, handed out dynamically (tid = the thread that runs the piece).
  const long P = std::min<long>(count, 2L * T);
  poolRunChunks(P, [&](long pc, int tid) { fn(tid, count * pc / P, count * (pc + 1) / P); });
}

// Runs fn over [0, count) split across threads when the work is large enough.
template <class Fn>
static void splitRows(long count, long workPerItem, Fn fn) {
  splitRowsT(splitThreads(count, workPerItem), count, [&](int, long r0, long r1) { fn(r0, r1); });
}

}  // namespace

void rmsnorm(const float* x, const float* w, float* out, long rows, long cols, float eps, float* rstd) {
  splitRows(rows, cols, [&](long r0, long r1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return rmsnormRows512(x, w, out, r0, r1, cols, eps, rstd);
#endif
    rmsnormRows(x, w, out, r0, r1, cols, eps, rstd);
  });
}

void softmax(const float* x, float* out, long rows, long cols) {
  splitRows(rows, cols * 4, [&](long r0, long r1) {
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return softmaxRows512(x, out, r0, r1, cols);
#endif
    softmaxRows(x, out, r0, r1, cols);
  });
}

void siluMul(const float* g, const float* u, float* out, long n) {
  // Split in 64-element chunks so thread boundaries stay vector-aligned.
  const long chunks = (n + 63) / 64;
  splitRows(chunks, 64 * 4, [&](long c0, long c1) {
    const long i0 = c0 * 64, i1 = std::min(n, c1 * 64);
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return siluMul512(g, u, out, i0, i1);
#endif
    siluMulRange(g, u, out, i0, i1);
  });
}

void softmaxBackward(const float* p, const float* go, float* gi, long rows, long cols, float scale) {
  splitRows(rows, cols * 3, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const float* pr = p + r * cols;
      const float* gr = go + r * cols;
      float* o = gi + r * cols;
      float dot = 0.f;
      for (long j = 0; j < cols; j++) dot += pr[j] * gr[j];
      for (long j = 0; j < cols; j++) o[j] = scale * pr[j] * (gr[j] - dot);
    }
  });
}

void siluMulBackward(const float* g, const float* u, const float* go, float* gg, float* gu, long n) {
  const long chunks = (n + 63) / 64;
  splitRows(chunks, 64 * 6, [&](long c0, long c1) {
    const long i0 = c0 * 64, i1 = std::min(n, c1 * 64);
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return siluMulBackward512(g, u, go, gg, gu, i0, i1);
#endif
    siluMulBackwardRange(g, u, go, gg, gu, i0, i1);
  });
}

void rmsnormBackward(const float* x, const float* w, const float* rstd, const float* go, float* gx, float* gw, long rows, long cols) {
  if (!gx && !gw) return;
  const int T = splitThreads(rows, cols * 3);
  // Each thread past the first sums its weight gradient into its own zeroed slice; thread 0 adds
  // straight into gw. The slices are added to gw after the join.
  const int NT = poolThreads();
  std::vector<float> part(gw && T > 1 ? (size_t)(NT - 1) * cols : 0, 0.f);
  splitRowsT(T, rows, [&](int tid, long r0, long r1) {
    float* pw = !gw ? nullptr : tid == 0 ? gw : part.data() + (size_t)(tid - 1) * cols;
#if FRUGAL_HAVE_X86_KERNELS
    if (cpu().isa == Isa::Avx512) return rmsnormBackwardRows512(x, w, rstd, go, gx, pw, r0, r1, cols);
#endif
    rmsnormBackwardRows(x, w, rstd, go, gx, pw, r0, r1, cols);
  });
  if (gw && T > 1) for (int t = 1; t < NT; t++) {
    const float* p = part.data() + (size_t)(t - 1) * cols;
    for (long j = 0; j < cols; j++) gw[j] += p[j];
  }
}

}  // namespace frugal
