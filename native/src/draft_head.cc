// The speculative loop's draft head: an int8 copy of the MTP head (one scale per output row, the
// rows' code sums kept) multiplied by the draft row quantised to uint8 with AVX-512 VNNI
// (vpdpbusd: 64 multiply-adds an instruction, 4× fewer bytes than f32). A draft only proposes a
// token, which the main model then checks exactly, so its logits may be approximate: greedy
// output is unchanged; only the acceptance rate could move (measured unchanged on the default
// model, bench.md). Layout: 16 outputs × 4 inputs per 64-byte line, so a block of 16 outputs is one
// accumulator and needs no horizontal sum.
#include "decode_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "vecmath.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace dec {
namespace {
inline float bf16f(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Row j of m as f32.
void rowOf(const Mat& m, long j, float* out) {
  if (m.fmt == F32) { std::memcpy(out, (const float*)m.w + j * m.k, sizeof(float) * m.k); return; }
  if (m.fmt == BF16) { const uint16_t* r = (const uint16_t*)m.w + j * m.k; for (long p = 0; p < m.k; p++) out[p] = bf16f(r[p]); return; }
  const long nb = m.k / 32;
  const uint8_t* r = (const uint8_t*)m.w + j * nb * 34;
  for (long b = 0; b < nb; b++) {
    const float d = halfToF32((uint16_t)(r[b * 34] | (r[b * 34 + 1] << 8)));
    for (int i = 0; i < 32; i++) out[b * 32 + i] = d * (float)(int8_t)r[b * 34 + 2 + i];
  }
}

bool haveVnni() {
#if FRUGAL_HAVE_X86_KERNELS
  static const bool ok = [] { __builtin_cpu_init(); return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"); }();
  return ok && cpu().isa == Isa::Avx512;
#else
  return false;
#endif
}

#if FRUGAL_HAVE_X86_KERNELS
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void blocksVnni(const DraftHead& h, const uint8_t* xq, float sx, float* y, long b0, long b1) {
  const long k4 = h.k / 4;
  const __m512i off = _mm512_set1_epi32(128);
  for (long b = b0; b < b1; b++) {
    const int8_t* W = h.w.data() + b * k4 * 64;
    __m512i acc = _mm512_setzero_si512();
    for (long p = 0; p < k4; p++) {
      int32_t xb;
      std::memcpy(&xb, xq + 4 * p, 4);
      acc = _mm512_dpbusd_epi32(acc, _mm512_set1_epi32(xb), _mm512_loadu_si512((const void*)(W + p * 64)));
    }
    // Σ (x_p + 128)·w_p − 128·Σ w_p = Σ x_p·w_p (x, w the signed codes).
    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(off, _mm512_loadu_si512((const void*)(h.sum.data() + b * 16))));
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(_mm512_set1_ps(sx), _mm512_loadu_ps(h.scale.data() + b * 16)));
    const long left = h.n - b * 16;
    _mm512_mask_storeu_ps(y + b * 16, left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1), v);
  }
}
#endif
}  // namespace

bool DraftHead::build(const Mat& m) {
  if (!haveVnni() || m.k % 4 != 0 || m.n < 1) return false;
  n = m.n;
  k = m.k;
  const long blocks = (n + 15) / 16, k4 = k / 4;
  w.assign((size_t)(blocks * k4 * 64), 0);
  scale.assign((size_t)(blocks * 16), 0.f);
  sum.assign((size_t)(blocks * 16), 0);
  std::vector<float> row((size_t)k);
  for (long j = 0; j < n; j++) {
    rowOf(m, j, row.data());
    float amax = 0.f;
    for (long p = 0; p < k; p++) amax = std::max(amax, std::fabs(row[p]));
    const float s = amax > 0.f ? amax / 127.f : 0.f;
    scale[j] = s;
    int32_t total = 0;
    for (long p = 0; p < k; p++) {
      const int q = s > 0.f ? (int)std::lrint(row[p] / s) : 0;
      const int8_t c = (int8_t)std::max(-127, std::min(127, q));
      w[(size_t)(((j / 16) * k4 + p / 4) * 64 + (j % 16) * 4 + p % 4)] = c;
      total += c;
    }
    sum[j] = total;
  }
  return true;
}

void DraftHead::logits(const float* x, uint8_t* xq, float* y, long j0, long j1) const {
  float amax = 0.f;
  for (long p = 0; p < k; p++) amax = std::max(amax, std::fabs(x[p]));
  const float sx = amax > 0.f ? amax / 127.f : 0.f;
  for (long p = 0; p < k; p++) xq[p] = (uint8_t)(128 + (sx > 0.f ? std::max(-127L, std::min(127L, std::lrint(x[p] / sx))) : 0L));
#if FRUGAL_HAVE_X86_KERNELS
  blocksVnni(*this, xq, sx, y, j0 / 16, (j1 + 15) / 16);
#else
  (void)y; (void)j0; (void)j1;
#endif
}

}  // namespace dec
}  // namespace frugal
