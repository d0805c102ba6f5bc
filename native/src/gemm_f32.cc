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
// In-register transpose of a 16x16 block: r[i] holds row i on entry, column i on return.
FRUGAL_AVX512 static inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; g++) {  // r[4g + c]: column c (+4 per 128-bit lane) of rows 4g..4g+3
    r[4 * g] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int c = 0; c < 4; c++) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
  for (int c = 0; c < 4; c++) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}

// dst[p*ldd + i] = src_i[p] for rows i < rows (row stride lds; rows ..15 read as zero), p < kc,
// storing `lanes` (mask) of each transposed row: 16x16 register transposes instead of gathers or
// strided scalar stores (the packing of GEMM operands that sit the wrong way round).
FRUGAL_AVX512 static void packTransposed(const float* src, long lds, int rows, long kc, float* dst, long ldd, __mmask16 lanes) {
  __m512 r[16];
  for (long p0 = 0; p0 < kc; p0 += 16) {
    const int w = (int)std::min<long>(16, kc - p0);
    const __mmask16 mk = w == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << w) - 1);
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(mk, src + i * lds + p0) : _mm512_setzero_ps();
    transpose16(r);
    for (int q = 0; q < w; q++) _mm512_mask_storeu_ps(dst + (p0 + q) * ldd, lanes, r[q]);
  }
}

// Packs rows [0, mr) x cols [0, kc) of a row-major A (row stride lda) as dst[p*14 + i], zero rows
// mr..13.
FRUGAL_AVX512 static void packA14(const float* a, long lda, int mr, long kc, float* dst) {
  packTransposed(a, lda, mr, kc, dst, 14, (__mmask16)0x3FFF);
}
// The same from a column-major A (element (i, p) at a[p*lda + i]): one masked copy per p.
FRUGAL_AVX512 static void packA14T(const float* a, long lda, int mr, long kc, float* dst) {
  const __mmask16 mk = (__mmask16)((1u << mr) - 1);
  for (long p = 0; p < kc; p++) _mm512_mask_storeu_ps(dst + p * 14, 0x3FFF, _mm512_maskz_loadu_ps(mk, a + p * lda));
}
// Packs columns [0, nc) of a B stored transposed (element (p, j) at b[j*ldb + p]) into 32-wide
// panels dst[jr*kc + p*32 + j], zero columns past nc.
FRUGAL_AVX512 static void packB32T(const float* b, long ldb, long nc, long kc, float* dst) {
  for (long jr = 0; jr < nc; jr += 32)
    for (int h = 0; h < 2; h++) {
      const int rows = (int)std::max<long>(0, std::min<long>(16, nc - jr - 16 * h));
      packTransposed(b + (jr + 16 * h) * ldb, ldb, rows, kc, dst + jr * kc + 16 * h, 32, (__mmask16)0xFFFF);
    }
}

#endif

template <int MR>
static void packA(const float* a, bool trans, long m, long k, long ic, long mc, long pc, long kc, float* Ap) {
  for (long ir = 0; ir < mc; ir += MR) {
    const int mr = (int)std::min<long>(MR, mc - ir);
    float* dst = Ap + ir * kc;
#if FRUGAL_HAVE_X86_KERNELS
    if (MR == 14 && cpu().isa == Isa::Avx512) {
      if (!trans) packA14(a + (ic + ir) * k + pc, k, mr, kc, dst);
      else packA14T(a + pc * m + ic + ir, m, mr, kc, dst);
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
#if FRUGAL_HAVE_X86_KERNELS
  if (NR == 32 && cpu().isa == Isa::Avx512) return packB32T(b + jc * k + pc, k, nc, kc, Bp);
#endif
  for (long jr = 0; jr < nc; jr += NR) {
    const int nr = (int)std::min<long>(NR, nc - jr);
    float* dst = Bp + jr * kc;
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
