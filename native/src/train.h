// Declarations of the fused training kernels (moe_ffn.cc, train_rows.cc), exported to JS by
// train_addon.cc. All arrays are row-major f32 unless stated; sizes are element counts.
#pragma once
#include <cstdint>

#include "common.h"

namespace frugal {

/**
 * One DeepSeekMoE feed-forward layer over x [N, H]: E routed SwiGLU experts (gate/up [I, H],
 * down [H, I]) on the rows routing picked, plus an optional shared SwiGLU expert (width Is) on
 * every row. Slot s = n·k + j is token n's j-th pick; `order` lists the M = N·k slots grouped by
 * expert (expert e owns order[offsets[e] .. offsets[e+1])), and g, u, y are stored in that order.
 */
struct MoeFfnArgs {
  const float* x;
  long N, H, I, k, E;
  const float* const* gate;  // E pointers
  const float* const* up;
  const float* const* down;
  const float* sGate;  // shared expert (null: none)
  const float* sUp;
  const float* sDown;
  long Is;
  const int32_t* order;    // [M]
  const int32_t* offsets;  // [E + 1]
  const float* slotW;      // [M] gate weight of slot s
  float* g;                // [M, I] routed gate projections (expert order, saved for backward)
  float* u;                // [M, I] routed up projections
  float* y;                // [M, H] routed expert outputs (unweighted)
  float* sg;               // [N, Is] shared gate projections
  float* su;               // [N, Is] shared up projections
};

/** out[n] = shared(x[n]) + Σ_j slotW[n·k+j] · expert_{slot}(x[n]); fills g, u, y, sg, su. */
void moeFfnForward(const MoeFfnArgs& a, float* out);

/** Gradients of moeFfnForward given its saved g, u, y, sg, su. */
struct MoeFfnGrads {
  const float* gradOut;  // [N, H]
  float* gradX;          // [N, H] overwritten
  float* gradW;          // [M] by slot, overwritten
  float* const* gGate;   // E entries, each null or accumulated into (+=)
  float* const* gUp;
  float* const* gDown;
  float* gsGate;  // shared expert weight gradients (null: skip), accumulated
  float* gsUp;
  float* gsDown;
};
void moeFfnBackward(const MoeFfnArgs& a, const MoeFfnGrads& d);

/** Rotary embedding on interleaved pairs of x [B, T, H, D]: features [offset, D) rotated by
 *  (cos, sign·sin)[t] ([T, (D − offset)/2]), features [0, offset) copied; sign −1 is the backward. */
void ropeRows(const float* x, float* out, const float* cos, const float* sin, long B, long T, long H, long D, long offset, float sign);
/** out [R, H, Da + Db] = [a[r, h, :Da] | b[r, :]] with a [R, H, Dfull] and b [R, Db]. */
void concatHeads(const float* a, const float* b, float* out, long R, long H, long Dfull, long Da, long Db);
/** Its backward: ga [R, H, Dfull] (zeros past Da) and gb [R, Db] (summed over heads) overwritten; either may be null. */
void concatHeadsBackward(const float* g, float* ga, float* gb, long R, long H, long Dfull, long Da, long Db);
/** Cross-entropy rows of logits p [rows, V] against targets (ignoreIndex rows skipped): returns
 *  Σ (log Σ_j exp p[r,j] − p[r,y]); with grad, p is overwritten by (softmax − onehot)·inv (ignored rows 0). */
double crossEntropyRows(float* p, long rows, long V, const int32_t* targets, long ignoreIndex, float inv, bool grad);

}  // namespace frugal
