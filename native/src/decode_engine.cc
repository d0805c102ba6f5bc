// The decode engine's passes (see decode.h and src/model/decode.ts, whose TypeScript path it
// mirrors step for step): the main model over R token rows, or MTP depth d over (hidden, next
// token) rows, each in one call. Rows come in segments (consecutive positions of one sequence's
// latent cache); every row writes its latent [ĉ | k_pe] at its position and attends over its own
// sequence's rows [0, pos]. Scratch is owned by the engine and only grows.
//
// Threads: with 2+ pool threads a pass runs as a team (decode_engine.h Team): every thread runs
// the whole pass, computing a static share of each product's output columns (pieces of 16), of the
// attention's rows or heads, and meeting the others (a spin on a counter, ~50 ns) before anyone
// reads a product: six meetings a layer. Norms, routing and residual adds run on every thread into
// its own buffers. When no team can run (the pool is busy or guarded), a one-thread pass splits
// large products over the pool instead: by output columns, the MoE layer by experts (shared expert
// and each routed expert one task each, combined afterwards in ascending expert order), long
// attention by heads. None of this changes any sum's order, so results do not depend on the thread
// count, and rows never interact.
#include "decode_engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

float* Work::shared(int slot, size_t n) {
  if (!team) return sc.get(slot, n);
  std::vector<float>& b = team->sc.bufs[slot];
  if (b.size() < n) {  // reserveTeam sized it: a member must never resize what the others read
    std::fprintf(stderr, "frugal decode engine: team buffer %d holds %zu floats, %zu needed\n", slot, b.size(), n);
    std::abort();
  }
  return b.data();
}

void Work::cols(long n, long& j0, long& j1) const {
  if (nt <= 1) { j0 = 0; j1 = n; return; }
  const long units = (n + 15) / 16;
  j0 = std::min(n, units * tid / nt * 16);
  j1 = std::min(n, units * (tid + 1) / nt * 16);
}

void Team::sync(int tid) {
  const long e = ++slot[tid].mine;
  slot[tid].v.store(e, std::memory_order_release);
  for (int t = 0; t < n; t++) {
    if (t == tid) continue;
    const std::atomic<long>& v = slot[t].v;
    if (v.load(std::memory_order_acquire) >= e) continue;
    // Spin (the others are a few products away), then yield the core: the member being waited
    // for may be queued behind this thread on a loaded machine.
    std::chrono::steady_clock::time_point t0{};
    for (long spins = 0; v.load(std::memory_order_acquire) < e; spins++) {
#if FRUGAL_X86
      if (spins < 8192) { _mm_pause(); continue; }
#endif
      if (t0 == std::chrono::steady_clock::time_point{}) t0 = std::chrono::steady_clock::now();
      std::this_thread::yield();
      if (!stalled.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(1))
        stalled.store(true, std::memory_order_relaxed);
    }
  }
}

void Engine::reserveTeam(long R) {
  if (teamFfn < 0) {
    teamFfn = teamExpert = 0;
    auto widen = [&](const Layer& ly) {
      if (!ly.isMoe) { teamFfn = std::max(teamFfn, ly.mlp.gate.n); return; }
      if (ly.hasShared) teamExpert = std::max(teamExpert, ly.shared.gate.n);
      for (const Mlp& e : ly.experts) teamExpert = std::max(teamExpert, e.gate.n);
    };
    for (const Layer& ly : layers) widen(ly);
    for (const Mtp& m : mtp) widen(m.layer);
  }
  const long H = c.H, D = c.rkv + c.dr, nh = c.nh, k = c.topk, W = std::max(H, teamExpert);
  Scratch& s = team.sc;
  s.get(S_H, (size_t)(R * H));
  s.get(S_KV, (size_t)(R * D));
  s.get(S_QA, (size_t)(R * std::max(c.rq, 1L)));
  s.get(S_Q, (size_t)(R * nh * (c.dn + c.dr)));
  s.get(S_O, (size_t)(R * nh * c.dv));
  s.get(S_ATT, (size_t)(R * H));
  s.get(S_FFN, (size_t)(R * H));
  s.get(S_G, (size_t)(R * teamFfn));
  s.get(S_U, (size_t)(R * teamFfn));
  // moe's task layout: rows·(2H + 2I + W + W/32) + 16 per task; R + R·k rows over ≤ 1 + R·k tasks.
  s.get(S_TASK, (size_t)((R + R * k) * (2 * H + 2 * teamExpert + W + W / 32 + 1) + 16 * (1 + R * k)));
}

namespace {
std::atomic<bool> g_teams{true};
}  // namespace

bool setTeams(bool on) { return g_teams.exchange(on); }

template <class F>
bool Engine::inTeam(long R, Engine* other, F f) {
  const int T = std::min(poolThreads(), kMaxTeam);
  if (T < 2 || !g_teams.load(std::memory_order_relaxed)) return false;
  reserveTeam(R);
  team.n = T;
  for (int t = 0; t < kMaxTeam; t++) { team.slot[t].v.store(0, std::memory_order_relaxed); team.slot[t].mine = 0; }
  team.stalled.store(false, std::memory_order_relaxed);
  auto join = [&](Work& w, int tid, bool on) { w.tid = on ? tid : 0; w.nt = on ? T : 1; w.team = on ? &team : nullptr; };
  const bool ran = poolTeam(T, [&](int tid) {
    join(work[tid], tid, true);
    if (other) join(other->work[tid], tid, true);
    f(tid);
    join(work[tid], tid, false);
    if (other) join(other->work[tid], tid, false);
  });
  if (ran) poolNoteTeamStall(team.stalled.load(std::memory_order_relaxed));
  return ran;
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
  if (w.nt > 1) {
    long j0, j1;
    w.cols(m.n, j0, j1);
    if (j0 < j1) matRows(m, xs, R, y, ldy, j0, j1);
    return;
  }
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

// swiglu's two halves for a team member: phase 0 its columns of g = SiLU(x·gateᵀ)·(x·upᵀ) (g, u
// shared), phase 1 (after a meeting) its columns of y = g·downᵀ. SiLU is elementwise, so a column
// range of it equals the whole.
void Engine::ffnPiece(Work& w, const Mlp& m, const float* x, long R, float* g, float* u, float* y, int16_t* qb, float* db, int phase) {
  const long H = c.H, I = m.gate.n;
  long j0, j1;
  if (phase == 0) {
    Rows xs{x, H};
    if (m.gate.fmt == Q8) { quantizeRowsQ8(x, H, R, H, qb, db); xs.q = qb; xs.d = db; }
    w.cols(I, j0, j1);
    if (j0 >= j1) return;
    matRows(m.gate, xs, R, g, I, j0, j1);
    matRows(m.up, xs, R, u, I, j0, j1);
    for (long r = 0; r < R; r++) siluMul(g + r * I + j0, u + r * I + j0, g + r * I + j0, j1 - j0);
    return;
  }
  Rows gs{g, I};
  if (m.down.fmt == Q8) { quantizeRowsQ8(g, I, R, I, qb, db); gs.q = qb; gs.d = db; }
  w.cols(H, j0, j1);
  if (j0 < j1) matRows(m.down, gs, R, y, H, j0, j1);
}

void Engine::mla(Work& w, const Layer& ly, const float* x, long R, const SegRef* segs, long S, int li, const float* cs, const float* sn, long from, float* out) {
  const long H = c.H, nh = c.nh, dn = c.dn, dr = c.dr, dv = c.dv, rkv = c.rkv, dq = dn + dr, D = rkv + dr, half = dr / 2;
  const bool team = w.nt > 1;
  const long Rq = R - from;
  const float* xq = x + from * H;
  float* kv = w.shared(S_KV, (size_t)(R * D));
  float* q = w.shared(S_Q, (size_t)(Rq * nh * dq));
  // Products of x: the latent (all rows) and the query (rows from..R-1).
  linear(w, ly.kvA, x, H, R, kv, D, true);
  if (!ly.qA.w) {
    linear(w, ly.q, xq, H, Rq, q, nh * dq, true);
    w.sync();
  } else {
    float* qa = w.shared(S_QA, (size_t)(Rq * c.rq));
    linear(w, ly.qA, xq, H, Rq, qa, c.rq, true);
    w.sync();
    float* qan = w.sc.get(S_QAN, (size_t)(Rq * c.rq));
    rmsnorm(qa, ly.qANorm, qan, Rq, c.rq, c.eps, nullptr);
    linear(w, ly.qB, qan, c.rq, Rq, q, nh * dq, true);
  }
  // Latent rows into each segment's cache: ĉ = RMSNorm(c), k_pe roped at the row's position.
  if (w.tid == 0) {
    long r = 0;
    for (long s = 0; s < S; s++) {
      float* cache = segs[s].caches[li];
      for (long i = 0; i < segs[s].rows; i++, r++) {
        float* row = cache + (segs[s].start + i) * D;
        rmsnorm(kv + r * D, ly.kvANorm, row, 1, rkv, c.eps, nullptr);
        rotate(kv + r * D + rkv, row + rkv, cs + r * half, sn + r * half, half);
      }
    }
  }
  w.sync();  // the query and every latent row are in place
  // Query rows with their context: each row over its own sequence's rows [0, pos].
  w.qrows.clear();
  long work = 0, maxL = 0;
  {
    long r = 0;
    for (long s = 0; s < S; s++)
      for (long i = 0; i < segs[s].rows; i++, r++) {
        if (r < from) continue;
        const long L0 = segs[s].start + i + 1, skip = w.window > 0 && L0 > w.window ? L0 - w.window : 0, L = L0 - skip;
        w.qrows.push_back({segs[s].caches[li] + skip * D, L});
        work += L * nh * D;
        maxL = std::max(maxL, L);
      }
  }
  // Units (head h, query row r): a team member takes a contiguous share. One sequence's rows go
  // head-major, so the rows of a head attend together (each latent row loaded once for up to 8
  // queries); rows of several sequences go row-major, so a row's heads share its cache's loads.
  const long U = nh * Rq;
  const bool headMajor = S == 1;
  const long u0 = team ? U * w.tid / w.nt : 0, u1 = team ? U * (w.tid + 1) / w.nt : U;
  auto headOf = [&](long u) { return headMajor ? u / Rq : u % nh; };
  auto rowOf = [&](long u) { return headMajor ? u % Rq : u / nh; };
  // Attention queries [Rq, nh, D] = [q_nope·W_UK | rope(q_pe)], scaled as the attention kernel does.
  float* qa = w.sc.get(S_QATT, (size_t)(Rq * nh * D));
  float* oLat = w.sc.get(S_OLAT, (size_t)(Rq * nh * rkv));
  const long blk = (dn + dv) * rkv;
  for (long u = u0; u < u1; u++) {
    const long h = headOf(u), r2 = rowOf(u);
    const float* qh = q + (r2 * nh + h) * dq;
    float* dst = qa + (r2 * nh + h) * D;
    streamRow(qh, ly.kvB + h * blk, rkv, dn, dst, rkv);
    rotate(qh + dn, dst + rkv, cs + (from + r2) * half, sn + (from + r2) * half, half);
    for (long d = 0; d < D; d++) dst[d] *= c.scale;
  }
  // Units [ua, ub) in groups of up to 8 consecutive units over the same cache rows.
  auto attend = [&](long ua, long ub, float* scores) {
    AttnQuery qs[8];
    long n = 0;
    const float* gc = nullptr;
    for (long u = ua; u <= ub; u++) {
      const float* cu = u < ub ? w.qrows[rowOf(u)].cache : nullptr;
      if (n > 0 && (n == 8 || u == ub || cu != gc)) { latentAttendQueries(qs, n, gc, D, rkv, scores, maxL); n = 0; }
      if (u == ub) break;
      const long h = headOf(u), r2 = rowOf(u);
      gc = cu;
      qs[n++] = {qa + (r2 * nh + h) * D, w.qrows[r2].L, oLat + (r2 * nh + h) * rkv};
    }
  };
  const int T = team ? 1 : w.par ? poolThreads() : 1;
  if (T > 1 && work >= kTaskWork && U > 1) {
    // A one-thread pass with the pool: a task per head (one sequence) or per row (several), each
    // with its own scores.
    const long tasks = headMajor ? nh : Rq, per = U / tasks;
    float* scores = w.sc.get(S_SCORE, (size_t)(tasks * 8 * maxL));
    poolRunChunks(tasks, [&](long i, int) { attend(i * per, (i + 1) * per, scores + i * 8 * maxL); });
  } else attend(u0, u1, w.sc.get(S_SCORE, (size_t)(8 * maxL)));
  // o[h] = o_lat[h] · W_UV[h]ᵀ (W_UV[h] starts dn rows into block h), then o_proj.
  float* o = w.shared(S_O, (size_t)(Rq * nh * dv));
  for (long u = u0; u < u1;) {
    // A run of rows of head h (head-major: one product for them; row-major: one row).
    const long h = headOf(u), r0 = rowOf(u), rows = headMajor ? std::min(u1 - u, Rq - r0) : 1;
    const Mat wuv{F32, ly.kvB + h * blk + dn * rkv, dv, rkv};
    matRows(wuv, Rows{oLat + r0 * nh * rkv + h * rkv, nh * rkv}, rows, o + r0 * nh * dv + h * dv, nh * dv, 0, dv);
    u += rows;
  }
  w.sync();
  linear(w, ly.o, o, nh * dv, Rq, out, H, true);
  w.sync();
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
  // Buffers per task: x rows (gathered), g, u [rows, I], the output [rows, H], Q8_0 codes. In a
  // team pass g, u and the output are the team's (each member writes its columns); the gathered
  // rows and codes are each member's own.
  size_t need = 0;
  for (auto& t : w.tasks) {
    const long I = t.mlp->gate.n, W = std::max(H, I);
    t.off = (long)need;
    need += (size_t)(t.rows * (2 * H + 2 * I) + t.rows * W + t.rows * W / 32 + 16);
  }
  float* own = w.sc.get(S_TASK, need);
  float* buf = w.nt > 1 ? w.shared(S_TASK, need) : own;
  auto runTask = [&](long ti, bool par, int phase) {
    const Task& t = w.tasks[ti];
    const long I = t.mlp->gate.n, W = std::max(H, I);
    float* xe = own + t.off;
    float* g = buf + t.off + t.rows * H;
    float* u = g + t.rows * I;
    float* y = u + t.rows * I;
    int16_t* qb = (int16_t*)(own + t.off + t.rows * (2 * H + 2 * I));
    float* db = own + t.off + t.rows * (2 * H + 2 * I) + t.rows * W;
    const float* xin = x;
    if (t.first >= 0) {
      if (phase <= 0) for (long i = 0; i < t.rows; i++) std::memcpy(xe + i * H, x + w.rowIdx[t.first + i] * H, sizeof(float) * H);
      xin = xe;
    }
    if (phase < 0) swiglu(w, *t.mlp, xin, t.rows, g, u, y, par, qb, db);
    else ffnPiece(w, *t.mlp, xin, t.rows, g, u, y, qb, db, phase);
  };
  const long nt = (long)w.tasks.size();
  if (w.nt > 1) {
    for (long ti = 0; ti < nt; ti++) runTask(ti, false, 0);
    w.sync();
    for (long ti = 0; ti < nt; ti++) runTask(ti, false, 1);
    w.sync();
  } else if (w.par && poolThreads() > 1 && nt > 1 && 3 * H * work >= kTaskWork) poolRunChunks(nt, [&](long ti, int) { runTask(ti, false, -1); });
  else for (long ti = 0; ti < nt; ti++) runTask(ti, true, -1);
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
  float* a = w.shared(S_ATT, (size_t)(R * H));
  mla(w, ly, x, R, segs, S, li, cs, sn, from, a);
  for (long i = 0; i < n; i++) h[o + i] = h[o + i] + a[i];
  rmsnorm(h + o, ly.ffnNorm, x, R - from, H, c.eps, nullptr);
  float* f;
  if (ly.isMoe) {
    f = w.sc.get(S_FFN, (size_t)(R * H));
    moe(w, ly, x, R - from, f);
  } else {
    const long I = ly.mlp.gate.n, W = std::max(H, I);
    if (w.qcodes.size() < (size_t)(R * W)) w.qcodes.resize((size_t)(R * W));
    float* g = w.shared(S_G, (size_t)(R * I));
    float* u = w.shared(S_U, (size_t)(R * I));
    f = w.shared(S_FFN, (size_t)(R * H));
    float* qd = w.sc.get(S_QD, (size_t)(R * W / 32 + 1));
    if (w.nt > 1) {
      ffnPiece(w, ly.mlp, x, R - from, g, u, f, w.qcodes.data(), qd, 0);
      w.sync();
      ffnPiece(w, ly.mlp, x, R - from, g, u, f, w.qcodes.data(), qd, 1);
      w.sync();
    } else swiglu(w, ly.mlp, x, R - from, g, u, f, true, w.qcodes.data(), qd);
  }
  for (long i = 0; i < n; i++) h[o + i] = h[o + i] + f[i];
}

void Engine::runMain(const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits) {
  if (inTeam(R, nullptr, [&](int tid) { mainPass(work[tid], tokens, R, segs, S, cs, sn, from, hidden, logits); })) return;
  mainPass(work[0], tokens, R, segs, S, cs, sn, from, hidden, logits);
}

void Engine::runMtp(long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
                    float* hidden, float* logits, long window) {
  auto pass = [&](Work& w) {
    w.window = window;
    mtpPass(w, depth, hin, next, R, segs, S, cs, sn, from, hidden, logits);
    w.window = 0;
  };
  if (inTeam(R, nullptr, [&](int tid) { pass(work[tid]); })) return;
  pass(work[0]);
}

void Engine::mainPass(Work& w, const int32_t* tokens, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from, float* hidden, float* logits,
                      bool withHead) {
  const long H = c.H;
  float* h = w.sc.get(S_H, (size_t)(R * H));
  for (long r = 0; r < R; r++) std::memcpy(h + r * H, embed + (long)tokens[r] * H, sizeof(float) * H);
  for (long l = 0; l < (long)layers.size(); l++) block(w, layers[l], h, R, segs, S, (int)l, cs, sn, 0);
  // Every member normalises its own copy; the first writes it out.
  float* normed = w.nt > 1 ? w.sc.get(S_X, (size_t)(R * H)) : hidden;
  rmsnorm(h, norm, normed, R, H, c.eps, nullptr);
  if (normed != hidden && w.tid == 0) std::memcpy(hidden, normed, sizeof(float) * R * H);
  if (withHead && R > from) linear(w, head, normed + from * H, H, R - from, logits, c.V, true);
}

void Engine::mtpPass(Work& w, long depth, const float* hin, const int32_t* next, long R, const SegRef* segs, long S, const float* cs, const float* sn, long from,
                     float* hidden, float* logits, float* normedOut, bool draftHead) {
  const Mtp& m = mtp[depth];
  const long H = c.H;
  // [RMSNorm(embed(t_{i+1})) | RMSNorm(h_i)] · eh_projᵀ (embedding first).
  float* cat = w.sc.get(S_CAT, (size_t)(R * 2 * H));
  for (long r = 0; r < R; r++) {
    rmsnorm(m.embed + (long)next[r] * H, m.enorm, cat + r * 2 * H, 1, H, c.eps, nullptr);
    rmsnorm(hin + r * H, m.hnorm, cat + r * 2 * H + H, 1, H, c.eps, nullptr);
  }
  float* h = w.sc.get(S_H, (size_t)(R * H));
  if (w.nt > 1) {
    float* eh = w.shared(S_H, (size_t)(R * H));
    linear(w, m.eh, cat, 2 * H, R, eh, H, true);
    w.sync();
    std::memcpy(h, eh, sizeof(float) * R * H);
  } else linear(w, m.eh, cat, 2 * H, R, h, H, true);
  block(w, m.layer, h, R, segs, S, 0, cs, sn, from);
  const long n = R - from;
  if (w.tid == 0) std::memcpy(hidden, h + from * H, sizeof(float) * n * H);
  float* normed = w.sc.get(S_X, (size_t)(n * H));
  rmsnorm(h + from * H, m.headNorm, normed, n, H, c.eps, nullptr);
  if (normedOut && n > 0) std::memcpy(normedOut, normed + (n - 1) * H, sizeof(float) * H);
  if (draftHead && n == 1 && m.draftHead.n > 0) {
    long j0, j1;
    w.cols(c.V, j0, j1);
    uint8_t* xq = (uint8_t*)w.sc.get(S_QD, (size_t)(H / 4 + 16));
    if (j0 < j1) m.draftHead.logits(normed, xq, logits, j0, j1);
  } else if (n > 0) linear(w, m.head, normed, H, n, logits, c.V, true);
}

namespace {
// First index of the largest of x[0, n) (as sampling.ts argmax: a later equal value does not win).
int32_t argmaxScalar(const float* x, long n) {
  long b = 0;
  for (long j = 1; j < n; j++) if (x[j] > x[b]) b = j;
  return (int32_t)b;
}

#if FRUGAL_HAVE_X86_KERNELS
// The same pick: the largest value (NaN-free input), then its first index; any NaN takes the
// scalar scan, whose comparisons NaN never wins.
FRUGAL_AVX512 int32_t argmax512(const float* x, long n) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  __mmask16 nan = 0;
  for (long j = 0; j < n; j += 16) {
    const __mmask16 mk = j + 16 <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(mk, x + j);
    nan |= _mm512_mask_cmp_ps_mask(mk, v, v, _CMP_UNORD_Q);
    mx = _mm512_mask_max_ps(mx, mk, mx, v);
  }
  if (nan) return argmaxScalar(x, n);
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  for (long j = 0; j < n; j += 16) {
    const __mmask16 mk = j + 16 <= n ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
    const __mmask16 eq = _mm512_mask_cmp_ps_mask(mk, _mm512_maskz_loadu_ps(mk, x + j), m, _CMP_EQ_OQ);
    if (eq) return (int32_t)(j + __builtin_ctz((unsigned)eq));
  }
  return 0;
}
#endif

int32_t argmaxOf(const float* x, long n) {
#if FRUGAL_HAVE_X86_KERNELS
  if (cpu().isa == Isa::Avx512 && n > 0) return argmax512(x, n);
#endif
  return argmaxScalar(x, n);
}
}  // namespace

void Engine::specStep(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn, const float* chainCs,
                      const float* chainSn, float* mtpCache, int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab,
                      long K, float* hidden, float* logits, float* mtpLogits, int32_t* picks, bool useDraftHead, long draftWindow) {
  const long H = c.H, V = c.V, half = c.dr / 2;
  if (specHidden.size() < (size_t)H) specHidden.resize((size_t)H);
  const SegRef seg{mainStart, K + 1, mainCaches};
  // The int8 draft head, built once (before any team starts: members only read it).
  DraftHead& dh = draft.mtp[0].draftHead;
  if (useDraftHead && dh.n == 0 && !dh.build(draft.mtp[0].head)) dh.n = -1;
  const bool approx = useDraftHead && dh.n > 0;
  // The drafts, then all rows in one pass (each weight read once for the K + 1 rows); with 2+
  // threads the whole step is one team pass, every member taking each draft from the shared logits.
  auto step = [&](int tid, Work& wd, Work& wm) {
    int32_t tok[kMaxDrafts + 1];
    tok[0] = token;
    float* chain = K > 1 ? wd.sc.get(S_CHAIN, (size_t)(2 * H)) : nullptr;
    float* mc = mtpCache;
    wd.window = draftWindow;
    for (long k = 0; k < K; k++) {
      float* into = chain ? chain + (k & 1) * H : nullptr;
      if (k == 0) draft.mtpPass(wd, 0, hin, next, m, &mseg, 1, mcs, msn, m - 1, specHidden.data(), mtpLogits, into, approx);
      else {
        const SegRef cseg{mainStart + k - 1, 1, &mc};
        draft.mtpPass(wd, 0, chain + ((k - 1) & 1) * H, &tok[k], 1, &cseg, 1, chainCs + (k - 1) * half, chainSn + (k - 1) * half, 0, specHidden.data(), mtpLogits,
                      into, approx);
      }
      wd.sync();
      tok[k + 1] = argmaxOf(mtpLogits, vocab);
      if (tid == 0) picks[k] = tok[k + 1];
    }
    wd.window = 0;
    mainPass(wm, tok, K + 1, &seg, 1, cs, sn, 0, hidden, logits);
  };
  if (!inTeam(std::max(m, K + 1), &draft, [&](int tid) { step(tid, draft.work[tid], work[tid]); })) step(0, draft.work[0], work[0]);
  for (long k = 0; k <= K; k++) picks[K + k] = argmaxOf(logits + k * V, vocab);
}

void Engine::runSpec(Engine& draft, const float* hin, const int32_t* next, long m, const SegRef& mseg, const float* mcs, const float* msn,
                     int32_t token, long mainStart, float* const* mainCaches, const float* cs, const float* sn, long vocab,
                     float* hidden, float* logits, float* mtpLogits, int32_t* picks) {
  specStep(draft, hin, next, m, mseg, mcs, msn, nullptr, nullptr, nullptr, token, mainStart, mainCaches, cs, sn, vocab, 1, hidden, logits, mtpLogits, picks);
}

long Engine::runSpecLoop(Engine& draft, float* hin, int32_t* next, int64_t* st, float* const* mainCaches, float* mtpCache, const float* cosT, const float* sinT,
                         long tableRows, long vocab, long steps, long budget, const int32_t* stops, long nStops, int32_t* out, long drafts,
                         int32_t* draftsOut, bool exactHead, long draftWindow) {
  const long H = c.H, V = c.V, half = c.dr / 2, K = std::max(1L, std::min(drafts, kMaxDrafts));
  loopHidden.resize((size_t)((K + 1) * H));
  loopLogits.resize((size_t)((K + 1) * V));
  loopMtpLogits.resize((size_t)V);
  auto isStop = [&](int32_t t) {
    for (long i = 0; i < nStops; i++) if (stops[i] == t) return true;
    return false;
  };
  long count = 0;
  for (long k = 0; k < steps && count < budget; k++) {
    const int32_t x = (int32_t)st[0];
    const long n = (long)st[1], ms = (long)st[2], m = (long)st[3];
    if (n + K + 1 > tableRows) break;  // the caller sized the tables (and caches) for its steps
    float* mcache = mtpCache;
    const SegRef mseg{ms, m, &mcache};
    int32_t picks[2 * kMaxDrafts + 1];
    specStep(draft, hin, next, m, mseg, cosT + ms * half, sinT + ms * half, cosT + n * half, sinT + n * half, mtpCache, x, n, mainCaches, cosT + n * half,
             sinT + n * half, vocab, K, loopHidden.data(), loopLogits.data(), loopMtpLogits.data(), picks, !exactHead, draftWindow);
    if (draftsOut) std::memcpy(draftsOut + k * K, picks, sizeof(int32_t) * K);
    // Drafts d1…dK = picks[0, K); main row i's argmax a_i = picks[K + i] (a_i checks d(i+1)).
    long j = 0;
    while (j < K && picks[K + j] == picks[j]) j++;
    st[4] += K;
    st[5] += j;
    bool stop = false;
    for (long i = 0; i <= j && !stop; i++) {
      out[count++] = picks[K + i];
      stop = isStop(picks[K + i]) || count >= budget;
    }
    // Rows n…n+j are the main model's (the drafts' rows past the first rejected one are dropped):
    // they are the next step's MTP rows, reading tokens d1…dj then a_j.
    std::memcpy(hin, loopHidden.data(), sizeof(float) * (j + 1) * H);
    for (long i = 0; i < j; i++) next[i] = picks[i];
    next[j] = picks[K + j];
    st[0] = picks[K + j]; st[1] = n + j + 1; st[2] = n; st[3] = j + 1;
    if (stop) break;
  }
  return count;
}

}  // namespace dec
}  // namespace frugal
