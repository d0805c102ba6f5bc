// The decode engine's model: weights as resident pointers (decode_addon.cc builds it from the
// model's typed arrays, validated), the passes (decode_engine.cc) and their reused scratch.
#pragma once
#include <atomic>
#include <cstdint>
#include <vector>

#include "decode.h"

namespace frugal {
namespace dec {

/** Most routed experts per layer the engine takes (the selection keeps per-row tables on the stack). */
constexpr long kMaxExperts = 1024;

struct Mlp { Mat gate, up, down; };

struct Layer {
  const float *attnNorm = nullptr, *ffnNorm = nullptr;
  Mat q, qA, qB;  // q when there is no q LoRA (qA.w null), else qA, qB
  const float* qANorm = nullptr;
  Mat kvA, o;
  const float *kvANorm = nullptr, *kvB = nullptr;  // kv_b_proj f32 [nh·(dn+dv), rkv], read in place (absorbed)
  bool isMoe = false;
  Mlp mlp;  // dense layers
  const float *router = nullptr, *bias = nullptr;  // MoE: router [E, H] f32, correction bias [E] or null
  bool hasShared = false;
  Mlp shared;
  std::vector<Mlp> experts;
};

struct Mtp {
  const float *embed = nullptr, *enorm = nullptr, *hnorm = nullptr, *headNorm = nullptr;
  Mat eh, head;
  Layer layer;
};

struct Cfg {
  long H, V, L, nh, dn, dr, dv, rkv, rq, E, topk, G, Gk;
  bool limited, sigmoid, normTopk;
  double routedScale;
  float eps, scale;
};

/** One segment of a pass: `rows` consecutive positions from `start`, and its cache per layer touched. */
struct SegRef {
  long start, rows;
  float* const* caches;
};

enum Slot { S_H, S_X, S_ATT, S_FFN, S_KV, S_Q, S_QA, S_QATT, S_OLAT, S_O, S_SCORE, S_SCORES, S_GATEW, S_TASK, S_G, S_U, S_CAT, S_QD, S_COUNT };

struct Scratch {
  std::vector<float> bufs[S_COUNT];
  float* get(int slot, size_t n);
};

struct Task { const Mlp* mlp; long first, rows, off; };

/**
 * What one thread's pass works in: scratch, routing tables, and whether it may use the pool. A
 * speculative step runs two single-row passes at once, one per thread, each in its own Work.
 * `publish` / `await` order them: a pass with `publish` stores l + 1 after writing its latent row
 * of layer l; a pass with `await` waits before attending in layer l until that value exceeds l
 * (the later row reads the earlier row's latent, never the reverse).
 */
struct Work {
  Scratch sc;
  std::vector<int16_t> qcodes;
  std::vector<int32_t> ids, rowIdx;
  std::vector<float> rowScale;
  std::vector<Task> tasks;
  // Attention query rows of a pass: the row's cache layer and its context length.
  struct QRow { const float* cache; long L; };
  std::vector<QRow> qrows;
  bool par = true;
  std::atomic<int>* publish = nullptr;
  const std::atomic<int>* await = nullptr;
};

struct Engine {
  Cfg c{};
  const float *embed = nullptr, *norm = nullptr;
  Mat head;
  std::vector<Layer> layers;
  std::vector<Mtp> mtp;

  /** Main model over R tokens: hidden [R, H] after the final norm, logits [R − from, V]. */
  void runMain(const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits);
  /** MTP depth over rows (hidden_i, next_i): hidden [R − from, H] before its head norm, logits [R − from, V]. */
  void runMtp(long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
              float* hidden, float* logits);

  /**
   * One greedy speculative step: MTP depth 0 of `draft` over rows (hin_i, next_i) of segment `mseg`
   * (only its last row drafts; earlier rows fill the MTP cache), draft = argmax of its logits over
   * [0, vocab), then the main model over [token, draft] at positions mainStart, mainStart + 1 (the
   * verify pass). Results equal runMtp then a 2-row runMain bit for bit. With 2+ pool threads the
   * verify's rows run one per thread, the draft's thread first drafting (the other row does not
   * need the draft; the other thread, done first, takes half of the draft row's head). Writes
   * hidden [2, H], logits [2, V], mtpLogits [V] and picks [draft, argmax row 0, argmax row 1]
   * (argmaxes over [0, vocab), first index on ties).
   */
  void runSpec(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn,
               int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab,
               float* hidden, float* logits, float* mtpLogits, int32_t* picks);

  /**
   * Up to `steps` greedy speculative steps (runSpec each), feeding each step's result to the next as
   * Generation.specStep does. st = [token x, main position n, MTP start, MTP rows m, proposed,
   * accepted] in and out; hin [m, H] and next [m] are the MTP rows in and out. cosT/sinT hold the
   * rope tables of positions [0, tableRows). Emitted tokens go to out; stops after `budget` tokens
   * or a token in stops. Returns the number emitted.
   */
  long runSpecLoop(Engine& draft, float* hin, int32_t* next, int64_t* st, float* const* mainCaches, float* mtpCache, const float* cosT, const float* sinT,
                   long tableRows, long vocab, long steps, long budget, const int32_t* stops, long nStops, int32_t* out);

 private:
  Work work[2];
  std::vector<float> loopHidden, loopLogits, loopMtpLogits;
  std::vector<float> specHidden;
  /** The main model; `head` false stops after the final norm (logits untouched). */
  void mainPass(Work& w, const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits,
                bool head = true);
  /** Outputs [j0, j1) of R rows of m (no pool): y[r·ldy + j] (Q8_0 input quantised into w's buffers). */
  void linearCols(Work& w, const Mat& m, const float* x, long ldx, long R, float* y, long ldy, long j0, long j1);
  void mtpPass(Work& w, long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
               float* hidden, float* logits);
  void linear(Work& w, const Mat& m, const float* x, long ldx, long R, float* y, long ldy, bool par);
  void swiglu(Work& w, const Mlp& m, const float* x, long R, float* g, float* u, float* y, bool par, int16_t* qb, float* db);
  void mla(Work& w, const Layer& ly, const float* x, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from, float* out);
  void moe(Work& w, const Layer& ly, const float* x, long n, float* out);
  void select(const float* scores, const float* bias, int32_t* ids) const;
  void block(Work& w, const Layer& ly, float* h, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from);
};

}  // namespace dec
}  // namespace frugal
