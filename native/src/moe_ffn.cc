// Grouped DeepSeekMoE feed-forward: all routed experts of a layer (and its shared expert) in one
// call, forward and backward, instead of 3 GEMM calls per expert forward and 6 backward plus the
// gathers, scatters and elementwise ops between them.
//
// Work is split into tasks run on the pool: one per routed expert (its rows gathered from x into
// a thread-local panel, gate/up GEMMs, SiLU·mul, down GEMM; backward also its three weight
// gradients, accumulated straight into the parameter's gradient) and one per 256-row block of the
// shared expert. Tasks are handed out largest first, so two threads stay balanced without
// splitting any GEMM. The combine (and, backward, the sum of each token's k slot gradients) runs
// per token afterwards, in a fixed slot order: results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "train.h"
#include "vecmath.h"

namespace frugal {
namespace {

constexpr long kSharedBlock = 256;

struct Panels {
  std::vector<float> xe, h, dy, dg, du;
};
Panels& panels() {
  static thread_local Panels p;
  return p;
}
float* grow(std::vector<float>& v, long n) {
  if ((long)v.size() < n) v.resize(n);
  return v.data();
}

void gemm(const float* a, const float* b, float* c, long m, long n, long k, bool tA, bool tB, bool acc) {
  MatMulArgs x{a, b, c, 1, m, n, k, tA, tB, 0, 0, 0, acc};
  matmulF32Serial(x);
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 void siluMul512(const float* g, const float* u, float* out, long n) {
  for (long i = 0; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 z = _mm512_maskz_loadu_ps(mk, g + i);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), z));
    const __m512 sig = _mm512_div_ps(z, _mm512_add_ps(_mm512_set1_ps(1.f), e));
    _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(sig, _mm512_maskz_loadu_ps(mk, u + i)));
  }
}
// gg may alias go (each lane is read before it is written). h (when not null) gets the forward's
// silu(g)·u from the same sigmoid, for the down-projection's weight gradient.
FRUGAL_AVX512 void siluMulBwd512(const float* g, const float* u, const float* go, float* gg, float* gu, float* h, long n) {
  const __m512 one = _mm512_set1_ps(1.f);
  for (long i = 0; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 z = _mm512_maskz_loadu_ps(mk, g + i);
    const __m512 d = _mm512_maskz_loadu_ps(mk, go + i);
    const __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), z))));
    if (h) _mm512_mask_storeu_ps(h + i, mk, _mm512_mul_ps(_mm512_mul_ps(z, s), _mm512_maskz_loadu_ps(mk, u + i)));
    _mm512_mask_storeu_ps(gu + i, mk, _mm512_mul_ps(_mm512_mul_ps(d, z), s));
    const __m512 t = _mm512_fmadd_ps(z, _mm512_sub_ps(one, s), one);
    _mm512_mask_storeu_ps(gg + i, mk, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, u + i)), s), t));
  }
}
#endif

void siluMulSerial(const float* g, const float* u, float* out, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return siluMul512(g, u, out, n);
#endif
  for (long i = 0; i < n; i++) out[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
}

// SwiGLU backward: gg, gu from the projections g, u and dh = go (gg may alias go); h (optional)
// gets silu(g)·u, recomputed here rather than saved by the forward.
void siluMulBwdSerial(const float* g, const float* u, const float* go, float* gg, float* gu, float* h, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return siluMulBwd512(g, u, go, gg, gu, h, n);
#endif
  if (h) siluMulSerial(g, u, h, n);
  for (long i = 0; i < n; i++) {
    const double z = g[i], s = 1.0 / (1.0 + std::exp(-z)), d = go[i];
    gu[i] = (float)(d * z * s);
    gg[i] = (float)(d * (double)u[i] * s * (1.0 + z * (1.0 - s)));
  }
}

#if FRUGAL_HAVE_X86_KERNELS
FRUGAL_AVX512 float dot512(const float* a, const float* b, long n) {
  __m512 acc = _mm512_setzero_ps();
  for (long i = 0; i < n; i += 16) {
    const __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, a + i), _mm512_maskz_loadu_ps(mk, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}
#endif

float dot(const float* a, const float* b, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return dot512(a, b, n);
#endif
  float s = 0.f;
  for (long i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

// A unit of phase-1 work: routed expert e (e >= 0) or shared rows [r0, r1) (e < 0).
struct Task {
  long e, r0, r1, cost;
};

std::vector<Task> tasks(const MoeFfnArgs& a) {
  std::vector<Task> t;
  for (long e = 0; e < a.E; e++) {
    const long r = a.offsets[e + 1] - a.offsets[e];
    if (r > 0) t.push_back({e, a.offsets[e], a.offsets[e + 1], r * a.I});
  }
  if (a.sGate)
    for (long r0 = 0; r0 < a.N; r0 += kSharedBlock) t.push_back({-1, r0, std::min(a.N, r0 + kSharedBlock), (std::min(a.N, r0 + kSharedBlock) - r0) * a.Is});
  std::stable_sort(t.begin(), t.end(), [](const Task& p, const Task& q) { return p.cost > q.cost; });
  return t;
}

// Rows of x for slots order[p0 .. p0+r) into a panel [r, H].
void gatherRows(const MoeFfnArgs& a, long p0, long r, float* dst) {
  for (long i = 0; i < r; i++) std::memcpy(dst + i * a.H, a.x + (a.order[p0 + i] / a.k) * a.H, sizeof(float) * a.H);
}

void splitTokens(long N, long cost, const std::function<void(long, long)>& fn) {
  const long pieces = N * cost < (1L << 18) ? 1 : std::min<long>(N, 4L * poolThreads());
  poolRunChunks(pieces, [&](long pc, int) { fn(N * pc / pieces, N * (pc + 1) / pieces); });
}

}  // namespace

void moeFfnForward(const MoeFfnArgs& a, float* out) {
  const std::vector<Task> ts = tasks(a);
  const long H = a.H, I = a.I, Is = a.Is;
  poolRunChunks((long)ts.size(), [&](long ti, int) {
    const Task& t = ts[ti];
    Panels& P = panels();
    const long r = t.r1 - t.r0;
    if (t.e >= 0) {
      float* xe = grow(P.xe, r * H);
      float* h = grow(P.h, r * I);
      gatherRows(a, t.r0, r, xe);
      float* g = a.g + t.r0 * I;
      float* u = a.u + t.r0 * I;
      gemm(xe, a.gate[t.e], g, r, I, H, false, true, false);
      gemm(xe, a.up[t.e], u, r, I, H, false, true, false);
      siluMulSerial(g, u, h, r * I);
      gemm(h, a.down[t.e], a.y + t.r0 * H, r, H, I, false, true, false);
    } else {
      float* h = grow(P.h, r * Is);
      const float* xs = a.x + t.r0 * H;
      float* g = a.sg + t.r0 * Is;
      float* u = a.su + t.r0 * Is;
      gemm(xs, a.sGate, g, r, Is, H, false, true, false);
      gemm(xs, a.sUp, u, r, Is, H, false, true, false);
      siluMulSerial(g, u, h, r * Is);
      gemm(h, a.sDown, out + t.r0 * H, r, H, Is, false, true, false);
    }
  });
  const long M = a.N * a.k;
  std::vector<int32_t> pos(M);
  for (long p = 0; p < M; p++) pos[a.order[p]] = (int32_t)p;
  splitTokens(a.N, H * a.k, [&](long n0, long n1) {
    for (long n = n0; n < n1; n++) {
      float* o = out + n * H;
      if (!a.sGate) std::fill(o, o + H, 0.f);
      for (long j = 0; j < a.k; j++) {
        const long s = n * a.k + j;
        rowsAxpy(o, nullptr, a.y + (long)pos[s] * H, nullptr, a.slotW + s, 1, H);
      }
    }
  });
}

void moeFfnBackward(const MoeFfnArgs& a, const MoeFfnGrads& d) {
  const std::vector<Task> ts = tasks(a);
  const long H = a.H, I = a.I, Is = a.Is, M = a.N * a.k;
  // Per-call buffers on the calling thread: slot input gradients, and the shared expert's
  // activation and projection gradients that its weight gradients need after the tasks.
  static thread_local std::vector<float> dxsBuf, hsBuf, dgsBuf, dusBuf;
  float* dxs = grow(dxsBuf, M * H);
  const bool sharedW = a.sGate && (d.gsGate || d.gsUp || d.gsDown);
  float* hs = a.sGate ? grow(hsBuf, a.N * Is) : nullptr;
  float* dgs = a.sGate ? grow(dgsBuf, a.N * Is) : nullptr;
  float* dus = a.sGate ? grow(dusBuf, a.N * Is) : nullptr;
  poolRunChunks((long)ts.size(), [&](long ti, int) {
    const Task& t = ts[ti];
    Panels& P = panels();
    const long r = t.r1 - t.r0;
    if (t.e >= 0) {
      const long e = t.e;
      float* dy = grow(P.dy, r * H);
      float* h = grow(P.h, r * I);
      float* dg = grow(P.dg, r * I);
      float* du = grow(P.du, r * I);
      float* xe = grow(P.xe, r * H);
      // dY = w · dOut (gathered), and the gate weight gradient <dOut, y>.
      for (long i = 0; i < r; i++) {
        const long s = a.order[t.r0 + i];
        const float* go = d.gradOut + (s / a.k) * H;
        const float w = a.slotW[s];
        float* dyr = dy + i * H;
        for (long c = 0; c < H; c++) dyr[c] = w * go[c];
        d.gradW[s] = dot(go, a.y + (t.r0 + i) * H, H);
      }
      const float* g = a.g + t.r0 * I;
      const float* u = a.u + t.r0 * I;
      gemm(dy, a.down[e], dg, r, I, H, false, false, false);  // dh = dY·Wd
      siluMulBwdSerial(g, u, dg, dg, du, d.gDown[e] ? h : nullptr, r * I);
      if (d.gDown[e]) gemm(dy, h, d.gDown[e], H, I, r, true, false, true);  // dWd += dYᵀ·h
      gatherRows(a, t.r0, r, xe);
      if (d.gGate[e]) gemm(dg, xe, d.gGate[e], I, H, r, true, false, true);
      if (d.gUp[e]) gemm(du, xe, d.gUp[e], I, H, r, true, false, true);
      float* dx = dxs + t.r0 * H;
      gemm(dg, a.gate[e], dx, r, H, I, false, false, false);
      gemm(du, a.up[e], dx, r, H, I, false, false, true);
    } else {
      const float* dy = d.gradOut + t.r0 * H;
      const float* g = a.sg + t.r0 * Is;
      const float* u = a.su + t.r0 * Is;
      float* dg = dgs + t.r0 * Is;
      float* du = dus + t.r0 * Is;
      gemm(dy, a.sDown, dg, r, Is, H, false, false, false);
      siluMulBwdSerial(g, u, dg, dg, du, sharedW ? hs + t.r0 * Is : nullptr, r * Is);
      float* dx = d.gradX + t.r0 * H;
      gemm(dg, a.sGate, dx, r, H, Is, false, false, false);
      gemm(du, a.sUp, dx, r, H, Is, false, false, true);
    }
  });
  // Shared expert weight gradients over all N rows (threaded GEMMs).
  if (sharedW) {
    auto mm = [](const float* A, const float* B, float* C, long m, long n, long k) {
      MatMulArgs x{A, B, C, 1, m, n, k, true, false, 0, 0, 0, true};
      matmulF32(x);
    };
    if (d.gsDown) mm(d.gradOut, hs, d.gsDown, H, Is, a.N);
    if (d.gsGate) mm(dgs, a.x, d.gsGate, Is, H, a.N);
    if (d.gsUp) mm(dus, a.x, d.gsUp, Is, H, a.N);
  }
  std::vector<int32_t> pos(M);
  for (long p = 0; p < M; p++) pos[a.order[p]] = (int32_t)p;
  splitTokens(a.N, H * a.k, [&](long n0, long n1) {
    for (long n = n0; n < n1; n++) {
      float* o = d.gradX + n * H;
      if (!a.sGate) std::fill(o, o + H, 0.f);
      for (long j = 0; j < a.k; j++) rowsAxpy(o, nullptr, dxs + (long)pos[n * a.k + j] * H, nullptr, nullptr, 1, H);
    }
  });
}

}  // namespace frugal
