// Packed, register-blocked f32 GEMM (BLIS loop order: NC / KC / MC panels, MRxNR micro-kernel)
// in three families picked at run time: AVX-512 (14x32 tile, masked edges), AVX2+FMA (6x16) and
// portable C++ (4x16). All transpose cases are handled by packing; products of a few rows (M <= 8)
// or one column go to gemv.cc, which streams the matrix once (memory bound). Threads split batch,
// N or M into disjoint C blocks.
#include <algorithm>
#include <cstring>

#include "common.h"
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace {

using KernelFn = void (*)(int nr, long kc, const float* A, const float* B, float* C, long ldc, bool add);

// Adds/stores a full-width temporary tile into C (edge tiles of the families without masks).
static void storeTile(const float* tmp, int tmpld, int mr, int nr, float* C, long ldc, bool add) {
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) C[i * ldc + j] = add ? C[i * ldc + j] + tmp[i * tmpld + j] : tmp[i * tmpld + j];
}

// ---- portable: 4x16, plain loops (the compiler vectorizes with the baseline ISA) ----
struct Portable {
  static constexpr int MR = 4, NR = 16;
  static constexpr long KC = 256, MC = 128, NC = 2048;
  static void kernel(int mr, int nr, long kc, const float* A, const float* B, float* C, long ldc, bool add) {
    float acc[MR][NR] = {};
    for (long p = 0; p < kc; p++, A += MR, B += NR)
      for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] += A[i] * B[j];
    storeTile(&acc[0][0], NR, mr, nr, C, ldc, add);
  }
};

#if FRUGAL_HAVE_X86_KERNELS
// ---- AVX2 + FMA: 6x16 (12 accumulators) ----
template <int MR>
FRUGAL_AVX2 static void k256(long kc, const float* A, const float* B, float* C, long ldc, bool add) {
  __m256 c0[MR], c1[MR];
  for (int i = 0; i < MR; i++) { c0[i] = _mm256_setzero_ps(); c1[i] = _mm256_setzero_ps(); }
  for (long p = 0; p < kc; p++, A += 6, B += 16) {
    __m256 b0 = _mm256_load_ps(B), b1 = _mm256_load_ps(B + 8);
    for (int i = 0; i < MR; i++) {
      __m256 a = _mm256_broadcast_ss(A + i);
      c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
    }
  }
  for (int i = 0; i < MR; i++) {
    float* r = C + i * ldc;
    if (add) { c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(r)); c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(r + 8)); }
    _mm256_storeu_ps(r, c0[i]);
    _mm256_storeu_ps(r + 8, c1[i]);
  }
}
struct Avx2 {
  static constexpr int MR = 6, NR = 16;
  static constexpr long KC = 256, MC = 120, NC = 2048;
  static void kernel(int mr, int nr, long kc, const float* A, const float* B, float* C, long ldc, bool add) {
    using Fn = void (*)(long, const float*, const float*, float*, long, bool);
    static const Fn tab[7] = {nullptr, k256<1>, k256<2>, k256<3>, k256<4>, k256<5>, k256<6>};
    if (nr == NR) { tab[mr](kc, A, B, C, ldc, add); return; }
    alignas(32) float tmp[MR * NR];
    tab[mr](kc, A, B, tmp, NR, false);
    storeTile(tmp, NR, mr, nr, C, ldc, add);
  }
};

// ---- AVX-512: 14x32 (28 accumulators), masked column edges ----
template <int MR>
FRUGAL_AVX512 static void k512(int nr, long kc, const float* A, const float* B, float* C, long ldc, bool add) {
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) { c0[i] = _mm512_setzero_ps(); c1[i] = _mm512_setzero_ps(); }
  // The C tile's lines requested now, written after the products: their misses (wide C, rows a
  // power-of-two stride apart) overlap the FMAs instead of stalling the stores.
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) { _mm_prefetch((const char*)(C + i * ldc), _MM_HINT_T0); _mm_prefetch((const char*)(C + i * ldc + 16), _MM_HINT_T0); }
  for (long p = 0; p < kc; p++, A += 14, B += 32) {
    __m512 b0 = _mm512_load_ps(B), b1 = _mm512_load_ps(B + 16);
    _mm_prefetch((const char*)(B + 32 * 8), _MM_HINT_T0);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      __m512 a = _mm512_set1_ps(A[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
    }
  }
  __mmask16 m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? 0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    float* r = C + i * ldc;
    if (add) {
      c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, r));
      c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, r + 16));
    }
    _mm512_mask_storeu_ps(r, m0, c0[i]);
    _mm512_mask_storeu_ps(r + 16, m1, c1[i]);
  }
}
struct Avx512 {
  static constexpr int MR = 14, NR = 32;
  static constexpr long KC = 320, MC = 14 * 12, NC = 4096;
  static void kernel(int mr, int nr, long kc, const float* A, const float* B, float* C, long ldc, bool add) {
    static const KernelFn tab[15] = {nullptr, k512<1>, k512<2>, k512<3>, k512<4>, k512<5>, k512<6>, k512<7>,
                                     k512<8>, k512<9>, k512<10>, k512<11>, k512<12>, k512<13>, k512<14>};
    tab[mr](nr, kc, A, B, C, ldc, add);
  }
};

#endif

#if FRUGAL_HAVE_X86_KERNELS
// In-register transpose of 16 rows x 16 columns: r[i] holds row i on entry, r[j] column j on exit.
FRUGAL_AVX512 static inline void transpose16(__m512 r[16]) {
  __m512 t[16], u[16];
  for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]); t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]); }
  // u[4g + c]: column 4L + c of each 128-bit block L, rows 4g..4g+3.
  for (int g = 0; g < 4; g++) {
    const __m512 *lo = t + 4 * g, *hi = t + 4 * g + 2;
    u[4 * g + 0] = _mm512_shuffle_ps(lo[0], hi[0], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(lo[0], hi[0], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(lo[1], hi[1], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(lo[1], hi[1], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    const __m512 x0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), x1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(v0, x0, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(v0, x0, 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(v1, x1, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v1, x1, 0xDD);
  }
}

// Loads columns [p, p+16) of `rows` rows (row stride ld; rows..15 read as zero) and transposes
// them: r[j] = column p + j over the rows.
FRUGAL_AVX512 static inline void loadColumns16(const float* a, long ld, int rows, long p, __m512 r[16]) {
  for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_loadu_ps(a + i * ld + p) : _mm512_setzero_ps();
  transpose16(r);
}

// Packs rows [0, mr) x cols [0, kc) of a row-major A (row stride lda) as dst[p*14 + i], zero rows
// mr..13: 16 columns at a time through a register transpose, the tail one 16-lane gather per k.
FRUGAL_AVX512 static void packA14(const float* a, long lda, int mr, long kc, float* dst) {
  long p = 0;
  __m512 r[16];
  for (; p + 16 <= kc; p += 16) {
    loadColumns16(a, lda, mr, p, r);
    for (int j = 0; j < 16; j++) _mm512_mask_storeu_ps(dst + (p + j) * 14, 0x3FFF, r[j]);
  }
  if (p == kc) return;
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)lda));
  const __mmask16 mk = (__mmask16)((1u << mr) - 1);
  for (; p < kc; p++)
    _mm512_mask_storeu_ps(dst + p * 14, 0x3FFF, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, idx, a + p, 4));
}

// Packs a transposed B panel (rows [0, nr) of a row-major [n, k] matrix with row stride ldb,
// columns [0, kc)) as dst[p*32 + j], zero columns nr..31: two 16-row register transposes per
// 16 k values, scalar tail.
FRUGAL_AVX512 static void packBT32(const float* b, long ldb, int nr, long kc, float* dst) {
  long p = 0;
  __m512 r[16];
  for (; p + 16 <= kc; p += 16)
    for (int h = 0; h < 2; h++) {
      const int rows = std::max(0, std::min(16, nr - 16 * h));
      if (rows == 0) { for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + (p + j) * 32 + 16, _mm512_setzero_ps()); continue; }
      loadColumns16(b + 16 * h * ldb, ldb, rows, p, r);
      for (int j = 0; j < 16; j++) _mm512_storeu_ps(dst + (p + j) * 32 + 16 * h, r[j]);
    }
  for (; p < kc; p++)
    for (int j = 0; j < 32; j++) dst[p * 32 + j] = j < nr ? b[j * ldb + p] : 0.f;
}
#endif

template <int MR>
static void packA(const float* a, bool trans, long m, long k, long ic, long mc, long pc, long kc, float* Ap) {
  for (long ir = 0; ir < mc; ir += MR) {
    const int mr = (int)std::min<long>(MR, mc - ir);
    float* dst = Ap + ir * kc;
#if FRUGAL_HAVE_X86_KERNELS
    if (MR == 14 && !trans && k < (1L << 26) && cpu().isa == Isa::Avx512) {
      packA14(a + (ic + ir) * k + pc, k, mr, kc, dst);
      continue;
    }
#endif
    if (!trans) {
      for (int i = 0; i < mr; i++) {
        const float* src = a + (ic + ir + i) * k + pc;
        for (long p = 0; p < kc; p++) dst[p * MR + i] = src[p];
      }
    } else {
      for (long p = 0; p < kc; p++) {
        const float* src = a + (pc + p) * m + ic + ir;
        for (int i = 0; i < mr; i++) dst[p * MR + i] = src[i];
      }
    }
    for (int i = mr; i < MR; i++)
      for (long p = 0; p < kc; p++) dst[p * MR + i] = 0.f;
  }
}

template <int NR>
static void packB(const float* b, bool trans, long n, long k, long pc, long kc, long jc, long nc, float* Bp) {
  if (!trans) {
    // Row by row: each row of B is read contiguously across all panels (prefetch/TLB friendly).
    const long full = nc / NR * NR;
    for (long p = 0; p < kc; p++) {
      const float* src = b + (pc + p) * n + jc;
      for (long jr = 0; jr < full; jr += NR) {
        float* dst = Bp + jr * kc + p * NR;
        for (int j = 0; j < NR; j++) dst[j] = src[jr + j];
      }
      if (full < nc) {
        float* dst = Bp + full * kc + p * NR;
        const int nr = (int)(nc - full);
        for (int j = 0; j < nr; j++) dst[j] = src[full + j];
        for (int j = nr; j < NR; j++) dst[j] = 0.f;
      }
    }
    return;
  }
  for (long jr = 0; jr < nc; jr += NR) {
    const int nr = (int)std::min<long>(NR, nc - jr);
    float* dst = Bp + jr * kc;
#if FRUGAL_HAVE_X86_KERNELS
    if (NR == 32 && k < (1L << 26) && cpu().isa == Isa::Avx512) {
      packBT32(b + (jc + jr) * k + pc, k, nr, kc, dst);
      continue;
    }
#endif
    if (!trans) {
      for (long p = 0; p < kc; p++) {
        std::memcpy(dst + p * NR, b + (pc + p) * n + jc + jr, sizeof(float) * nr);
        for (int j = nr; j < NR; j++) dst[p * NR + j] = 0.f;
      }
    } else {
      for (int j = 0; j < nr; j++) {
        const float* src = b + (jc + jr + j) * k + pc;
        for (long p = 0; p < kc; p++) dst[p * NR + j] = src[p];
      }
      for (int j = nr; j < NR; j++)
        for (long p = 0; p < kc; p++) dst[p * NR + j] = 0.f;
    }
  }
}

template <class F>
static void gemmBlock(const MatMulArgs& x, const float* a, const float* b, float* c, long i0, long i1, long j0, long j1) {
  constexpr int MR = F::MR, NR = F::NR;
  const long m = x.m, n = x.n, k = x.k;
  if (k == 0) {
    if (!x.accumulate)
      for (long i = i0; i < i1; i++) std::fill(c + i * n + j0, c + i * n + j1, 0.f);
    return;
  }
  // K in equal blocks of at most KC (a multiple of 16): no short last block (K = 1024 runs as
  // 4 x 256, not 3 x 320 + 64, whose C reloads cost more than its products).
  const long kBlocks = (k + F::KC - 1) / F::KC;
  const long kcStep = std::min<long>(F::KC, ((k + kBlocks - 1) / kBlocks + 15) / 16 * 16);
  float* Bp = (float*)threadScratch(0, sizeof(float) * F::KC * ((F::NC + NR - 1) / NR * NR));
  float* Ap = (float*)threadScratch(1, sizeof(float) * F::KC * ((F::MC + MR - 1) / MR * MR));
  for (long jc = j0; jc < j1; jc += F::NC) {
    const long nc = std::min(F::NC, j1 - jc);
    for (long pc = 0; pc < k; pc += kcStep) {
      const long kc = std::min(kcStep, k - pc);
      packB<NR>(b, x.transB, n, k, pc, kc, jc, nc, Bp);
      const bool add = x.accumulate || pc > 0;
      for (long ic = i0; ic < i1; ic += F::MC) {
        const long mc = std::min(F::MC, i1 - ic);
        packA<MR>(a, x.transA, m, k, ic, mc, pc, kc, Ap);
        for (long jr = 0; jr < nc; jr += NR) {
          const int nr = (int)std::min<long>(NR, nc - jr);
          for (long ir = 0; ir < mc; ir += MR) {
            const int mr = (int)std::min<long>(MR, mc - ir);
            F::kernel(mr, nr, kc, Ap + ir * kc, Bp + jr * kc, c + (ic + ir) * n + jc + jr, n, add);
          }
        }
      }
    }
  }
}

template <class F>
static void matmulWith(const MatMulArgs& x, int maxT) {
  const long work = x.batch * x.m * x.n * x.k;
  // Below ~4M multiply-adds (~40 µs on one core) waking a sleeping worker costs more than it saves.
  int T = work < (1L << 22) ? 1 : std::min(maxT, poolThreads());
  // Whole batch entries per thread when they are independent and plentiful; else split N or M.
  const bool byBatch = T > 1 && x.strideC >= x.m * x.n && (x.batch % T == 0 || x.batch >= 4 * T);
  if (byBatch) {
    poolRunChunks(x.batch, [&](long bi, int) {
      gemmBlock<F>(x, x.a + bi * x.strideA, x.b + bi * x.strideB, x.c + bi * x.strideC, 0, x.m, 0, x.n);
    });
    return;
  }
  // Prefer splitting M: each thread then packs only its rows of A (the costlier packing) and all of B.
  const bool splitN = x.m < 4L * F::MR * T || x.n >= 8 * x.m;
  const long unit = splitN ? F::NR : F::MR;
  const long chunks = ((splitN ? x.n : x.m) + unit - 1) / unit;
  if (chunks < T) T = (int)std::max<long>(1, chunks);
  // Dynamic pieces (a few per thread): a descheduled worker never stalls the caller; more pieces
  // would repack the shared operand more often.
  const long pieces = T <= 1 ? 1 : std::min<long>(chunks, 3L * T);
  poolRunChunks(pieces, [&](long pc, int) {
    const long lim = splitN ? x.n : x.m;
    const long s0 = std::min(lim, chunks * pc / pieces * unit), s1 = std::min(lim, chunks * (pc + 1) / pieces * unit);
    if (s0 >= s1) return;
    for (long bi = 0; bi < x.batch; bi++) {
      const float* a = x.a + bi * x.strideA;
      const float* b = x.b + bi * x.strideB;
      float* c = x.c + bi * x.strideC;
      if (splitN) gemmBlock<F>(x, a, b, c, 0, x.m, s0, s1);
      else gemmBlock<F>(x, a, b, c, s0, s1, 0, x.n);
    }
  });
}

}  // namespace

static void matmulDispatch(const MatMulArgs& x, int maxT) {
  if (x.batch <= 0 || x.m <= 0 || x.n <= 0) return;
  if (gemvF32Handles(x)) return gemvF32(x, maxT);
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512) return matmulWith<Avx512>(x, maxT);
  if (cpu().isa == Isa::Avx2) return matmulWith<Avx2>(x, maxT);
#endif
  matmulWith<Portable>(x, maxT);
}

void matmulF32(const MatMulArgs& x) { matmulDispatch(x, 1 << 20); }

void matmulF32Serial(const MatMulArgs& x) { matmulDispatch(x, 1); }

}  // namespace frugal
