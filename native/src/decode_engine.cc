// The decode engine's passes (see decode.h and src/model/decode.ts, whose TypeScript path it
// mirrors step for step): the main model over R token rows, or MTP depth d over (hidden, next
// token) rows, each in one call. Rows come in segments (consecutive positions of one sequence's
// latent cache); every row writes its latent [ĉ | k_pe] at its position and attends over its own
// sequence's rows [0, pos]. Scratch is owned by the engine and only grows.
//
// Threads: a matrix product of ≥ kSplitWork weights is split by output columns (pieces of 16)
// over the pool; the MoE layer runs the shared expert and each routed expert as one task each
// (gate·up·SiLU·down into a private buffer) and combines them afterwards in ascending expert order;
// long attention splits by heads. None of this changes any sum's order, so results do not depend
// on the thread count, and rows never interact.
#include "decode_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#if FRUGAL_X86
#include <immintrin.h>
#endif

namespace frugal {
namespace dec {

namespace {
// Weights (n·k) from which one product is split over the pool; a wake-up costs ~1 µs.
constexpr long kSplitWork = 1L << 15;
// Multiply-adds from which a layer's experts run as parallel tasks, and attention splits by heads.
constexpr long kTaskWork = 1L << 15;

template <class F>
void splitCols(long n, long work, bool par, F f) {
  const int T = poolThreads();
  if (!par || T <= 1 || work < kSplitWork || n < 32) { f(0L, n); return; }
  const long units = (n + 15) / 16, pieces = std::min<long>(units, 2L * T);
  poolRunChunks(pieces, [&](long pc, int) {
    const long j0 = std::min(n, units * pc / pieces * 16), j1 = std::min(n, units * (pc + 1) / pieces * 16);
    if (j0 < j1) f(j0, j1);
  });
}

// Waits until v > li: spins briefly, then yields the core (the writer may be queued behind us).
void awaitAbove(const std::atomic<int>& v, int li) {
  for (int spins = 0; v.load(std::memory_order_acquire) <= li; spins++) {
#if FRUGAL_X86
    if (spins < 4096) { _mm_pause(); continue; }
#endif
    std::this_thread::yield();
  }
}

// Waits until f is set (as awaitAbove).
void awaitFlag(const std::atomic<bool>& f) {
  for (int spins = 0; !f.load(std::memory_order_acquire); spins++) {
#if FRUGAL_X86
    if (spins < 4096) { _mm_pause(); continue; }
#endif
    std::this_thread::yield();
  }
}

// dst[2i, 2i+1] = src pair i rotated by (cos, sin)[i], in double then rounded (as decode.ts's rotate).
inline void rotate(const float* src, float* dst, const float* cs, const float* sn, long half) {
  for (long i = 0; i < half; i++) {
    const double c = cs[i], s = sn[i], x0 = src[2 * i], x1 = src[2 * i + 1];
    dst[2 * i] = (float)(x0 * c - x1 * s);
    dst[2 * i + 1] = (float)(x0 * s + x1 * c);
  }
}
}  // namespace

void matRowsPar(const Mat& m, const float* x, long R, float* y) {
  Rows xs{x, m.k};
  static thread_local std::vector<int16_t> q;  // grow only: no allocation per decode step
  static thread_local std::vector<float> d;
  if (m.fmt == Q8) {
    if (q.size() < (size_t)(R * m.k)) q.resize((size_t)(R * m.k));
    if (d.size() < (size_t)(R * (m.k / 32))) d.resize((size_t)(R * (m.k / 32)));
    quantizeRowsQ8(x, m.k, R, m.k, q.data(), d.data());
    xs.q = q.data();
    xs.d = d.data();
  }
  splitCols(m.n, m.n * m.k, true, [&](long j0, long j1) { matRows(m, xs, R, y, m.n, j0, j1); });
}

float* Scratch::get(int slot, size_t n) {
  if (bufs[slot].size() < n) bufs[slot].resize(n);
  return bufs[slot].data();
}

// The rows x as a product reads them: with their Q8_0 form (in w's buffers) for Q8_0 weights.
static Rows inputRows(Work& w, const Mat& m, const float* x, long ldx, long R) {
  Rows xs{x, ldx};
  if (m.fmt == Q8) {
    if (w.qcodes.size() < (size_t)(R * m.k)) w.qcodes.resize((size_t)(R * m.k));
    float* d = w.sc.get(S_QD, (size_t)(R * (m.k / 32)));
    quantizeRowsQ8(x, ldx, R, m.k, w.qcodes.data(), d);
    xs.q = w.qcodes.data();
    xs.d = d;
  }
  return xs;
}

void Engine::linear(Work& w, const Mat& m, const float* x, long ldx, long R, float* y, long ldy, bool par) {
  const Rows xs = inputRows(w, m, x, ldx, R);
  splitCols(m.n, m.n * m.k, par && w.par, [&](long j0, long j1) { matRows(m, xs, R, y, ldy, j0, j1); });
}

// gate·up·SiLU·down of R rows (width H) into y [R, H]; g, u hold [R, I]; qb, db hold the Q8_0 form
// of x or of g (R·max(H, I) codes, R·max(H, I)/32 scales) when the weights are Q8_0.
void Engine::swiglu(Work& w, const Mlp& m, const float* x, long R, float* g, float* u, float* y, bool par, int16_t* qb, float* db) {
  const long H = c.H, I = m.gate.n;
  Rows xs{x, H};
  if (m.gate.fmt == Q8) { quantizeRowsQ8(x, H, R, H, qb, db); xs.q = qb; xs.d = db; }
  splitCols(I, 2 * I * H, par && w.par, [&](long j0, long j1) {
    matRows(m.gate, xs, R, g, I, j0, j1);
    matRows(m.up, xs, R, u, I, j0, j1);
  });
  siluMul(g, u, g, R * I);
  Rows gs{g, I};
  if (m.down.fmt == Q8) { quantizeRowsQ8(g, I, R, I, qb, db); gs.q = qb; gs.d = db; }
  splitCols(H, H * I, par && w.par, [&](long j0, long j1) { matRows(m.down, gs, R, y, H, j0, j1); });
}

void Engine::mla(Work& w, const Layer& ly, const float* x, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from, float* out) {
  const long H = c.H, nh = c.nh, dn = c.dn, dr = c.dr, dv = c.dv, rkv = c.rkv, dq = dn + dr, D = rkv + dr, half = dr / 2;
  float* kv = w.sc.get(S_KV, (size_t)(R * D));
  linear(w, ly.kvA, x, H, R, kv, D, true);
  // Latent rows into each segment's cache: ĉ = RMSNorm(c), k_pe roped at the row's position.
  long r = 0;
  for (long s = 0; s < S; s++) {
    float* cache = segs[s].caches[li];
    for (long i = 0; i < segs[s].rows; i++, r++) {
      float* row = cache + (segs[s].start + i) * D;
      rmsnorm(kv + r * D, ly.kvANorm, row, 1, rkv, c.eps, nullptr);
      rotate(kv + r * D + rkv, row + rkv, cs + r * half, sn + r * half, half);
    }
  }
  if (w.publish) w.publish->store(li + 1, std::memory_order_release);
  const long Rq = R - from;
  const float* xq = x + from * H;
  float* q = w.sc.get(S_Q, (size_t)(Rq * nh * dq));
  if (!ly.qA.w) linear(w, ly.q, xq, H, Rq, q, nh * dq, true);
  else {
    float* qa = w.sc.get(S_QA, (size_t)(Rq * c.rq));
    linear(w, ly.qA, xq, H, Rq, qa, c.rq, true);
    rmsnorm(qa, ly.qANorm, qa, Rq, c.rq, c.eps, nullptr);
    linear(w, ly.qB, qa, c.rq, Rq, q, nh * dq, true);
  }
  // Attention queries [Rq, nh, D] = [q_nope·W_UK | rope(q_pe)], scaled as the attention kernel does.
  float* qa = w.sc.get(S_QATT, (size_t)(Rq * nh * D));
  const long blk = (dn + dv) * rkv;
  for (long r2 = 0; r2 < Rq; r2++)
    for (long h = 0; h < nh; h++) {
      const float* qh = q + (r2 * nh + h) * dq;
      float* dst = qa + (r2 * nh + h) * D;
      streamRow(qh, ly.kvB + h * blk, rkv, dn, dst, rkv);
      rotate(qh + dn, dst + rkv, cs + (from + r2) * half, sn + (from + r2) * half, half);
      for (long d = 0; d < D; d++) dst[d] *= c.scale;
    }
  // An earlier row on another thread writes its latent of this layer first (runSpec).
  if (w.await) awaitAbove(*w.await, li);
  // Each query row over its own sequence's rows [0, pos]. Several query rows run as one task each
  // (all heads, scores in the task's thread's slice); one long row splits by heads.
  float* oLat = w.sc.get(S_OLAT, (size_t)(Rq * nh * rkv));
  w.qrows.clear();
  long work = 0, maxL = 0;
  r = 0;
  for (long s = 0; s < S; s++)
    for (long i = 0; i < segs[s].rows; i++, r++) {
      if (r < from) continue;
      const long L = segs[s].start + i + 1;
      w.qrows.push_back({segs[s].caches[li], L});
      work += L * nh * D;
      maxL = std::max(maxL, L);
    }
  const int T = w.par ? poolThreads() : 1;
  if (T > 1 && Rq > 1 && work >= kTaskWork) {
    float* scores = w.sc.get(S_SCORE, (size_t)(T * nh * maxL));
    poolRunChunks(Rq, [&](long q2, int tid) {
      latentAttendRow(qa + q2 * nh * D, w.qrows[q2].cache, w.qrows[q2].L, nh, D, rkv, oLat + q2 * nh * rkv, scores + tid * nh * maxL, 0, nh);
    });
  } else {
    for (long q2 = 0; q2 < Rq; q2++) {
      const float* cache = w.qrows[q2].cache;
      const long L = w.qrows[q2].L;
      const float* qrow = qa + q2 * nh * D;
      float* orow = oLat + q2 * nh * rkv;
      // Head h keeps its scores at [h·L, (h+1)·L): heads may run on different threads.
      float* scores = w.sc.get(S_SCORE, (size_t)(nh * L));
      if (T > 1 && L * nh * D >= kTaskWork && nh > 1) poolRunChunks(nh, [&](long h, int) { latentAttendRow(qrow, cache, L, nh, D, rkv, orow, scores, h, h + 1); });
      else latentAttendRow(qrow, cache, L, nh, D, rkv, orow, scores, 0, nh);
    }
  }
  // o[h] = o_lat[h] · W_UV[h]ᵀ (W_UV[h] starts dn rows into block h), then o_proj.
  float* o = w.sc.get(S_O, (size_t)(Rq * nh * dv));
  for (long h = 0; h < nh; h++) {
    const Mat wuv{F32, ly.kvB + h * blk + dn * rkv, dv, rkv};
    matRows(wuv, Rows{oLat + h * rkv, nh * rkv}, Rq, o + h * dv, nh * dv, 0, dv);
  }
  linear(w, ly.o, o, nh * dv, Rq, out, H, true);
}

// Top-k experts of one row's scores (decode.ts / deepseek.ts selectExperts, in double).
void Engine::select(const float* scores, const float* bias, int32_t* ids) const {
  const long E = c.E, G = c.G, per = E / G;
  double b[kMaxExperts], gs[kMaxExperts];
  for (long e = 0; e < E; e++) b[e] = (double)scores[e] + (bias ? (double)bias[e] : 0.0);
  if (c.limited) {
    for (long g = 0; g < G; g++) {
      double m1 = -INFINITY, m2 = -INFINITY;
      for (long j = 0; j < per; j++) {
        const double v = b[g * per + j];
        if (v > m1) { m2 = m1; m1 = v; } else if (v > m2) m2 = v;
      }
      gs[g] = bias ? m1 + m2 : m1;
    }
    bool keep[kMaxExperts] = {};
    for (long rr = 0; rr < c.Gk; rr++) {
      long best = -1;
      for (long g = 0; g < G; g++) if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
      keep[best] = true;
    }
    for (long g = 0; g < G; g++) if (!keep[g]) for (long j = 0; j < per; j++) b[g * per + j] = -INFINITY;
  }
  for (long rr = 0; rr < c.topk; rr++) {
    long best = 0;
    for (long e = 1; e < E; e++) if (b[e] > b[best]) best = e;
    ids[rr] = (int32_t)best;
    b[best] = -INFINITY;
  }
}

void Engine::moe(Work& w, const Layer& ly, const float* x, long n, float* out) {
  const long H = c.H, E = c.E, k = c.topk;
  float* scores = w.sc.get(S_SCORES, (size_t)(n * E));
  matRows(Mat{F32, ly.router, E, H}, Rows{x, H}, n, scores, E, 0, E);
  if (c.sigmoid) for (long i = 0; i < n * E; i++) scores[i] = (float)(1.0 / (1.0 + std::exp(-(double)scores[i])));
  else softmax(scores, scores, n, E);
  w.ids.resize((size_t)(n * k));
  float* gw = w.sc.get(S_GATEW, (size_t)(n * k));
  for (long r = 0; r < n; r++) {
    select(scores + r * E, ly.bias, w.ids.data() + r * k);
    float s = 0.f;
    for (long j = 0; j < k; j++) { gw[r * k + j] = scores[r * E + w.ids[r * k + j]]; s = s + gw[r * k + j]; }
    const bool normalise = c.sigmoid || c.normTopk;
    for (long j = 0; j < k; j++) {
      const float v = normalise && k > 1 ? (float)((double)gw[r * k + j] / (double)s) : gw[r * k + j];
      gw[r * k + j] = (float)((double)v * c.routedScale);
    }
  }
  // Tasks: the shared expert over all rows, then each routed expert (ascending) over its rows.
  w.tasks.clear();
  w.rowIdx.resize((size_t)(n * k));
  w.rowScale.resize((size_t)(n * k));
  long at = 0, work = 0;
  if (ly.hasShared) { w.tasks.push_back({&ly.shared, -1, n, 0}); work += n * ly.shared.gate.n; }
  for (long e = 0; e < E; e++) {
    const long first = at;
    for (long r = 0; r < n; r++)
      for (long j = 0; j < k; j++)
        if (w.ids[r * k + j] == e) { w.rowIdx[at] = (int32_t)r; w.rowScale[at++] = gw[r * k + j]; }
    if (at > first) { w.tasks.push_back({&ly.experts[e], first, at - first, 0}); work += (at - first) * ly.experts[e].gate.n; }
  }
  // Private buffers per task: x rows (gathered), g, u [rows, I], the output [rows, H], Q8_0 codes.
  size_t need = 0;
  for (auto& t : w.tasks) {
    const long I = t.mlp->gate.n, W = std::max(H, I);
    t.off = (long)need;
    need += (size_t)(t.rows * (2 * H + 2 * I) + t.rows * W + t.rows * W / 32 + 16);
  }
  float* buf = w.sc.get(S_TASK, need);
  auto runTask = [&](long ti, bool par) {
    const Task& t = w.tasks[ti];
    const long I = t.mlp->gate.n, W = std::max(H, I);
    float* xe = buf + t.off;
    float* g = xe + t.rows * H;
    float* u = g + t.rows * I;
    float* y = u + t.rows * I;
    int16_t* qb = (int16_t*)(y + t.rows * H);
    float* db = y + t.rows * H + t.rows * W;
    const float* xin = x;
    if (t.first >= 0) {
      for (long i = 0; i < t.rows; i++) std::memcpy(xe + i * H, x + w.rowIdx[t.first + i] * H, sizeof(float) * H);
      xin = xe;
    }
    swiglu(w, *t.mlp, xin, t.rows, g, u, y, par, qb, db);
  };
  const long nt = (long)w.tasks.size();
  if (w.par && poolThreads() > 1 && nt > 1 && 3 * H * work >= kTaskWork) poolRunChunks(nt, [&](long ti, int) { runTask(ti, false); });
  else for (long ti = 0; ti < nt; ti++) runTask(ti, true);
  // Combine in forward's order: the shared expert's output, then each expert's scaled rows.
  if (ly.hasShared) { const Task& t = w.tasks[0]; std::memcpy(out, buf + t.off + t.rows * (H + 2 * t.mlp->gate.n), sizeof(float) * n * H); }
  else std::fill(out, out + n * H, 0.f);
  for (const Task& t : w.tasks) {
    if (t.first < 0) continue;
    rowsAxpy(out, w.rowIdx.data() + t.first, buf + t.off + t.rows * (H + 2 * t.mlp->gate.n), nullptr, w.rowScale.data() + t.first, t.rows, H);
  }
}

void Engine::block(Work& w, const Layer& ly, float* h, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from) {
  const long H = c.H, n = (R - from) * H, o = from * H;
  float* x = w.sc.get(S_X, (size_t)(R * H));
  rmsnorm(h, ly.attnNorm, x, R, H, c.eps, nullptr);
  float* a = w.sc.get(S_ATT, (size_t)(R * H));
  mla(w, ly, x, R, segs, S, li, cs, sn, from, a);
  for (long i = 0; i < n; i++) h[o + i] = h[o + i] + a[i];
  rmsnorm(h + o, ly.ffnNorm, x, R - from, H, c.eps, nullptr);
  float* f = w.sc.get(S_FFN, (size_t)(R * H));
  if (ly.isMoe) moe(w, ly, x, R - from, f);
  else {
    const long I = ly.mlp.gate.n, W = std::max(H, I);
    if (w.qcodes.size() < (size_t)(R * W)) w.qcodes.resize((size_t)(R * W));
    swiglu(w, ly.mlp, x, R - from, w.sc.get(S_G, (size_t)(R * I)), w.sc.get(S_U, (size_t)(R * I)), f, true, w.qcodes.data(), w.sc.get(S_QD, (size_t)(R * W / 32 + 1)));
  }
  for (long i = 0; i < n; i++) h[o + i] = h[o + i] + f[i];
}

void Engine::runMain(const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits) {
  mainPass(work[0], tokens, R, segs, S, cs, sn, from, hidden, logits);
}

void Engine::runMtp(long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
                    float* hidden, float* logits) {
  mtpPass(work[0], depth, hin, next, R, segs, S, cs, sn, from, hidden, logits);
}

void Engine::mainPass(Work& w, const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits,
                      bool withHead) {
  const long H = c.H;
  float* h = w.sc.get(S_H, (size_t)(R * H));
  for (long r = 0; r < R; r++) std::memcpy(h + r * H, embed + (long)tokens[r] * H, sizeof(float) * H);
  for (long l = 0; l < (long)layers.size(); l++) block(w, layers[l], h, R, segs, S, (int)l, cs, sn, 0);
  rmsnorm(h, norm, hidden, R, H, c.eps, nullptr);
  if (withHead && R > from) linear(w, head, hidden + from * H, H, R - from, logits, c.V, true);
}

void Engine::linearCols(Work& w, const Mat& m, const float* x, long ldx, long R, float* y, long ldy, long j0, long j1) {
  matRows(m, inputRows(w, m, x, ldx, R), R, y, ldy, j0, j1);
}

void Engine::mtpPass(Work& w, long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
                     float* hidden, float* logits) {
  const Mtp& m = mtp[depth];
  const long H = c.H;
  // [RMSNorm(embed(t_{i+1})) | RMSNorm(h_i)] · eh_projᵀ (embedding first).
  float* cat = w.sc.get(S_CAT, (size_t)(R * 2 * H));
  for (long r = 0; r < R; r++) {
    rmsnorm(m.embed + (long)next[r] * H, m.enorm, cat + r * 2 * H, 1, H, c.eps, nullptr);
    rmsnorm(hin + r * H, m.hnorm, cat + r * 2 * H + H, 1, H, c.eps, nullptr);
  }
  float* h = w.sc.get(S_H, (size_t)(R * H));
  linear(w, m.eh, cat, 2 * H, R, h, H, true);
  block(w, m.layer, h, R, segs, S, 0, cs, sn, from);
  const long n = R - from;
  std::memcpy(hidden, h + from * H, sizeof(float) * n * H);
  float* normed = w.sc.get(S_X, (size_t)(n * H));
  rmsnorm(h + from * H, m.headNorm, normed, n, H, c.eps, nullptr);
  if (n > 0) linear(w, m.head, normed, H, n, logits, c.V, true);
}

namespace {
// First index of the largest of x[0, n) (as sampling.ts argmax: a later equal value does not win).
int32_t argmaxOf(const float* x, long n) {
  long b = 0;
  for (long j = 1; j < n; j++) if (x[j] > x[b]) b = j;
  return (int32_t)b;
}
}  // namespace

void Engine::runSpec(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn,
                     int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab,
                     float* hidden, float* logits, float* mtpLogits, int32_t* picks) {
  const long H = c.H, V = c.V, half = c.dr / 2;
  if (specHidden.size() < (size_t)H) specHidden.resize((size_t)H);
  auto drafting = [&](Work& w) {
    draft.mtpPass(w, 0, hin, next, m, &mseg, 1, mcs, msn, m - 1, specHidden.data(), mtpLogits);
    picks[0] = argmaxOf(mtpLogits, vocab);
  };
  if (poolThreads() < 2) {
    // One thread: the draft, then both rows in one pass (each weight read once for the two rows).
    drafting(draft.work[0]);
    const int32_t tok[2] = {token, picks[0]};
    const SegRef seg{mainStart, 2, mainCaches};
    mainPass(work[0], tok, 2, &seg, 1, cs, sn, 0, hidden, logits);
  } else {
    // Two threads: row 0 (the known token) on one; the draft and then row 1 on the other, whose
    // attention in layer l waits for row 0's latent of layer l. Chunks are claimed in order, so
    // whoever runs row 1 never waits on a row that nobody runs. Row 0's thread, done first, offers
    // to take the upper half of row 1's head: it waits only while row 1 runs on another thread,
    // and row 1 splits the head only with a thread that is waiting (headState 0 → 1 → 2), else
    // does it all (0 → 3); the columns are the same products either way.
    std::atomic<int> progress{0}, headState{0};
    std::atomic<bool> rowOneStarted{false}, upperDone{false};
    Work& w0 = work[0];
    Work& w1 = work[1];
    Work& wd = draft.work[1];
    w0.par = w1.par = wd.par = false;
    w0.publish = &progress;
    w1.await = &progress;
    const SegRef s0{mainStart, 1, mainCaches}, s1{mainStart + 1, 1, mainCaches};
    const long split = std::min(V, (V / 2 + 15) / 16 * 16);
    poolRunChunks(2, [&](long i, int) {
      if (i == 0) {
        mainPass(w0, &token, 1, &s0, 1, cs, sn, 0, hidden, logits);
        int expect = 0;
        if (!rowOneStarted.load(std::memory_order_acquire) || !headState.compare_exchange_strong(expect, 1, std::memory_order_acq_rel)) return;
        awaitAbove(headState, 1);
        linearCols(w0, head, hidden + H, H, 1, logits + V, V, split, V);
        upperDone.store(true, std::memory_order_release);
        return;
      }
      rowOneStarted.store(true, std::memory_order_release);
      drafting(wd);
      mainPass(w1, picks, 1, &s1, 1, cs + half, sn + half, 0, hidden + H, logits + V, false);
      int st = headState.load(std::memory_order_acquire);
      while (!headState.compare_exchange_weak(st, st == 1 ? 2 : 3, std::memory_order_acq_rel)) {}
      if (st == 1) {
        linearCols(w1, head, hidden + H, H, 1, logits + V, V, 0, split);
        while (!upperDone.load(std::memory_order_acquire)) awaitFlag(upperDone);
      } else linearCols(w1, head, hidden + H, H, 1, logits + V, V, 0, V);
    });
    w0.par = w1.par = wd.par = true;
    w0.publish = nullptr;
    w1.await = nullptr;
  }
  picks[1] = argmaxOf(logits, vocab);
  picks[2] = argmaxOf(logits + V, vocab);
}

long Engine::runSpecLoop(Engine& draft, float* hin, int32_t* next, int64_t* st, float* const* mainCaches, float* mtpCache, const float* cosT, const float* sinT,
                         long tableRows, long vocab, long steps, long budget, const int32_t* stops, long nStops, int32_t* out) {
  const long H = c.H, V = c.V, half = c.dr / 2;
  loopHidden.resize((size_t)(2 * H));
  loopLogits.resize((size_t)(2 * V));
  loopMtpLogits.resize((size_t)V);
  auto isStop = [&](int32_t t) {
    for (long i = 0; i < nStops; i++) if (stops[i] == t) return true;
    return false;
  };
  long count = 0;
  for (long k = 0; k < steps && count < budget; k++) {
    const int32_t x = (int32_t)st[0];
    const long n = (long)st[1], ms = (long)st[2], m = (long)st[3];
    if (n + 2 > tableRows) break;  // the caller sized the tables (and caches) for its steps
    float* mcache = mtpCache;
    const SegRef mseg{ms, m, &mcache};
    int32_t picks[3];
    runSpec(draft, hin, next, m, mseg, cosT + ms * half, sinT + ms * half, x, n, mainCaches, cosT + n * half, sinT + n * half, vocab,
            loopHidden.data(), loopLogits.data(), loopMtpLogits.data(), picks);
    st[4]++;
    const bool ok = picks[1] == picks[0];
    out[count++] = picks[1];
    bool stop = isStop(picks[1]) || count >= budget;
    if (ok) {
      st[5]++;
      if (!stop) {
        out[count++] = picks[2];
        stop = isStop(picks[2]) || count >= budget;
      }
      std::memcpy(hin, loopHidden.data(), sizeof(float) * 2 * H);
      next[0] = picks[0];
      next[1] = picks[2];
      st[0] = picks[2]; st[1] = n + 2; st[2] = n; st[3] = 2;
    } else {
      std::memcpy(hin, loopHidden.data(), sizeof(float) * H);
      next[0] = picks[1];
      st[0] = picks[1]; st[1] = n + 1; st[2] = n; st[3] = 1;
    }
    if (stop) break;
  }
  return count;
}

}  // namespace dec
}  // namespace frugal
