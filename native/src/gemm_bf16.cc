// BF16 and FP8 GEMM, C[M,N] (+)= A[M,K] · B[N,K]^T. Operands are decoded exactly to BF16 while
// packing (FP8 E4M3/E5M2 codes through a 256-entry table), packed as K pairs, and multiplied with
// AVX-512 BF16 dot products (vdpbf16ps: two products per lane, FP32 accumulation) in a 14x32 tile.
// FP8 scales follow DeepSeek-V3: the partial sum of each 128-wide K block is multiplied by
// aScale[m, kb] * bScale[n/128, kb] and added into C. Without avx512_bf16 the operands are
// dequantised to f32 (scales folded into the operands) and the f32 GEMM runs instead.
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

constexpr int MR = 14, NR = 32;
constexpr long BLK = 128;              // FP8 scale block along K (and along N for weights)
constexpr long KC = 512, MC = 14 * 8, NC = 2048;

struct Tables { uint16_t e4m3[256], e5m2[256]; float f4m3[256], f5m2[256]; };
static const Tables& tables() {
  static const Tables t = [] {
    Tables r;
    for (int c = 0; c < 256; c++) {
      const float sign = (c & 0x80) ? -1.f : 1.f;
      int e = (c >> 3) & 15, m = c & 7;
      float v4 = (e == 15 && m == 7) ? NAN : e == 0 ? std::ldexp((float)m, -9) : std::ldexp(8.f + m, e - 10);
      e = (c >> 2) & 31; m = c & 3;
      float v5 = e == 31 ? (m == 0 ? INFINITY : NAN) : e == 0 ? std::ldexp((float)m, -16) : std::ldexp(4.f + m, e - 17);
      r.f4m3[c] = sign * v4;
      r.f5m2[c] = sign * v5;
      uint32_t u;
      std::memcpy(&u, &r.f4m3[c], 4); r.e4m3[c] = (uint16_t)(u >> 16);
      std::memcpy(&u, &r.f5m2[c], 4); r.e5m2[c] = (uint16_t)(u >> 16);
    }
    return r;
  }();
  return t;
}

// One operand row (length k) decoded to bf16 bits on the fly.
struct RowReader {
  const LowpOperand& op;
  long k;
  const uint16_t* table;
  RowReader(const LowpOperand& o, long kk) : op(o), k(kk), table(o.e5m2 ? tables().e5m2 : tables().e4m3) {}
  // Writes pairs (k0..k0+2*np) of row r into dst[q*stride], zero beyond k.
  void pairs(long r, long k0, long np, uint32_t* dst, long stride) const {
    const long kend = std::min(k, k0 + 2 * np);
    long q = 0;
    if (op.bf16) {
      const uint16_t* s = op.bf16 + r * k;
      for (long p = k0; p + 1 < kend; p += 2, q++) dst[q * stride] = s[p] | ((uint32_t)s[p + 1] << 16);
      if (((kend - k0) & 1) != 0) { dst[q * stride] = s[kend - 1]; q++; }
    } else {
      const uint8_t* s = op.fp8 + r * k;
      for (long p = k0; p + 1 < kend; p += 2, q++) dst[q * stride] = table[s[p]] | ((uint32_t)table[s[p + 1]] << 16);
      if (((kend - k0) & 1) != 0) { dst[q * stride] = table[s[kend - 1]]; q++; }
    }
    for (; q < np; q++) dst[q * stride] = 0;
  }
};

#if FRUGAL_HAVE_X86_KERNELS
// Micro-kernel: MR rows x 32 columns over np pairs, in K blocks of blockPairs; after each block the
// partial sums are scaled per row (scales[b*14 + i], or 1) and added into C.
template <int R>
FRUGAL_AVX512BF16 static void kbf16(int nr, long np, const uint32_t* A, const uint32_t* B, float* C, long ldc, bool add,
                                    const float* scales, long blockPairs) {
  const __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
  for (long q0 = 0, blk = 0; q0 < np; q0 += blockPairs, blk++) {
    const long qn = std::min(blockPairs, np - q0);
    __m512 c0[R], c1[R];
    for (int i = 0; i < R; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long q = 0; q < qn; q++, A += MR, B += NR) {
      const __m512bh b0 = (__m512bh)_mm512_load_si512((const void*)B);
      const __m512bh b1 = (__m512bh)_mm512_load_si512((const void*)(B + 16));
      _mm_prefetch((const char*)(B + NR * 8), _MM_HINT_T0);
      for (int i = 0; i < R; i++) {
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[i]);
        c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
        c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
      }
    }
    const bool old = add || blk > 0;
    for (int i = 0; i < R; i++) {
      float* r = C + i * ldc;
      const __m512 s = _mm512_set1_ps(scales ? scales[blk * MR + i] : 1.f);
      __m512 v0 = old ? _mm512_maskz_loadu_ps(m0, r) : _mm512_setzero_ps();
      __m512 v1 = old ? _mm512_maskz_loadu_ps(m1, r + 16) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(r, m0, _mm512_fmadd_ps(c0[i], s, v0));
      _mm512_mask_storeu_ps(r + 16, m1, _mm512_fmadd_ps(c1[i], s, v1));
    }
  }
}
using KFn = void (*)(int, long, const uint32_t*, const uint32_t*, float*, long, bool, const float*, long);
static const KFn kTab[15] = {nullptr, kbf16<1>, kbf16<2>, kbf16<3>, kbf16<4>, kbf16<5>, kbf16<6>, kbf16<7>,
                             kbf16<8>, kbf16<9>, kbf16<10>, kbf16<11>, kbf16<12>, kbf16<13>, kbf16<14>};

// C rows [i0,i1), cols [j0,j1) (j0 a multiple of 128 so a 32-column tile shares one weight block).
static void blockBf16(const LowpOperand& a, const LowpOperand& b, float* c, long m, long n, long k, bool acc,
                      long i0, long i1, long j0, long j1) {
  (void)m;
  const bool scaled = a.fp8 != nullptr;
  const long KB = (k + BLK - 1) / BLK;
  RowReader ra(a, k), rb(b, k);
  uint32_t* Bp = (uint32_t*)threadScratch(2, sizeof(uint32_t) * (KC / 2) * NC);
  uint32_t* Ap = (uint32_t*)threadScratch(3, sizeof(uint32_t) * (KC / 2) * MC);
  alignas(64) float sc[(KC / BLK) * MR];
  for (long jc = j0; jc < j1; jc += NC) {
    const long nc = std::min(NC, j1 - jc);
    for (long pc = 0; pc < k; pc += KC) {
      const long kc = std::min(KC, k - pc), np = (kc + 1) / 2;
      for (long jr = 0; jr < nc; jr += NR) {
        const int nr = (int)std::min<long>(NR, nc - jr);
        uint32_t* dst = Bp + jr * np;
        for (int j = 0; j < nr; j++) rb.pairs(jc + jr + j, pc, np, dst + j, NR);
        for (int j = nr; j < NR; j++)
          for (long q = 0; q < np; q++) dst[q * NR + j] = 0;
      }
      const bool add = acc || pc > 0;
      for (long ic = i0; ic < i1; ic += MC) {
        const long mc = std::min(MC, i1 - ic);
        for (long ir = 0; ir < mc; ir += MR) {
          const int mr = (int)std::min<long>(MR, mc - ir);
          uint32_t* dst = Ap + ir * np;
          for (int i = 0; i < mr; i++) ra.pairs(ic + ir + i, pc, np, dst + i, MR);
          for (int i = mr; i < MR; i++)
            for (long q = 0; q < np; q++) dst[q * MR + i] = 0;
        }
        for (long jr = 0; jr < nc; jr += NR) {
          const int nr = (int)std::min<long>(NR, nc - jr);
          const long nb = (jc + jr) / BLK;
          for (long ir = 0; ir < mc; ir += MR) {
            const int mr = (int)std::min<long>(MR, mc - ir);
            if (scaled) {
              for (long blk = 0; blk * BLK < kc; blk++) {
                const long kb = pc / BLK + blk;
                for (int i = 0; i < mr; i++) sc[blk * MR + i] = a.scales[(ic + ir + i) * KB + kb] * b.scales[nb * KB + kb];
              }
            }
            kTab[mr](nr, np, Ap + ir * np, Bp + jr * np, c + (ic + ir) * n + jc + jr, n, add,
                     scaled ? sc : nullptr, scaled ? BLK / 2 : np);
          }
        }
      }
    }
  }
}
#endif

// Fallback: dequantise (or widen) both operands to f32 and run the f32 GEMM.
static void lowpViaF32(const LowpOperand& a, const LowpOperand& b, float* c, long m, long n, long k, bool acc) {
  const long KB = (k + BLK - 1) / BLK;
  auto widen = [&](const LowpOperand& op, long rows, bool isB) {
    std::vector<float> out((size_t)(rows * k));
    const float* t = op.e5m2 ? tables().f5m2 : tables().f4m3;
    for (long r = 0; r < rows; r++)
      for (long p = 0; p < k; p++) {
        float v;
        if (op.bf16) { uint32_t u = (uint32_t)op.bf16[r * k + p] << 16; std::memcpy(&v, &u, 4); }
        else v = t[op.fp8[r * k + p]] * op.scales[(isB ? r / BLK : r) * KB + p / BLK];
        out[(size_t)(r * k + p)] = v;
      }
    return out;
  };
  std::vector<float> af = widen(a, m, false), bf = widen(b, n, true);
  MatMulArgs x{af.data(), bf.data(), c, 1, m, n, k, false, true, 0, 0, 0, acc};
  matmulF32(x);
}

}  // namespace

const char* lowpFamily() { return cpu().bf16 ? "avx512bf16" : "f32-dequant"; }

void gemmLowp(const LowpOperand& a, const LowpOperand& b, float* c, long m, long n, long k, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { if (!accumulate) std::fill(c, c + m * n, 0.f); return; }
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().bf16) {
    int T = m * n * k < (1L << 17) ? 1 : poolThreads();
    const bool splitN = n >= m;
    const long unit = splitN ? BLK : MR;
    const long lim = splitN ? n : m, chunks = (lim + unit - 1) / unit;
    if (chunks < T) T = (int)std::max<long>(1, chunks);
    poolRun(T, [&](int tid) {
      const long s0 = std::min(lim, chunks * tid / T * unit), s1 = std::min(lim, chunks * (tid + 1) / T * unit);
      if (s0 >= s1) return;
      if (splitN) blockBf16(a, b, c, m, n, k, accumulate, 0, m, s0, s1);
      else blockBf16(a, b, c, m, n, k, accumulate, s0, s1, 0, n);
    });
    return;
  }
#endif
  lowpViaF32(a, b, c, m, n, k, accumulate);
}

}  // namespace frugal
