// Declarations of the FP8 training kernels (DeepSeek-V3 recipe, E4M3 codes with fp32 dequant
// scales): the quantisers of fp8_quant.cc, the scaled GEMM of fp8_gemm.cc, the BF16-moment AdamW
// of adamw_bf16.cc, and the N-API registration in fp8_addon.cc. Semantics match src/fp8/quant.ts
// and src/fp8/linear.ts bit for bit (quantisers) or within float-summation order (GEMM).
#pragma once
#include <cstdint>

#include "common.h"

namespace frugal {

/** Scale of a tile from its amax (NaN when the tile holds a NaN): fp32(max(amax, 1e-4) / 448),
 *  or the power of two at or above it (ue8m0; NaN/inf give +inf, as pow2Ceil does in TS). */
float fp8ScaleOf(float amax, bool sawNan, bool ue8m0);

/** x [rows, cols] in 1x128 tiles along cols: codes [rows, cols], scales [rows, ceil(cols/128)]. */
void fp8QuantizeRows(const float* x, long rows, long cols, uint8_t* codes, float* scales, bool ue8m0);
/** x [rows, cols] in 128x1 tiles (128 rows of one column): codes in the same [rows, cols] layout,
 *  scales [ceil(rows/128), cols]. The tiles along tokens that Wgrad needs, without a transpose. */
void fp8QuantizeCols(const float* x, long rows, long cols, uint8_t* codes, float* scales, bool ue8m0);
/** Re-tiles FP8 rows: decodes codes [rows, cols] with their 1x128 row scales [rows, ceil(cols/128)]
 *  (fp32(decode · s)) and quantises the result in 128x1 column tiles (fp8QuantizeCols). */
void fp8RequantizeCols(const uint8_t* codes, const float* rowScales, long rows, long cols, uint8_t* outCodes, float* outScales, bool ue8m0);
/** Weight [rows, cols] in 128x128 blocks: codes [rows, cols], scales [ceil(rows/128), ceil(cols/128)],
 *  and (when codesT is not null) the same codes transposed, [cols, rows]. */
void fp8QuantizeWeight(const float* w, long rows, long cols, uint8_t* codes, float* scales, uint8_t* codesT, bool ue8m0);

/** Operands of fp8ScaledGemm: C[M,N] (+)= Σ_kb sa(m,kb)·sb(kb,n)·Σ_{k in kb} A(m,k)·B(k,n),
 *  kb = 128-wide blocks of K. A is [M,K] row-major (aTrans false) or [K,M] (aTrans true); B is
 *  [K,N] row-major. sa(m,kb) = sa[kb·saKb + m·saRow]; sb(kb,n) = sb[kb·sbKb + (n / sbDiv)·sbCol]. */
struct Fp8GemmArgs {
  const uint8_t* a; bool aTrans; const float* sa; long saKb, saRow;
  const uint8_t* b; const float* sb; long sbKb, sbDiv, sbCol;
  float* c; long m, n, k; bool accumulate;
  /** Accumulator (an ablation of H800 tensor cores, report §3.3.2): 0 = fp32 within each block
   *  (default); 1 = ~14-bit accumulator (sums truncated to 14 significant bits after every two
   *  products), promoted to fp32 every 128 of K; 2 = the same 14-bit accumulator over all of K
   *  (block results scaled and added into it, never promoted). 1 and 2 need avx512_bf16. */
  int accum = 0;
};
void fp8ScaledGemm(const Fp8GemmArgs& g);
/** Which family fp8ScaledGemm and the quantisers use ("avx512bf16" or "portable"). */
const char* fp8Family();

/** AdamW over one parameter with BF16-stored moments: decode m, v exactly, the f32 update of
 *  adamw(), round m, v back to BF16 (nearest even; NaN stays NaN). Same bits as decode + adamw + encode. */
void adamwBf16(float* w, const float* g, uint16_t* m, uint16_t* v, long n, const AdamWHyper& h);

}  // namespace frugal
