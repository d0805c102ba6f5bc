// Row kernels of the training step that were TypeScript loops: rotary embedding (forward and, with
// sign −1, backward), MLA's per-head key concat and its backward, and the cross-entropy rows of the
// fused output head (log-sum-exp loss and the logit gradient in one pass over each row). Large
// inputs are split over the pool by rows; every row is computed the same way whatever the split.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "train.h"
#include "vecmath.h"

namespace frugal {
namespace {

template <class Fn>
void byRows(long rows, long workPerRow, Fn fn) {
  const long pieces = rows * workPerRow < (1L << 18) ? 1 : std::min<long>(rows, 4L * poolThreads());
  if (pieces <= 1) { fn(0L, rows); return; }
  poolRunChunks(pieces, [&](long pc, int) { fn(rows * pc / pieces, rows * (pc + 1) / pieces); });
}

#if FRUGAL_HAVE_X86_KERNELS
// One row's cross-entropy: returns log Σ exp(p) − p[y]; with grad, p ← (softmax(p) − onehot(y)) · inv.
FRUGAL_AVX512 double ceRow512(float* p, long V, long y, float inv, bool grad) {
  const double py = p[y];  // read before the row is overwritten by its exponentials
  __m512 mx = _mm512_set1_ps(-INFINITY);
  long j = 0;
  for (; j + 16 <= V; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(p + j));
  float m = _mm512_reduce_max_ps(mx);
  for (; j < V; j++) m = std::max(m, p[j]);
  const __m512 mv = _mm512_set1_ps(m);
  __m512 s = _mm512_setzero_ps();
  double tail = 0;
  j = 0;
  for (; j + 16 <= V; j += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), mv));
    s = _mm512_add_ps(s, e);
    if (grad) _mm512_storeu_ps(p + j, e);
  }
  for (; j < V; j++) {
    const float e = std::exp(p[j] - m);
    tail += e;
    if (grad) p[j] = e;
  }
  const double sum = (double)_mm512_reduce_add_ps(s) + tail;
  const double loss = std::log(sum) + m - py;  // exact log-sum-exp: no underflow of p[y]
  if (!grad) return loss;
  const __m512 sc = _mm512_set1_ps((float)(inv / sum));
  j = 0;
  for (; j + 16 <= V; j += 16) _mm512_storeu_ps(p + j, _mm512_mul_ps(_mm512_loadu_ps(p + j), sc));
  for (; j < V; j++) p[j] = (float)(p[j] * (inv / sum));
  p[y] -= inv;
  return loss;
}
#endif

double ceRowPortable(float* p, long V, long y, float inv, bool grad) {
  float m = -INFINITY;
  for (long j = 0; j < V; j++) m = std::max(m, p[j]);
  double sum = 0;
  for (long j = 0; j < V; j++) sum += std::exp((double)p[j] - m);
  const double loss = std::log(sum) + m - (double)p[y];
  if (grad) {
    for (long j = 0; j < V; j++) p[j] = (float)(std::exp((double)p[j] - m) / sum * inv);
    p[y] -= inv;
  }
  return loss;
}

}  // namespace

void ropeRows(const float* x, float* out, const float* cos, const float* sin, long B, long T, long H, long D, long offset, float sign) {
  const long half = (D - offset) / 2;
  byRows(B * T, H * D, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      const long t = r % T;
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (long h = 0; h < H; h++) {
        const float* src = x + (r * H + h) * D;
        float* dst = out + (r * H + h) * D;
        if (offset > 0) std::memcpy(dst, src, sizeof(float) * offset);
        const float* xs = src + offset;
        float* ys = dst + offset;
        for (long i = 0; i < half; i++) {
          const float x0 = xs[2 * i], x1 = xs[2 * i + 1], ci = c[i], si = sign * s[i];
          ys[2 * i] = x0 * ci - x1 * si;
          ys[2 * i + 1] = x0 * si + x1 * ci;
        }
      }
    }
  });
}

void concatHeads(const float* a, const float* b, float* out, long R, long H, long Dfull, long Da, long Db) {
  const long D = Da + Db;
  byRows(R, H * D, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++)
      for (long h = 0; h < H; h++) {
        float* o = out + (r * H + h) * D;
        std::memcpy(o, a + (r * H + h) * Dfull, sizeof(float) * Da);
        std::memcpy(o + Da, b + r * Db, sizeof(float) * Db);
      }
  });
}

void concatHeadsBackward(const float* g, float* ga, float* gb, long R, long H, long Dfull, long Da, long Db) {
  const long D = Da + Db;
  byRows(R, H * D, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      if (gb) std::fill(gb + r * Db, gb + (r + 1) * Db, 0.f);
      for (long h = 0; h < H; h++) {
        const float* gr = g + (r * H + h) * D;
        if (ga) {
          float* d = ga + (r * H + h) * Dfull;
          std::memcpy(d, gr, sizeof(float) * Da);
          std::fill(d + Da, d + Dfull, 0.f);
        }
        if (gb)
          for (long j = 0; j < Db; j++) gb[r * Db + j] += gr[Da + j];
      }
    }
  });
}

double crossEntropyRows(float* p, long rows, long V, const int32_t* targets, long ignoreIndex, float inv, bool grad) {
  // Per-row losses summed in row order afterwards, so the total does not depend on the split.
  static thread_local std::vector<double> part;
  if ((long)part.size() < rows) part.resize(rows);
  double* pr = part.data();
  byRows(rows, V * 3, [&](long r0, long r1) {
    for (long r = r0; r < r1; r++) {
      float* row = p + r * V;
      const long y = targets[r];
      if (y == ignoreIndex) {
        if (grad) std::fill(row, row + V, 0.f);
        pr[r] = 0;
        continue;
      }
#if FRUGAL_HAVE_X86_KERNELS
      if (cpu().isa == Isa::Avx512) { pr[r] = ceRow512(row, V, y, inv, grad); continue; }
#endif
      pr[r] = ceRowPortable(row, V, y, inv, grad);
    }
  });
  double total = 0;
  for (long r = 0; r < rows; r++) total += pr[r];
  return total;
}

}  // namespace frugal
