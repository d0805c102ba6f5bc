// Shared declarations of the Frugal native kernels: CPU feature detection, the thread pool, and
// the kernel entry points called by addon.cc. All arrays are row-major; sizes are element counts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace frugal {

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FRUGAL_X86 1
#else
#define FRUGAL_X86 0
#endif

#if FRUGAL_X86 && (defined(__GNUC__) || defined(__clang__))
#define FRUGAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define FRUGAL_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,fma")))
#define FRUGAL_AVX2 __attribute__((target("avx2,fma")))
#define FRUGAL_HAVE_X86_KERNELS 1
#else
#define FRUGAL_HAVE_X86_KERNELS 0
#endif

/** Kernel family used for a kernel class. */
enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };

/** CPU features detected at load time (and the family cap set by FRUGAL_NATIVE_ISA). */
struct Cpu {
  bool avx2 = false, fma = false, avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false, avx512bf16 = false;
  Isa isa = Isa::Portable;  // f32 kernel family that runs
  bool bf16 = false;        // AVX-512 BF16 dot products available (bf16/fp8 GEMM family)
};
const Cpu& cpu();
/** Caps the dispatched family ("portable", "avx2", "avx512"); returns false for an unknown name. */
bool capIsa(const std::string& name);
const char* isaName(Isa isa);

/** Persistent worker pool; the calling thread runs share 0. */
void poolSetThreads(int n);
int poolThreads();
/** Runs fn(tid) for tid in [0, n) (n <= poolThreads()), returning when all are done. */
void poolRun(int n, const std::function<void(int)>& fn);
/** Runs fn(chunk, tid) for chunk in [0, count) on the caller and any workers that join in time
 *  (dynamic: a late or descheduled worker never delays the caller). tid < poolThreads(). */
void poolRunChunks(long count, const std::function<void(long, int)>& fn);
/**
 * Runs fn(tid) for tid in [0, n) on n threads at once (a team whose members may wait for one
 * another), returning when all are done; false, running nothing, when n threads cannot run
 * concurrently now (fewer threads, another caller owns the pool, or the oversubscription guard is
 * on). fn must not call the pool.
 */
bool poolTeam(int n, const std::function<void(int)>& fn);
/** Feeds a team job's outcome to the oversubscription guard: stalled = a member waited > 1 ms on a
 *  preempted one. */
void poolNoteTeamStall(bool stalled);

/** Batched f32 GEMM, C[b] = op(A[b])·op(B[b]) (+C[b]); see registry.ts MatMulArgs. */
struct MatMulArgs {
  const float* a; const float* b; float* c;
  long batch, m, n, k;
  bool transA, transB;
  long strideA, strideB, strideC;
  bool accumulate;
};
void matmulF32(const MatMulArgs& x);
/** Most rows the few-row product kernels (gemv.cc) take; more rows go to the packed GEMM. */
constexpr long kGemvMaxRows = 8;
/** True when gemvF32 computes x: one row, one column, or at most kGemvMaxRows rows of a non-transposed A. */
bool gemvF32Handles(const MatMulArgs& x);
/** x on the matrix-vector kernels, up to maxT threads; row i is bit-identical to row i alone. */
void gemvF32(const MatMulArgs& x, int maxT);
/** The same on the calling thread only (for use inside pool tasks). */
void matmulF32Serial(const MatMulArgs& x);

/** Operand of the BF16/FP8 GEMM: bf16 bits (u16) or FP8 codes (u8) with a format. */
struct LowpOperand {
  const uint16_t* bf16 = nullptr;  // set for bf16 operands
  const uint8_t* fp8 = nullptr;    // set for fp8 operands
  bool e5m2 = false;               // fp8 format (default e4m3)
  const float* scales = nullptr;   // fp8 only: A [M, KB] tiles, B [ceil(N/128), KB] blocks
};
/** C[M,N] (+)= A[M,K] · B[N,K]^T with bf16 products and f32 accumulation; FP8 scales per 128-K block. */
void gemmLowp(const LowpOperand& a, const LowpOperand& b, float* c, long m, long n, long k, bool accumulate);
/** Which family the low-precision GEMM uses ("avx512bf16" or "portable"). */
const char* lowpFamily();

void rmsnorm(const float* x, const float* w, float* out, long rows, long cols, float eps, float* rstd);
void softmax(const float* x, float* out, long rows, long cols);
void siluMul(const float* g, const float* u, float* out, long n);
/** SiluMul backward over n elements: gu = go·g·σ(g), gg = go·u·σ(g)·(1 + g·(1 − σ(g))). */
void siluMulBackward(const float* g, const float* u, const float* go, float* gg, float* gu, long n);
// gi[r,j] = scale * p[r,j] * (go[r,j] - sum_k p[r,k] go[r,k]); gi may alias go.
void softmaxBackward(const float* p, const float* go, float* gi, long rows, long cols, float scale);
/** RMSNorm backward from the forward's rstd: gx overwritten, gw accumulated (+=); either may be null. */
void rmsnormBackward(const float* x, const float* w, const float* rstd, const float* go, float* gx, float* gw, long rows, long cols);

/** AdamW constants for one parameter (see src/train/optim.ts): w = w·decay − stepSize·m'/(√v'·invBc2Sqrt + eps). */
struct AdamWHyper {
  float beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps, stepSize, decay, invBc2Sqrt;
};
/** In-place AdamW update of n parameters with their gradient and f32 moments. */
void adamw(float* w, const float* g, float* m, float* v, long n, const AdamWHyper& h);
/** Σ x² (float lanes in blocks, summed in double). */
double sumSquares(const float* x, long n);
/** y[m,n] = x[m,k] · W[n,k]^T with W as bf16 bit patterns widened exactly to f32 (f32 x, f32 sums);
 *  for decode (small m): the matrix is read once per kGemvMaxRows rows of x, and row i is
 *  bit-identical to row i alone. */
void gemvBf16(const float* x, const uint16_t* w, float* y, long m, long n, long k);
/** dst[dr_i·D ..] += s_i · src[sr_i·D ..] over i < count; rows/scales default to i / 1 (null). */
void rowsAxpy(float* dst, const int32_t* dr, const float* src, const int32_t* sr, const float* sc, long count, long D);
/** dst[i] += src[i]. */
void addInto(float* dst, const float* src, long n);

/** Causal attention geometry over strided Q/K/V (see attention.cc for the layout). */
struct AttnArgs {
  const float* q; const float* k; const float* v; float* out;
  long B, T, S, H, KH, Dk, Dv, ldk, ldv;
  float scale;
};
void attentionForward(const AttnArgs& a);
/** Adds the gradients into gq [like q], gk [like k], gv [like v] (gk and gv may be one array). */
void attentionBackward(const AttnArgs& a, const float* go, float* gq, float* gk, float* gv);

/** Aligned scratch buffer owned by the calling thread (grows, never shrinks). slot selects one of 4. */
void* threadScratch(int slot, size_t bytes);

}  // namespace frugal
