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

/**
 * The speculative loop's draft head (draft_head.cc): an int8 copy of an MTP head, one scale per
 * output row, laid out for AVX-512 VNNI. Approximate logits: only for proposing drafts.
 */
struct DraftHead {
  std::vector<int8_t> w;       // [ceil(n/16)][k/4][16][4]
  std::vector<float> scale;    // per output row
  std::vector<int32_t> sum;    // per output row: Σ codes (the uint8 input's offset correction)
  long n = 0, k = 0;
  /** Builds the copy of m; false (nothing built) without AVX-512 VNNI or when k is not a multiple of 4. */
  bool build(const Mat& m);
  /** y[j] ≈ x·W[j] for outputs [j0, j1) (j0 a multiple of 16); xq holds k bytes of scratch. */
  void logits(const float* x, uint8_t* xq, float* y, long j0, long j1) const;
};

struct Mtp {
  const float *embed = nullptr, *enorm = nullptr, *hnorm = nullptr, *headNorm = nullptr;
  Mat eh, head;
  Layer layer;
  /** head's int8 draft copy (built on the first chained step; n = 0: none, -1: cannot). */
  DraftHead draftHead;
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

enum Slot { S_H, S_X, S_ATT, S_FFN, S_KV, S_Q, S_QA, S_QATT, S_OLAT, S_O, S_SCORE, S_SCORES, S_GATEW, S_TASK, S_G, S_U, S_CAT, S_QD, S_QAN, S_CHAIN, S_COUNT };

struct Scratch {
  std::vector<float> bufs[S_COUNT];
  float* get(int slot, size_t n);
};

struct Task { const Mlp* mlp; long first, rows, off; };

/** Most threads a team pass runs on (more cannot pay on decode-sized products). */
constexpr int kMaxTeam = 8;
/** Most drafts one speculative step chains (runSpecLoop). */
constexpr long kMaxDrafts = 4;

/**
 * The threads of one team pass (Engine::inTeam): every member runs the same pass, computes its
 * share of each product (a static split of output columns in pieces of 16, or of attention rows /
 * heads) into shared buffers, and meets the others at `sync` before anyone reads a product; small
 * steps (norms, routing, residual adds) run on every member into its own buffers, so they cost no
 * meeting. Products are row- and column-exact (decode.h), so a team pass equals a one-thread pass
 * bit for bit.
 */
struct Team {
  struct alignas(64) Slot { std::atomic<long> v{0}; long mine = 0; };
  Slot slot[kMaxTeam];
  int n = 1;
  /** Set by a member that waited over 1 ms for another (a preempted thread); read after the pass. */
  std::atomic<bool> stalled{false};
  /** Shared buffers, sized by the engine before the pass starts (members never resize them). */
  Scratch sc;
  /** Waits until every member has reached this meeting. */
  void sync(int tid);
};

/**
 * What one thread's pass works in: its own scratch and routing tables, whether it may use the pool
 * (a one-thread pass), and, in a team pass, its member id and the team (whose buffers hold the
 * products the members share).
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
  int tid = 0, nt = 1;
  Team* team = nullptr;
  /** Attention over at most the last `window` rows of each query's context (0: all; drafts only). */
  long window = 0;
  /** A buffer every member of a team reads (the team's; this thread's own in a one-thread pass). */
  float* shared(int slot, size_t n);
  /** A team meeting (nothing in a one-thread pass). */
  void sync() { if (team) team->sync(tid); }
  /** This member's piece [j0, j1) of n outputs (pieces of 16; all of them in a one-thread pass). */
  void cols(long n, long& j0, long& j1) const;
};

/** Whether passes may run as teams (default true; false: one-thread passes that split large products
 *  over the pool, as when the pool is busy). Returns the previous setting. For tests and comparisons. */
bool setTeams(bool on);

struct Engine {
  Cfg c{};
  const float *embed = nullptr, *norm = nullptr;
  Mat head;
  std::vector<Layer> layers;
  std::vector<Mtp> mtp;

  /** Main model over R tokens: hidden [R, H] after the final norm, logits [R − from, V]. */
  void runMain(const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits);
  /** MTP depth over rows (hidden_i, next_i): hidden [R − from, H] before its head norm, logits [R − from, V]. window > 0: each row
   *  attends over at most its last `window` cache rows (a cheaper draft; 0: all). */
  void runMtp(long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
              float* hidden, float* logits, long window = 0);

  /**
   * One greedy speculative step: MTP depth 0 of `draft` over rows (hin_i, next_i) of segment `mseg`
   * (only its last row drafts; earlier rows fill the MTP cache), draft = argmax of its logits over
   * [0, vocab), then the main model over [token, draft] at positions mainStart, mainStart + 1 (the
   * verify pass: each weight read once for both rows). Results equal runMtp then a 2-row runMain
   * bit for bit. With 2+ pool threads the whole step is one team pass. Writes hidden [2, H],
   * logits [2, V], mtpLogits [V] and picks [draft, argmax row 0, argmax row 1] (argmaxes over
   * [0, vocab), first index on ties).
   */
  void runSpec(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn,
               int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab,
               float* hidden, float* logits, float* mtpLogits, int32_t* picks);

  /**
   * Up to `steps` greedy speculative steps, feeding each step's result to the next as
   * Generation.specStep does. Each step drafts K = `drafts` tokens (1 ≤ K ≤ kMaxDrafts) by chaining
   * MTP depth 0 (specStep) and verifies them in one (K + 1)-row pass; the longest verified prefix
   * of drafts is kept. st = [token x, main position n, MTP start, MTP rows m, proposed, accepted]
   * in and out (proposed counts drafts); hin [m, H] and next [m] are the MTP rows in and out (room
   * for K + 1 rows). cosT/sinT hold the rope tables of positions [0, tableRows). Emitted tokens go
   * to out; stops after `budget` tokens or a token in stops. Returns the number emitted. Drafts
   * come from the int8 draft head (DraftHead) unless exactHead, attending over at most the last
   * draftWindow rows (0: all); draftsOut (when given, K per step) receives each step's drafts.
   */
  long runSpecLoop(Engine& draft, float* hin, int32_t* next, int64_t* st, float* const* mainCaches, float* mtpCache, const float* cosT, const float* sinT,
                   long tableRows, long vocab, long steps, long budget, const int32_t* stops, long nStops, int32_t* out, long drafts = 1,
                   int32_t* draftsOut = nullptr, bool exactHead = false, long draftWindow = 0);

 private:
  Work work[kMaxTeam];
  Team team;
  long teamFfn = -1, teamExpert = -1;  // widest dense MLP and MoE expert (team buffer sizes)
  std::vector<float> loopHidden, loopLogits, loopMtpLogits;
  std::vector<float> specHidden;
  /**
   * Runs f(tid) as a team pass of R rows on min(pool threads, kMaxTeam) threads, with each
   * member's Work of this engine (and of `other`, when given) joined to the team; false, running
   * nothing, when no team can run now (one thread, or the pool is busy or guarded).
   */
  template <class F>
  bool inTeam(long R, Engine* other, F f);
  /** Sizes the team's shared buffers for passes of up to R rows. */
  void reserveTeam(long R);
  /** The main model; `head` false stops after the final norm (logits untouched). */
  void mainPass(Work& w, const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits,
                bool head = true);
  /** MTP depth over rows; `normedOut` (when given) receives the last row after the head norm (the
   *  head's input: what a chained draft reads as its hidden state). */
  void mtpPass(Work& w, long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
               float* hidden, float* logits, float* normedOut = nullptr, bool draftHead = false);
  /**
   * One greedy speculative step with K chained drafts: MTP depth 0 of `draft` over the pending rows
   * (hin_i, next_i) of `mseg` drafts d1 (argmax of the last row's logits over [0, vocab)); draft
   * d(k+1) comes from MTP depth 0 over one row at position mainStart + k − 1 reading (the previous
   * MTP row's head input, d(k)), written to mtpCache (later steps overwrite it with the main
   * model's row); then the main model over [token, d1, …, dK] at mainStart… (K + 1 rows, each
   * weight read once for all). chainCs/chainSn: rope of positions mainStart…mainStart + K − 2.
   * Writes hidden [K + 1, H], logits [K + 1, V], mtpLogits [V] (the last draft's) and picks
   * [d1…dK, argmax of each main row].
   */
  void specStep(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn, const float* chainCs,
                const float* chainSn, float* mtpCache, int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab, long K,
                float* hidden, float* logits, float* mtpLogits, int32_t* picks, bool draftHead = false, long draftWindow = 0);
  void linear(Work& w, const Mat& m, const float* x, long ldx, long R, float* y, long ldy, bool par);
  void swiglu(Work& w, const Mlp& m, const float* x, long R, float* g, float* u, float* y, bool par, int16_t* qb, float* db);
  /** A team's gate·up·SiLU (phase 0, this member's columns of g) or down (phase 1, its columns of y). */
  void ffnPiece(Work& w, const Mlp& m, const float* x, long R, float* g, float* u, float* y, int16_t* qb, float* db, int phase);
  void mla(Work& w, const Layer& ly, const float* x, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from, float* out);
  void moe(Work& w, const Layer& ly, const float* x, long n, float* out);
  void select(const float* scores, const float* bias, int32_t* ids) const;
  void block(Work& w, const Layer& ly, float* h, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from);
};

}  // namespace dec
}  // namespace frugal
