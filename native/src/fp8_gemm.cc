// The scaled FP8 GEMM of the DeepSeek-V3 training recipe, reading E4M3 codes and fp32 scales:
// C[M,N] (+)= sum over 128-wide K blocks kb of sa(m,kb)*sb(kb,n)*sum_{k in kb} A(m,k)*B(k,n).
// A is [M,K] (Fprop, Dgrad) or [K,M] (Wgrad, tiles along tokens); B is always [K,N]. Operands
// are decoded exactly to BF16 while packing (vectorised: shifts, a 7-entry subnormal table) and
// multiplied with AVX-512 BF16 dot products (vdpbf16ps, FP32 accumulation) in a 14x32 tile; the
// partial sum of each K block is scaled per row (sa) and per column (sb) and added into C: the
// report's promotion to FP32 every 128 of K. No f32 copy of an operand is made. Without
// avx512_bf16 the operands are dequantised to f32 (scales folded in) and the f32 GEMM runs.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "fp8.h"
#include "fp8_simd.h"

namespace frugal {
namespace {

constexpr int MR = 14, NR = 32;
constexpr long BK = 128;           // promotion block along K
constexpr long KC = 512;           // K chunk packed at a time (multiple of BK)
constexpr long KCP = KC / 2;       // pairs per chunk (row stride of a packed row-major A panel)
constexpr long KBL = KC / BK;      // promotion blocks per chunk
constexpr long MC = 8 * MR;        // rows per packed A panel
constexpr long NU = 128;           // columns per work unit

// Scale accessors (see Fp8GemmArgs).
inline float saAt(const Fp8GemmArgs& g, long kb, long m) { return g.sa[kb * g.saKb + m * g.saRow]; }
inline float sbAt(const Fp8GemmArgs& g, long kb, long n) { return g.sb[kb * g.sbKb + (n / g.sbDiv) * g.sbCol]; }

#if FRUGAL_HAVE_X86_KERNELS
using namespace fp8;

// Micro-kernel: R rows x 32 columns over np pairs of one K chunk, in promotion blocks of 64 pairs.
// A pair q of row i is at A[q*AQ + i*AI]; B pairs are [q][32]; sb is [KBL][32]; sa is [R][KBL].
// C is overwritten by the first block when `fresh`, else added to.
// ACC: 0 = fp32 accumulation; 1 = partial sums truncated to 14 significant bits after every
// instruction (two products), promoted in fp32; 2 = also the promoted sum kept at 14 bits.
template <int R, long AQ, long AI, int ACC>
FRUGAL_AVX512BF16 static void micro(int nr, long np, const uint32_t* A, const uint32_t* B, const float* sb, const float* sa,
                                    float* C, long ldc, bool fresh) {
  const __m512 trunc14 = _mm512_castsi512_ps(_mm512_set1_epi32((int)0xFFFFFC00u));
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
  for (long q0 = 0, blk = 0; q0 < np; q0 += BK / 2, blk++) {
    const long q1 = std::min(np, q0 + BK / 2);
    __m512 c0[R], c1[R];
    for (int i = 0; i < R; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
    for (long q = q0; q < q1; q++) {
      const __m512bh b0 = (__m512bh)_mm512_load_si512((const void*)(B + q * NR));
      const __m512bh b1 = (__m512bh)_mm512_load_si512((const void*)(B + q * NR + 16));
      for (int i = 0; i < R; i++) {
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[q * AQ + i * AI]);
        c0[i] = _mm512_dpbf16_ps(c0[i], a, b0);
        c1[i] = _mm512_dpbf16_ps(c1[i], a, b1);
        if (ACC) { c0[i] = _mm512_and_ps(c0[i], trunc14); c1[i] = _mm512_and_ps(c1[i], trunc14); }
      }
    }
    const __m512 s0 = _mm512_load_ps(sb + blk * NR), s1 = _mm512_load_ps(sb + blk * NR + 16);
    const bool old = !(fresh && blk == 0);
    if (ACC == 2) {  // no promotion: the scaled block sum joins the 14-bit accumulator
      for (int i = 0; i < R; i++) {
        float* r = C + i * ldc;
        const __m512 si = _mm512_set1_ps(sa[i * KBL + blk]);
        const __m512 v0 = old ? _mm512_maskz_loadu_ps(m0, r) : _mm512_setzero_ps();
        const __m512 v1 = old ? _mm512_maskz_loadu_ps(m1, r + 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(r, m0, _mm512_and_ps(_mm512_fmadd_ps(c0[i], _mm512_mul_ps(s0, si), v0), trunc14));
        _mm512_mask_storeu_ps(r + 16, m1, _mm512_and_ps(_mm512_fmadd_ps(c1[i], _mm512_mul_ps(s1, si), v1), trunc14));
      }
      continue;
    }
    if (nr == NR) {  // full tile: plain loads and stores (masked stores are slow on some cores)
      for (int i = 0; i < R; i++) {
        float* r = C + i * ldc;
        const __m512 si = _mm512_set1_ps(sa[i * KBL + blk]);
        const __m512 v0 = old ? _mm512_loadu_ps(r) : _mm512_setzero_ps();
        const __m512 v1 = old ? _mm512_loadu_ps(r + 16) : _mm512_setzero_ps();
        _mm512_storeu_ps(r, _mm512_fmadd_ps(c0[i], _mm512_mul_ps(s0, si), v0));
        _mm512_storeu_ps(r + 16, _mm512_fmadd_ps(c1[i], _mm512_mul_ps(s1, si), v1));
      }
      continue;
    }
    for (int i = 0; i < R; i++) {
      float* r = C + i * ldc;
      const __m512 si = _mm512_set1_ps(sa[i * KBL + blk]);
      const __m512 v0 = old ? _mm512_maskz_loadu_ps(m0, r) : _mm512_setzero_ps();
      const __m512 v1 = old ? _mm512_maskz_loadu_ps(m1, r + 16) : _mm512_setzero_ps();
      _mm512_mask_storeu_ps(r, m0, _mm512_fmadd_ps(c0[i], _mm512_mul_ps(s0, si), v0));
      _mm512_mask_storeu_ps(r + 16, m1, _mm512_fmadd_ps(c1[i], _mm512_mul_ps(s1, si), v1));
    }
  }
}
using MicroFn = void (*)(int, long, const uint32_t*, const uint32_t*, const float*, const float*, float*, long, bool);
template <long AQ, long AI, int ACC, int... Rs>
constexpr std::array<MicroFn, 15> microTable(std::integer_sequence<int, Rs...>) { return {{nullptr, &micro<Rs + 1, AQ, AI, ACC>...}}; }
// Row-major A panels ([i][KCP] pairs) and pair-major ones ([q][MR]), per accumulator mode.
static const std::array<MicroFn, 15> kRowMajor[3] = {microTable<1, KCP, 0>(std::make_integer_sequence<int, 14>{}),
                                                      microTable<1, KCP, 1>(std::make_integer_sequence<int, 14>{}),
                                                      microTable<1, KCP, 2>(std::make_integer_sequence<int, 14>{})};
static const std::array<MicroFn, 15> kPairMajor[3] = {microTable<MR, 1, 0>(std::make_integer_sequence<int, 14>{}),
                                                       microTable<MR, 1, 1>(std::make_integer_sequence<int, 14>{}),
                                                       microTable<MR, 1, 2>(std::make_integer_sequence<int, 14>{})};

// Interleaves two rows of 32 decoded words into pairs (row0[j] | row1[j] << 16): columns 0-15, 16-31.
FRUGAL_AVX512BF16 static inline __m256i load32B(const uint8_t* p, __mmask32 mk) {
  return mk == (__mmask32)0xFFFFFFFFu ? _mm256_loadu_si256((const __m256i*)p) : _mm256_maskz_loadu_epi8(mk, p);
}

FRUGAL_AVX512BF16 static inline void pairUp(__m512i d0, __m512i d1, __m512i& lo, __m512i& hi) {
  const __m512i il = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i ih = _mm512_set_epi16(63, 31, 62, 30, 61, 29, 60, 28, 59, 27, 58, 26, 57, 25, 56, 24, 55, 23, 54, 22, 53, 21, 52, 20, 51, 19, 50, 18, 49, 17, 48, 16);
  lo = _mm512_permutex2var_epi16(d0, il, d1);
  hi = _mm512_permutex2var_epi16(d0, ih, d1);
}

// B panel: columns [j0, j0+nc) of K rows [p0, p0+kc) -> per 32-column strip, [np][32] pairs,
// and the column scales of its promotion blocks, [KBL][32].
FRUGAL_AVX512BF16 static void packB(const Fp8GemmArgs& g, long p0, long kc, long j0, long nc, uint32_t* Bp, float* Sb) {
  const long np = (kc + 1) / 2, nblk = (kc + BK - 1) / BK;
  for (long js = 0; js < nc; js += NR) {
    const long nr = std::min<long>(NR, nc - js);
    const __mmask32 mk = tail32(nr);
    uint32_t* dst = Bp + js * np;
    const uint8_t* col = g.b + j0 + js;
    for (long q = 0; q < np; q++) {
      const long k0 = p0 + 2 * q;
      const __m512i d0 = dec32Bf16(load32B(col + k0 * g.n, mk));
      const __m512i d1 = 2 * q + 1 < kc ? dec32Bf16(load32B(col + (k0 + 1) * g.n, mk)) : _mm512_setzero_si512();
      __m512i lo, hi;
      pairUp(d0, d1, lo, hi);
      _mm512_store_si512((void*)(dst + q * NR), lo);
      _mm512_store_si512((void*)(dst + q * NR + 16), hi);
    }
    float* s = Sb + (js / NR) * KBL * NR;
    for (long b = 0; b < nblk; b++)
      for (int j = 0; j < NR; j++) s[b * NR + j] = j < nr ? sbAt(g, p0 / BK + b, j0 + js + j) : 0.f;
  }
}

// A panel, rows [i0, i0+mc) of K chunk [p0, p0+kc). Row-major A: rows of KCP pairs (decode only).
// Transposed A ([K,M]): per 14-row strip, [np][MR] pairs. Sa gets the row scales, [mc][KBL].
FRUGAL_AVX512BF16 static void packA(const Fp8GemmArgs& g, long p0, long kc, long i0, long mc, uint32_t* Ap, float* Sa) {
  const long np = (kc + 1) / 2, nblk = (kc + BK - 1) / BK;
  if (!g.aTrans) {
    for (long i = 0; i < mc; i++) {
      const uint8_t* src = g.a + (i0 + i) * g.k + p0;
      uint32_t* dst = Ap + i * KCP;
      for (long c = 0; c < kc; c += 64) {
        const __mmask64 mk = tail64(kc - c);
        const __m512i bytes = mk == ~(__mmask64)0 ? _mm512_loadu_si512((const void*)(src + c)) : _mm512_maskz_loadu_epi8(mk, src + c);
        _mm512_store_si512((void*)(dst + c / 2), dec32Bf16(_mm512_castsi512_si256(bytes)));
        _mm512_store_si512((void*)(dst + c / 2 + 16), dec32Bf16(_mm512_extracti64x4_epi64(bytes, 1)));
      }
    }
  } else {
    for (long is = 0; is < mc; is += MR) {
      const long mr = std::min<long>(MR, mc - is);
      const __mmask32 mk = tail32(mr);
      uint32_t* dst = Ap + is * np;
      const uint8_t* col = g.a + i0 + is;
      for (long q = 0; q < np; q++) {
        const long k0 = p0 + 2 * q;
        const __m512i d0 = dec32Bf16(load32B(col + k0 * g.m, mk));
        const __m512i d1 = 2 * q + 1 < kc ? dec32Bf16(load32B(col + (k0 + 1) * g.m, mk)) : _mm512_setzero_si512();
        __m512i lo, hi;
        pairUp(d0, d1, lo, hi);
        _mm512_storeu_si512((void*)(dst + q * MR), lo);  // 16 lanes: the 2 past MR are overwritten next (slack at the end)
      }
    }
  }
  for (long i = 0; i < mc; i++)
    for (long b = 0; b < KBL; b++) Sa[i * KBL + b] = b < nblk ? saAt(g, p0 / BK + b, i0 + i) : 0.f;
}

// One work unit: C rows [i0, i1) x columns [j0, j1).
FRUGAL_AVX512BF16 static void unitBf16(const Fp8GemmArgs& g, long i0, long i1, long j0, long j1) {
  uint32_t* Bp = (uint32_t*)threadScratch(2, sizeof(uint32_t) * KCP * NU);
  uint32_t* Ap = (uint32_t*)threadScratch(3, sizeof(uint32_t) * (KCP * MC + 16));
  alignas(64) float Sb[(NU / NR) * KBL * NR];
  alignas(64) float Sa[MC * KBL];
  const long nc = j1 - j0;
  for (long p0 = 0; p0 < g.k; p0 += KC) {
    const long kc = std::min(KC, g.k - p0), np = (kc + 1) / 2;
    const bool fresh = !g.accumulate && p0 == 0;
    packB(g, p0, kc, j0, nc, Bp, Sb);
    for (long ic = i0; ic < i1; ic += MC) {
      const long mc = std::min(MC, i1 - ic);
      packA(g, p0, kc, ic, mc, Ap, Sa);
      for (long js = 0; js < nc; js += NR) {
        const int nr = (int)std::min<long>(NR, nc - js);
        for (long is = 0; is < mc; is += MR) {
          const int mr = (int)std::min<long>(MR, mc - is);
          const uint32_t* a = g.aTrans ? Ap + is * np : Ap + is * KCP;
          const MicroFn fn = g.aTrans ? kPairMajor[g.accum][mr] : kRowMajor[g.accum][mr];
          fn(nr, np, a, Bp + js * np, Sb + (js / NR) * KBL * NR, Sa + is * KBL, g.c + (ic + is) * g.n + j0 + js, g.n, fresh);
        }
      }
    }
  }
}
#endif

// Fallback: dequantise both operands with their scales folded in, one f32 GEMM.
void viaF32(const Fp8GemmArgs& g) {
  std::vector<float> a((size_t)(g.m * g.k)), b((size_t)(g.k * g.n));
  for (long i = 0; i < g.m; i++)
    for (long p = 0; p < g.k; p++) {
      const long at = g.aTrans ? p * g.m + i : i * g.k + p;
      a[(size_t)at] = fp8::decodeE4M3(g.a[at]) * saAt(g, p / BK, i);
    }
  for (long p = 0; p < g.k; p++)
    for (long j = 0; j < g.n; j++) b[(size_t)(p * g.n + j)] = fp8::decodeE4M3(g.b[p * g.n + j]) * sbAt(g, p / BK, j);
  MatMulArgs x{a.data(), b.data(), g.c, 1, g.m, g.n, g.k, g.aTrans, false, 0, 0, 0, g.accumulate};
  matmulF32(x);
}

bool useBf16() {
#if FRUGAL_HAVE_X86_KERNELS
  return cpu().bf16 && cpu().isa == Isa::Avx512;
#else
  return false;
#endif
}

}  // namespace

const char* fp8Family() { return useBf16() ? "avx512bf16" : "portable"; }

void fp8ScaledGemm(const Fp8GemmArgs& g) {
  if (g.m <= 0 || g.n <= 0) return;
  if (g.k <= 0) { if (!g.accumulate) std::fill(g.c, g.c + g.m * g.n, 0.f); return; }
  if (!useBf16()) return viaF32(g);
#if FRUGAL_HAVE_X86_KERNELS
  // Units: column blocks of NU, split further by rows (multiples of MR) until there are about
  // two per thread; scheduled dynamically, so a descheduled thread never stalls the rest.
  // Below ~8M multiply-adds (~25 µs on one core with BF16 dot products) a second thread's wake-up
  // and sync cost more than it saves, most of all on a loaded machine: one unit per column block.
  const bool parallel = poolThreads() > 1 && g.m * g.n * g.k >= (1L << 23);
  const int T = parallel ? poolThreads() : 1;
  const long colBlocks = (g.n + NU - 1) / NU, rowStrips = (g.m + MR - 1) / MR;
  long rowGroups = 1;
  if (T > 1 && colBlocks < 2 * T) rowGroups = std::min(rowStrips, (2 * T + colBlocks - 1) / colBlocks);
  const long units = colBlocks * rowGroups;
  auto unit = [&](long u) {
    const long cb = u % colBlocks, rg = u / colBlocks;
    const long i0 = rowStrips * rg / rowGroups * MR, i1 = std::min(g.m, rowStrips * (rg + 1) / rowGroups * MR);
    if (i0 < i1) unitBf16(g, i0, i1, cb * NU, std::min(g.n, (cb + 1) * NU));
  };
  if (T <= 1 || units <= 1) { for (long u = 0; u < units; u++) unit(u); return; }
  poolRunChunks(units, [&](long u, int) { unit(u); });
#endif
}

}  // namespace frugal
