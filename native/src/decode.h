// The native decode engine (decode_engine.cc): a whole decode pass of a few token rows — embed,
// every layer's absorbed MLA over the latent cache and its DeepSeekMoE or dense MLP, final norm and
// head — in one call, with the weights resident (pointers into the engine's typed arrays, kept
// alive by references) and scratch reused between calls. decode_gemv.cc holds its few-row matrix
// products, decode_attn.cc its latent attention. Row-exact throughout: a row's result never
// depends on the other rows of the pass, nor on the thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "common.h"

namespace frugal {
namespace dec {

/** Storage of a weight matrix [n, k] (row j holds output j's k inputs). */
enum Fmt { F32 = 0, BF16 = 1, Q8 = 2 };

/** A weight matrix as the engine reads it: f32, bf16 bit patterns, or ggml Q8_0 blocks. */
struct Mat {
  Fmt fmt = F32;
  const void* w = nullptr;
  long n = 0, k = 0;
};

/** Input rows of a product: f32 rows, plus their Q8_0 form (codes, block scales) for Q8 weights. */
struct Rows {
  const float* x; long ldx;
  const int16_t* q = nullptr; const float* d = nullptr;  // [R, k] codes and [R, k/32] scales
};

/** Quantises R rows of x (row stride ldx, width k a multiple of 32) to Q8_0 as llama.cpp does. */
void quantizeRowsQ8(const float* x, long ldx, long R, long k, int16_t* q, float* d);

/**
 * y[r·ldy + j] = Σ_p x_r[p]·W[j, p] for rows r < R and outputs j ∈ [j0, j1). Each output is a
 * 16-lane sum over p reduced by one fixed tree, so the value of (r, j) is the same whatever R,
 * j0, j1 (bit for bit): the basis of row-exact multi-row decode and of column splits over threads.
 */
void matRows(const Mat& m, const Rows& x, long R, float* y, long ldy, long j0, long j1);

/** matRows for rows of x (width m.k, contiguous) into y [R, m.n], Q8_0 quantisation included, split
 *  by columns over the pool when the matrix is large (the engine's policy). */
void matRowsPar(const Mat& m, const float* x, long R, float* y);

/** y[j] = Σ_p x[p]·M[p·ld + j] for j < n over p < k (the stream form: W_UK of absorbed MLA). */
void streamRow(const float* x, const float* M, long ld, long k, float* y, long n);

/** One attention query for latentAttendQueries: a pre-scaled query [D], its keys [0, L), its output [dc]. */
struct AttnQuery { const float* q; long L; float* out; };

/** Latent attention of Q query vectors (heads of one or more rows) over one cache [·, D]: query i
 *  over rows [0, L_i), writing [dc] to its out; scores hold Q rows of ld ≥ max L_i. A query's result
 *  is the same whichever queries share the call (and equals latentAttendRow's for its head). */
void latentAttendQueries(const AttnQuery* qs, long Q, const float* cache, long D, long dc, float* scores, long ld);

/** Latent attention of one query row: nh heads of D = dc + dr (pre-scaled q) over L cache rows
 *  [L, D]; writes out [nh, dc] (the values are each row's first dc entries). Heads [h0, h1). */
void latentAttendRow(const float* q, const float* cache, long L, long nh, long D, long dc, float* out, float* scores, long h0, long h1);

}  // namespace dec
}  // namespace frugal
