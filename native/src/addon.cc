// N-API entry points of frugal_native.node. Arguments are typed arrays used in place (zero-copy)
// plus plain numbers; every call validates types and extents and throws a TypeError/RangeError
// that names the argument, so bad input never reads or writes out of bounds.
#define NAPI_VERSION 8
#include <node_api.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "common.h"
#include "napi_args.h"

using namespace frugal;

namespace frugal {
// gemv_q8.cc
void gemvQ8(const float* x, const uint8_t* w, float* y, long m, long n, long k);
const char* q8Family();
}  // namespace frugal
namespace frugal {
// AdamW's hyperparameters from arguments at, at+1, ..., at+5: beta1, beta2, eps, stepSize, decay,
// invBc2Sqrt (adamw and adamwBf16 take them in this order).
AdamWHyper adamwHyperArgs(const napi::Args& g, size_t at) {
  AdamWHyper h;
  const double b1 = g.num(at, "beta1"), b2 = g.num(at + 1, "beta2");
  h.beta1 = (float)b1; h.oneMinusBeta1 = (float)(1.0 - b1);
  h.beta2 = (float)b2; h.oneMinusBeta2 = (float)(1.0 - b2);
  h.eps = (float)g.num(at + 2, "eps"); h.stepSize = (float)g.num(at + 3, "stepSize");
  h.decay = (float)g.num(at + 4, "decay"); h.invBc2Sqrt = (float)g.num(at + 5, "invBc2Sqrt");
  return h;
}
}  // namespace frugal
namespace frugal { void registerFp8Exports(napi_env env, napi_value exports); }  // fp8_addon.cc
namespace frugal { void registerTrainExports(napi_env env, napi_value exports); }  // train_addon.cc
namespace frugal { void registerDecodeExports(napi_env env, napi_value exports); }  // decode_addon.cc

namespace {

using napi::Args;
using napi::guard;
using napi::undef;

// matmul(a, b, c, batch, m, n, k, transA, transB, strideA, strideB, strideC, accumulate)
napi_value MatMul(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "matmul", 13);
    size_t la, lb, lc;
    MatMulArgs x;
    x.a = g.arr<float>(0, napi_float32_array, "a", &la);
    x.b = g.arr<float>(1, napi_float32_array, "b", &lb);
    x.c = g.arr<float>(2, napi_float32_array, "c", &lc);
    x.batch = g.count(3, "batch"); x.m = g.count(4, "m"); x.n = g.count(5, "n"); x.k = g.count(6, "k");
    x.transA = g.flag(7); x.transB = g.flag(8);
    x.strideA = g.count(9, "strideA"); x.strideB = g.count(10, "strideB"); x.strideC = g.count(11, "strideC");
    x.accumulate = g.flag(12);
    if (x.batch > 0) {
      g.need("a", la, (x.batch - 1) * x.strideA + x.m * x.k);
      g.need("b", lb, (x.batch - 1) * x.strideB + x.k * x.n);
      g.need("c", lc, (x.batch - 1) * x.strideC + x.m * x.n);
    }
    matmulF32(x);
    return undef(env);
  });
}

// rmsnorm(x, w, out, rows, cols, eps, rstd?)
napi_value RmsNorm(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "rmsnorm", 6);
    size_t lx, lw, lo, lr = 0;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    const float* w = g.arr<float>(1, napi_float32_array, "w", &lw);
    float* out = g.arr<float>(2, napi_float32_array, "out", &lo);
    long rows = g.count(3, "rows"), cols = g.count(4, "cols");
    float eps = (float)g.num(5, "eps");
    float* rstd = g.has(6) ? g.arr<float>(6, napi_float32_array, "rstd", &lr) : nullptr;
    g.need("x", lx, rows * cols); g.need("out", lo, rows * cols); g.need("w", lw, cols);
    if (rstd) g.need("rstd", lr, rows);
    rmsnorm(x, w, out, rows, cols, eps, rstd);
    return undef(env);
  });
}

// softmax(x, out, rows, cols)
napi_value Softmax(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "softmax", 4);
    size_t lx, lo;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    float* out = g.arr<float>(1, napi_float32_array, "out", &lo);
    long rows = g.count(2, "rows"), cols = g.count(3, "cols");
    g.need("x", lx, rows * cols); g.need("out", lo, rows * cols);
    softmax(x, out, rows, cols);
    return undef(env);
  });
}

// siluMul(g, u, out): out[i] = silu(g[i]) * u[i] for i < out.length
napi_value SiluMul(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "siluMul", 3);
    size_t lg, lu, lo;
    const float* gg = g.arr<float>(0, napi_float32_array, "g", &lg);
    const float* u = g.arr<float>(1, napi_float32_array, "u", &lu);
    float* out = g.arr<float>(2, napi_float32_array, "out", &lo);
    g.need("g", lg, (long)lo); g.need("u", lu, (long)lo);
    siluMul(gg, u, out, (long)lo);
    return undef(env);
  });
}

// softmaxBackward(p, gradOut, gradIn, rows, cols, scale): gradIn = scale * p * (gradOut - rowsum(p * gradOut))
napi_value SoftmaxBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "softmaxBackward", 6);
    size_t lp, lg, li;
    const float* pp = g.arr<float>(0, napi_float32_array, "p", &lp);
    const float* go = g.arr<float>(1, napi_float32_array, "gradOut", &lg);
    float* gi = g.arr<float>(2, napi_float32_array, "gradIn", &li);
    long rows = g.count(3, "rows"), cols = g.count(4, "cols");
    const double scale = g.num(5, "scale");
    g.need("p", lp, rows * cols); g.need("gradOut", lg, rows * cols); g.need("gradIn", li, rows * cols);
    softmaxBackward(pp, go, gi, rows, cols, (float)scale);
    return undef(env);
  });
}

// siluMulBackward(g, u, gradOut, gradG, gradU): over i < gradG.length
napi_value SiluMulBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "siluMulBackward", 5);
    size_t lg, lu, ld, lgg, lgu;
    const float* gg = g.arr<float>(0, napi_float32_array, "g", &lg);
    const float* u = g.arr<float>(1, napi_float32_array, "u", &lu);
    const float* go = g.arr<float>(2, napi_float32_array, "gradOut", &ld);
    float* gradG = g.arr<float>(3, napi_float32_array, "gradG", &lgg);
    float* gradU = g.arr<float>(4, napi_float32_array, "gradU", &lgu);
    const long n = (long)lgg;
    g.need("g", lg, n); g.need("u", lu, n); g.need("gradOut", ld, n); g.need("gradU", lgu, n);
    siluMulBackward(gg, u, go, gradG, gradU, n);
    return undef(env);
  });
}

// rmsnormBackward(x, w, rstd, gradOut, gradX | null, gradW | null, rows, cols); gradW accumulates
napi_value RmsNormBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "rmsnormBackward", 8);
    size_t lx, lw, lr, ld, lgx = 0, lgw = 0;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    const float* w = g.arr<float>(1, napi_float32_array, "w", &lw);
    const float* rstd = g.arr<float>(2, napi_float32_array, "rstd", &lr);
    const float* go = g.arr<float>(3, napi_float32_array, "gradOut", &ld);
    float* gx = g.has(4) ? g.arr<float>(4, napi_float32_array, "gradX", &lgx) : nullptr;
    float* gw = g.has(5) ? g.arr<float>(5, napi_float32_array, "gradW", &lgw) : nullptr;
    long rows = g.count(6, "rows"), cols = g.count(7, "cols");
    g.need("x", lx, rows * cols); g.need("gradOut", ld, rows * cols); g.need("w", lw, cols); g.need("rstd", lr, rows);
    if (gx) g.need("gradX", lgx, rows * cols);
    if (gw) g.need("gradW", lgw, cols);
    rmsnormBackward(x, w, rstd, go, gx, gw, rows, cols);
    return undef(env);
  });
}

// bf16Gemm(a: Uint16Array [M,K], b: Uint16Array [N,K], c: Float32Array [M,N], m, n, k, accumulate?)
napi_value Bf16Gemm(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "bf16Gemm", 6);
    size_t la, lb, lc;
    LowpOperand a, b;
    a.bf16 = g.arr<uint16_t>(0, napi_uint16_array, "a", &la);
    b.bf16 = g.arr<uint16_t>(1, napi_uint16_array, "b", &lb);
    float* c = g.arr<float>(2, napi_float32_array, "c", &lc);
    long m = g.count(3, "m"), n = g.count(4, "n"), k = g.count(5, "k");
    g.need("a", la, m * k); g.need("b", lb, n * k); g.need("c", lc, m * n);
    gemmLowp(a, b, c, m, n, k, g.flag(6));
    return undef(env);
  });
}

// fp8Gemm(aCodes, aScales, bCodes, bScales, c, m, n, k, aE5m2?, bE5m2?, accumulate?)
napi_value Fp8Gemm(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "fp8Gemm", 8);
    size_t la, lsa, lb, lsb, lc;
    LowpOperand a, b;
    a.fp8 = g.arr<uint8_t>(0, napi_uint8_array, "aCodes", &la);
    a.scales = g.arr<float>(1, napi_float32_array, "aScales", &lsa);
    b.fp8 = g.arr<uint8_t>(2, napi_uint8_array, "bCodes", &lb);
    b.scales = g.arr<float>(3, napi_float32_array, "bScales", &lsb);
    float* c = g.arr<float>(4, napi_float32_array, "c", &lc);
    long m = g.count(5, "m"), n = g.count(6, "n"), k = g.count(7, "k");
    a.e5m2 = g.flag(8); b.e5m2 = g.flag(9);
    const long kb = (k + 127) / 128;
    g.need("aCodes", la, m * k); g.need("bCodes", lb, n * k); g.need("c", lc, m * n);
    g.need("aScales (1x128 tiles, [M, ceil(K/128)])", lsa, m * kb);
    g.need("bScales (128x128 blocks, [ceil(N/128), ceil(K/128)])", lsb, ((n + 127) / 128) * kb);
    gemmLowp(a, b, c, m, n, k, g.flag(10));
    return undef(env);
  });
}

napi_value number(napi_env env, double d) { napi_value r; napi_create_double(env, d, &r); return r; }

// setThreads(n) -> threads now in use (1..256)
napi_value SetThreads(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "setThreads", 1);
    long t = g.count(0, "threads");
    if (t < 1 || t > 256) g.range("threads must be 1..256, got " + std::to_string(t));
    poolSetThreads((int)t);
    return number(env, poolThreads());
  });
}

// setIsa("portable" | "avx2" | "avx512" | "auto") -> kernel family now dispatched (for tests).
napi_value SetIsa(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "setIsa", 1);
    char buf[32] = {0};
    size_t len = 0;
    if (napi_get_value_string_utf8(env, g.v[0], buf, sizeof buf, &len) != napi_ok || !capIsa(buf))
      g.type("isa must be 'portable', 'avx2', 'avx512' or 'auto'");
    napi_value r;
    napi_create_string_utf8(env, isaName(cpu().isa), NAPI_AUTO_LENGTH, &r);
    return r;
  });
}

// Reads the shared geometry of attentionForward/attentionBackward from argument `i` on:
// B, T, S, H, KH, Dk, Dv, ldk, ldv, scale; checks it against the array lengths.
AttnArgs attnGeometry(Args& g, size_t i, size_t lq, size_t lk, size_t lv) {
  AttnArgs a{};
  a.B = g.count(i, "B"); a.T = g.count(i + 1, "T"); a.S = g.count(i + 2, "S"); a.H = g.count(i + 3, "H");
  a.KH = g.count(i + 4, "KH"); a.Dk = g.count(i + 5, "Dk"); a.Dv = g.count(i + 6, "Dv");
  a.ldk = g.count(i + 7, "ldk"); a.ldv = g.count(i + 8, "ldv"); a.scale = (float)g.num(i + 9, "scale");
  if (a.T > a.S) g.range("T (queries) must not exceed S (keys)");
  if (a.KH != 1 && a.KH != a.H) g.range("KH must be 1 or H");
  if (a.KH * a.Dk > a.ldk || a.KH * a.Dv > a.ldv) g.range("a K/V row (ldk/ldv) is shorter than KH heads");
  if (a.H > (1L << 20) || a.Dk > (1L << 20) || a.Dv > (1L << 20) || a.S > (1L << 30) || a.B > (1L << 30)) g.range("attention size out of range");
  g.need("q", lq, a.B * a.T * a.H * a.Dk); g.need("k", lk, a.B * a.S * a.ldk); g.need("v", lv, a.B * a.S * a.ldv);
  return a;
}

// attentionForward(q, k, v, out, B, T, S, H, KH, Dk, Dv, ldk, ldv, scale)
napi_value AttentionForward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "attentionForward", 14);
    size_t lq, lk, lv, lo;
    const float* q = g.arr<float>(0, napi_float32_array, "q", &lq);
    const float* k = g.arr<float>(1, napi_float32_array, "k", &lk);
    const float* v = g.arr<float>(2, napi_float32_array, "v", &lv);
    float* out = g.arr<float>(3, napi_float32_array, "out", &lo);
    AttnArgs a = attnGeometry(g, 4, lq, lk, lv);
    g.need("out", lo, a.B * a.T * a.H * a.Dv);
    a.q = q; a.k = k; a.v = v; a.out = out;
    attentionForward(a);
    return undef(env);
  });
}

// attentionBackward(q, k, v, gradOut, gradQ, gradK, gradV, B, T, S, H, KH, Dk, Dv, ldk, ldv, scale): adds into gradQ/K/V
napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "attentionBackward", 17);
    size_t lq, lk, lv, lgo, lgq, lgk, lgv;
    const float* q = g.arr<float>(0, napi_float32_array, "q", &lq);
    const float* k = g.arr<float>(1, napi_float32_array, "k", &lk);
    const float* v = g.arr<float>(2, napi_float32_array, "v", &lv);
    const float* go = g.arr<float>(3, napi_float32_array, "gradOut", &lgo);
    float* gq = g.arr<float>(4, napi_float32_array, "gradQ", &lgq);
    float* gk = g.arr<float>(5, napi_float32_array, "gradK", &lgk);
    float* gv = g.arr<float>(6, napi_float32_array, "gradV", &lgv);
    AttnArgs a = attnGeometry(g, 7, lq, lk, lv);
    g.need("gradOut", lgo, a.B * a.T * a.H * a.Dv); g.need("gradQ", lgq, (long)lq);
    g.need("gradK", lgk, a.B * a.S * a.ldk); g.need("gradV", lgv, a.B * a.S * a.ldv);
    a.q = q; a.k = k; a.v = v; a.out = nullptr;
    attentionBackward(a, go, gq, gk, gv);
    return undef(env);
  });
}

// gemvBf16(x, w, y, m, n, k): y[m,n] = x[m,k] · W[n,k]^T, W bf16 bits (Uint16Array)
napi_value GemvBf16(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "gemvBf16", 6);
    size_t lx, lw, ly;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    const uint16_t* w = g.arr<uint16_t>(1, napi_uint16_array, "w", &lw);
    float* y = g.arr<float>(2, napi_float32_array, "y", &ly);
    const long m = g.count(3, "m"), n = g.count(4, "n"), k = g.count(5, "k");
    if (m > (1L << 20) || n > (1L << 30) || k > (1L << 30)) g.range("size out of range");
    g.need("x", lx, m * k); g.need("w", lw, n * k); g.need("y", ly, m * n);
    gemvBf16(x, w, y, m, n, k);
    return undef(env);
  });
}

// gemvQ8(x, w, y, m, n, k): y[m,n] = x[m,k] · W[n,k]^T, W as ggml Q8_0 blocks (Uint8Array, 34 bytes
// per 32 weights, n rows of k/32 blocks); x quantised to Q8_0 per row (gemv_q8.cc).
napi_value GemvQ8(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "gemvQ8", 6);
    size_t lx, lw, ly;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    const uint8_t* w = g.arr<uint8_t>(1, napi_uint8_array, "w", &lw);
    float* y = g.arr<float>(2, napi_float32_array, "y", &ly);
    const long m = g.count(3, "m"), n = g.count(4, "n"), k = g.count(5, "k");
    if (m > (1L << 20) || n > (1L << 30) || k > (1L << 30)) g.range("size out of range");
    if (k % 32 != 0) g.range("k must be a multiple of 32 (Q8_0 blocks), got " + std::to_string(k));
    g.need("x", lx, m * k); g.need("w", lw, n * (k / 32) * 34); g.need("y", ly, m * n);
    gemvQ8(x, w, y, m, n, k);
    return undef(env);
  });
}

// rowsAxpy(dst, dstRows|null, src, srcRows|null, scales|null, count, D):
// dst[row d_i] += s_i · src[row s_i'] for i < count (rows default to i, scales to 1).
napi_value RowsAxpy(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "rowsAxpy", 7);
    size_t ld, ls, ldr = 0, lsr = 0, lsc = 0;
    float* dst = g.arr<float>(0, napi_float32_array, "dst", &ld);
    const int32_t* dr = g.has(1) ? g.arr<int32_t>(1, napi_int32_array, "dstRows", &ldr) : nullptr;
    const float* src = g.arr<float>(2, napi_float32_array, "src", &ls);
    const int32_t* sr = g.has(3) ? g.arr<int32_t>(3, napi_int32_array, "srcRows", &lsr) : nullptr;
    const float* sc = g.has(4) ? g.arr<float>(4, napi_float32_array, "scales", &lsc) : nullptr;
    const long count = g.count(5, "count"), D = g.count(6, "D");
    if (D == 0 || count == 0) return undef(env);
    if (dr) g.need("dstRows", ldr, count);
    if (sr) g.need("srcRows", lsr, count);
    if (sc) g.need("scales", lsc, count);
    const long dRowsN = (long)ld / D, sRowsN = (long)ls / D;
    for (long i = 0; i < count; i++) {
      const long a = dr ? dr[i] : i, b = sr ? sr[i] : i;
      if (a < 0 || a >= dRowsN) g.range("dst row " + std::to_string(a) + " out of range [0, " + std::to_string(dRowsN) + ")");
      if (b < 0 || b >= sRowsN) g.range("src row " + std::to_string(b) + " out of range [0, " + std::to_string(sRowsN) + ")");
    }
    rowsAxpy(dst, dr, src, sr, sc, count, D);
    return undef(env);
  });
}

// adamw(w, g, m, v, beta1, beta2, eps, stepSize, decay, invBc2Sqrt): in place over w, m, v.
napi_value AdamW(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "adamw", 10);
    size_t lw, lg, lm, lv;
    float* w = g.arr<float>(0, napi_float32_array, "w", &lw);
    const float* gr = g.arr<float>(1, napi_float32_array, "g", &lg);
    float* m = g.arr<float>(2, napi_float32_array, "m", &lm);
    float* v = g.arr<float>(3, napi_float32_array, "v", &lv);
    g.need("g", lg, (long)lw); g.need("m", lm, (long)lw); g.need("v", lv, (long)lw);
    const AdamWHyper h = adamwHyperArgs(g, 4);
    adamw(w, gr, m, v, (long)lw, h);
    return undef(env);
  });
}

// sumSquares(x) -> number
napi_value SumSquares(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "sumSquares", 1);
    size_t lx;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    return number(env, sumSquares(x, (long)lx));
  });
}

// addInto(dst, src): dst += src (equal lengths)
napi_value AddInto(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "addInto", 2);
    size_t ld, ls;
    float* d = g.arr<float>(0, napi_float32_array, "dst", &ld);
    const float* src = g.arr<float>(1, napi_float32_array, "src", &ls);
    g.need("src", ls, (long)ld);
    addInto(d, src, (long)ld);
    return undef(env);
  });
}

// The allocator policy applied at load (reported by cpuFeatures().allocator).
const char* allocatorNote = "system allocator";

// Tensor buffers are ArrayBuffers, which Node allocates with calloc. glibc's defaults return
// freed blocks of 128 KB+ to the kernel (munmap, or trimming the heap top), so each training step
// page-faults its activations in again: ~28K faults (~115 MB) a step on the bench's small model,
// at 7-12 us each on a VM. Raising the mmap threshold to its 32 MB maximum and the trim threshold
// to 1 GB keeps that memory in the heap for reuse (RSS stays at the peak). FRUGAL_MALLOC_TUNING=0
// leaves the allocator alone; GLIBC_TUNABLES given by the user wins.
void tuneAllocator() {
#if defined(__GLIBC__)
  const char* off = std::getenv("FRUGAL_MALLOC_TUNING");
  const char* tun = std::getenv("GLIBC_TUNABLES");
  if (off && std::strcmp(off, "0") == 0) { allocatorNote = "glibc malloc, defaults (FRUGAL_MALLOC_TUNING=0)"; return; }
  if (tun && std::strstr(tun, "glibc.malloc.")) { allocatorNote = "glibc malloc, as set by GLIBC_TUNABLES"; return; }
  static bool done = false;
  if (!done) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    done = true;
  }
  allocatorNote = "glibc malloc tuned: blocks under 32 MB reused, not returned to the OS";
#endif
}

// cpuFeatures() -> { avx2, fma, avx512f, ..., avx512bf16, isa, lowp, threads }
napi_value CpuFeatures(napi_env env, napi_callback_info) {
  const Cpu& c = cpu();
  napi_value o, v;
  napi_create_object(env, &o);
  const std::pair<const char*, bool> flags[] = {{"avx2", c.avx2}, {"fma", c.fma}, {"avx512f", c.avx512f}, {"avx512bw", c.avx512bw},
                                                {"avx512vl", c.avx512vl}, {"avx512dq", c.avx512dq}, {"avx512bf16", c.avx512bf16}};
  for (auto& f : flags) { napi_get_boolean(env, f.second, &v); napi_set_named_property(env, o, f.first, v); }
  napi_create_string_utf8(env, isaName(c.isa), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "isa", v);
  napi_create_string_utf8(env, lowpFamily(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "lowp", v);
  napi_create_string_utf8(env, q8Family(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "q8", v);
  napi_set_named_property(env, o, "threads", number(env, poolThreads()));
  napi_create_string_utf8(env, allocatorNote, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "allocator", v);
  return o;
}

// mallocInUse() -> bytes the C allocator has handed out and not taken back (glibc mallinfo2:
// in-use arena chunks plus mmapped blocks), or -1 where the C library cannot say. It covers the
// addon's own buffers and the ArrayBuffer backing stores Node allocates, so a test can prove the
// native side does not grow step after step.
napi_value MallocInUse(napi_env env, napi_callback_info) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 m = mallinfo2();
  return number(env, static_cast<double>(m.uordblks + m.hblkhd));
#else
  return number(env, -1);
#endif
}

}  // namespace

NAPI_MODULE_INIT() {
  const napi_property_descriptor props[] = {
      {"matmul", nullptr, MatMul, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rmsnorm", nullptr, RmsNorm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"siluMul", nullptr, SiluMul, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"siluMulBackward", nullptr, SiluMulBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"softmaxBackward", nullptr, SoftmaxBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rmsnormBackward", nullptr, RmsNormBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"bf16Gemm", nullptr, Bf16Gemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8Gemm", nullptr, Fp8Gemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setIsa", nullptr, SetIsa, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"cpuFeatures", nullptr, CpuFeatures, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attentionForward", nullptr, AttentionForward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"attentionBackward", nullptr, AttentionBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gemvBf16", nullptr, GemvBf16, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"gemvQ8", nullptr, GemvQ8, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rowsAxpy", nullptr, RowsAxpy, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamw", nullptr, AdamW, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sumSquares", nullptr, SumSquares, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"addInto", nullptr, AddInto, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"mallocInUse", nullptr, MallocInUse, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  tuneAllocator();
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  registerFp8Exports(env, exports);
  registerTrainExports(env, exports);
  registerDecodeExports(env, exports);
  // Join the workers when this environment tears down, so no pool thread outlives it.
  napi_add_env_cleanup_hook(env, [](void*) { poolSetThreads(1); }, nullptr);
  return exports;
}
