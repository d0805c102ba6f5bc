// N-API entry points of the FP8 training kernels (fp8_quant.cc, fp8_gemm.cc, adamw_bf16.cc),
// added to the addon's exports by registerFp8Exports (called from addon.cc). Arguments are typed
// arrays used in place plus numbers; every extent is checked against the array lengths before a
// kernel runs, and bad input throws a TypeError/RangeError naming the argument.
#include <string>

#include "fp8.h"
#include "napi_args.h"

namespace frugal {
AdamWHyper adamwHyperArgs(const napi::Args& g, size_t at);  // addon.cc
namespace {

using napi::guard;
using napi::undef;
using napi::Args;

long blocks(long n) { return (n + 127) / 128; }

// fp8QuantizeRows(x, rows, cols, codes, scales, ue8m0) / fp8QuantizeCols(...): same arguments.
template <bool Cols>
napi_value Quantize(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, Cols ? "fp8QuantizeCols" : "fp8QuantizeRows", 5);
    size_t lx, lc, ls;
    const float* x = g.arr<float>(0, napi_float32_array, "x", &lx);
    const long rows = g.count(1, "rows"), cols = g.count(2, "cols");
    uint8_t* codes = g.arr<uint8_t>(3, napi_uint8_array, "codes", &lc);
    float* scales = g.arr<float>(4, napi_float32_array, "scales", &ls);
    g.need("x", lx, (double)rows * cols); g.need("codes", lc, (double)rows * cols);
    if (Cols) g.need("scales ([ceil(rows/128), cols])", ls, (double)blocks(rows) * cols);
    else g.need("scales ([rows, ceil(cols/128)])", ls, (double)rows * blocks(cols));
    if (Cols) fp8QuantizeCols(x, rows, cols, codes, scales, g.flag(5));
    else fp8QuantizeRows(x, rows, cols, codes, scales, g.flag(5));
    return undef(env);
  });
}

// fp8RequantizeCols(codes, rowScales, rows, cols, outCodes, outScales, ue8m0)
napi_value Requantize(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "fp8RequantizeCols", 6);
    size_t lc, lr, loc, los;
    const uint8_t* codes = g.arr<uint8_t>(0, napi_uint8_array, "codes", &lc);
    const float* rs = g.arr<float>(1, napi_float32_array, "rowScales", &lr);
    const long rows = g.count(2, "rows"), cols = g.count(3, "cols");
    uint8_t* oc = g.arr<uint8_t>(4, napi_uint8_array, "outCodes", &loc);
    float* os = g.arr<float>(5, napi_float32_array, "outScales", &los);
    g.need("codes", lc, (double)rows * cols); g.need("outCodes", loc, (double)rows * cols);
    g.need("rowScales ([rows, ceil(cols/128)])", lr, (double)rows * blocks(cols));
    g.need("outScales ([ceil(rows/128), cols])", los, (double)blocks(rows) * cols);
    if ((const void*)codes == (const void*)oc) g.range("outCodes must not alias codes");
    fp8RequantizeCols(codes, rs, rows, cols, oc, os, g.flag(6));
    return undef(env);
  });
}

// fp8QuantizeWeight(w, rows, cols, codes, scales, codesT | null, ue8m0)
napi_value QuantizeWeight(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "fp8QuantizeWeight", 5);
    size_t lw, lc, ls, lt = 0;
    const float* w = g.arr<float>(0, napi_float32_array, "w", &lw);
    const long rows = g.count(1, "rows"), cols = g.count(2, "cols");
    uint8_t* codes = g.arr<uint8_t>(3, napi_uint8_array, "codes", &lc);
    float* scales = g.arr<float>(4, napi_float32_array, "scales", &ls);
    uint8_t* codesT = g.has(5) ? g.arr<uint8_t>(5, napi_uint8_array, "codesT", &lt) : nullptr;
    g.need("w", lw, (double)rows * cols); g.need("codes", lc, (double)rows * cols);
    g.need("scales ([ceil(rows/128), ceil(cols/128)])", ls, (double)blocks(rows) * blocks(cols));
    if (codesT) g.need("codesT", lt, (double)rows * cols);
    fp8QuantizeWeight(w, rows, cols, codes, scales, codesT, g.flag(6));
    return undef(env);
  });
}

// fp8ScaledGemm(a, aTrans, sa, saKb, saRow, b, sb, sbKb, sbDiv, sbCol, c, m, n, k, accumulate, accum?)
napi_value ScaledGemm(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "fp8ScaledGemm", 14);
    size_t la, lsa, lb, lsb, lc;
    Fp8GemmArgs x{};
    x.a = g.arr<uint8_t>(0, napi_uint8_array, "a", &la);
    x.aTrans = g.flag(1);
    x.sa = g.arr<float>(2, napi_float32_array, "sa", &lsa);
    x.saKb = g.count(3, "saKb"); x.saRow = g.count(4, "saRow");
    x.b = g.arr<uint8_t>(5, napi_uint8_array, "b", &lb);
    x.sb = g.arr<float>(6, napi_float32_array, "sb", &lsb);
    x.sbKb = g.count(7, "sbKb"); x.sbDiv = g.count(8, "sbDiv"); x.sbCol = g.count(9, "sbCol");
    x.c = g.arr<float>(10, napi_float32_array, "c", &lc);
    x.m = g.count(11, "m"); x.n = g.count(12, "n"); x.k = g.count(13, "k");
    x.accumulate = g.flag(14);
    if (g.has(15)) {
      const long acc = g.count(15, "accum");
      if (acc > 2) g.range("accum must be 0 (fp32), 1 (14-bit, promoted every 128) or 2 (14-bit, never promoted)");
      if (acc != 0 && std::string(fp8Family()) != "avx512bf16") g.range("accum 1 and 2 (the 14-bit accumulator ablation) need AVX-512 BF16");
      x.accum = (int)acc;
    }
    if (x.sbDiv < 1) g.range("sbDiv must be >= 1");
    if (x.m > (1L << 31) || x.n > (1L << 31) || x.k > (1L << 31)) g.range("m, n, k must be at most 2^31");
    g.need("a", la, (double)x.m * x.k); g.need("b", lb, (double)x.k * x.n); g.need("c", lc, (double)x.m * x.n);
    if (x.m > 0 && x.n > 0 && x.k > 0) {
      const double kb = (double)blocks(x.k) - 1;
      g.need("sa (largest index kb*saKb + m*saRow)", lsa, kb * x.saKb + (double)(x.m - 1) * x.saRow + 1);
      g.need("sb (largest index kb*sbKb + (n/sbDiv)*sbCol)", lsb, kb * x.sbKb + (double)((x.n - 1) / x.sbDiv) * x.sbCol + 1);
    }
    fp8ScaledGemm(x);
    return undef(env);
  });
}

// adamwBf16(w, g, m, v, beta1, beta2, eps, stepSize, decay, invBc2Sqrt): m, v are Uint16Array (BF16 bits)
napi_value AdamWBf16(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args g(env, info, "adamwBf16", 10);
    size_t lw, lg, lm, lv;
    float* w = g.arr<float>(0, napi_float32_array, "w", &lw);
    const float* gr = g.arr<float>(1, napi_float32_array, "g", &lg);
    uint16_t* m = g.arr<uint16_t>(2, napi_uint16_array, "m", &lm);
    uint16_t* v = g.arr<uint16_t>(3, napi_uint16_array, "v", &lv);
    g.need("g", lg, (double)lw); g.need("m", lm, (double)lw); g.need("v", lv, (double)lw);
    const AdamWHyper h = adamwHyperArgs(g, 4);
    adamwBf16(w, gr, m, v, (long)lw, h);
    return undef(env);
  });
}

napi_value Family(napi_env env, napi_callback_info) {
  napi_value r;
  napi_create_string_utf8(env, fp8Family(), NAPI_AUTO_LENGTH, &r);
  return r;
}

}  // namespace

/** Adds the FP8 kernels to the addon's exports. */
void registerFp8Exports(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"fp8QuantizeRows", nullptr, Quantize<false>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8QuantizeCols", nullptr, Quantize<true>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8RequantizeCols", nullptr, Requantize, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8QuantizeWeight", nullptr, QuantizeWeight, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8ScaledGemm", nullptr, ScaledGemm, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adamwBf16", nullptr, AdamWBf16, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"fp8Family", nullptr, Family, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

}  // namespace frugal
