// N-API entry points of the decode engine (decode_engine.cc): decodeEngineCreate builds an engine
// from the model's typed arrays (every size checked against the config; the arrays are held by
// references for the engine's life), decodeEngineMain / decodeEngineMtp run one pass. Every
// argument is validated and a bad one throws a TypeError/RangeError naming it, so no call reads or
// writes out of bounds. Array order: see src/model/decode-engine.ts (engineArrays).
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "decode_engine.h"
#include "napi_args.h"

namespace frugal {
namespace {

using namespace dec;
using napi::Fail;
using napi::guard;

struct Held {
  Engine engine;
  std::vector<napi_ref> refs;
};

const napi_type_tag kTag = {0x66727567616c6465ULL, 0x636f6465656e6731ULL};  // "frugalde" "codeeng1"

[[noreturn]] void throwType(napi_env env, const char* fn, const std::string& m) { napi::Ctx{env, fn}.type(m); }
[[noreturn]] void throwRange(napi_env env, const char* fn, const std::string& m) { napi::Ctx{env, fn}.range(m); }

struct View { napi_typedarray_type t; size_t len; void* p; };

bool viewOf(napi_env env, napi_value v, View* out) {
  bool is = false;
  napi_is_typedarray(env, v, &is);
  if (!is) return false;
  napi_get_typedarray_info(env, v, &out->t, &out->len, &out->p, nullptr, nullptr);
  return true;
}

template <class T>
T* typed(napi_env env, const char* fn, napi_value v, napi_typedarray_type want, const char* name, size_t need) {
  return napi::Ctx{env, fn}.arr<T>(v, want, name, (double)need);
}

long countOf(napi_env env, const char* fn, napi_value v, const char* name, long max) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || !std::isfinite(d) || d < 0 || d != std::floor(d) || d > (double)max)
    throwRange(env, fn, std::string(name) + " must be an integer in [0, " + std::to_string(max) + "]");
  return (long)d;
}

// Optional argument i: `dflt` when absent or undefined, else a count in [0, max] (countOf).
long optCount(napi_env env, const char* fn, size_t argc, const napi_value* a, size_t i, const char* name, long max, long dflt) {
  napi_valuetype t = napi_undefined;
  if (argc > i) napi_typeof(env, a[i], &t);
  return t == napi_undefined ? dflt : countOf(env, fn, a[i], name, max);
}

// Reads the model arrays in engineArrays order, checking each against the config.
struct Reader {
  napi_env env;
  napi_value arr;
  uint32_t n, i = 0;
  Held* held;
  const char* fn = "decodeEngineCreate";

  napi_value next(bool* present) {
    if (i >= n) throwRange(env, fn, "arrays: too few (" + std::to_string(n) + ")");
    napi_value v;
    napi_get_element(env, arr, i++, &v);
    napi_valuetype t;
    napi_typeof(env, v, &t);
    *present = t != napi_null && t != napi_undefined;
    return v;
  }
  void hold(napi_value v) {
    napi_ref r;
    napi_create_reference(env, v, 1, &r);
    held->refs.push_back(r);
  }
  [[noreturn]] void bad(const std::string& what) { throwRange(env, fn, "arrays[" + std::to_string(i - 1) + "] " + what); }
  /** An entry that must be null (the alternative form is in use). */
  void none() {
    bool has;
    next(&has);
    if (has) bad("must be null here");
  }
  /** A Float32Array of exactly `len` elements, or null when `optional` and absent. */
  const float* vec(long len, bool optional = false) {
    bool has;
    napi_value v = next(&has);
    if (!has) { if (optional) return nullptr; bad("is missing"); }
    View w{};
    if (!viewOf(env, v, &w) || w.t != napi_float32_array) bad("must be a Float32Array");
    if ((long)w.len != len) bad("has " + std::to_string(w.len) + " elements, expected " + std::to_string(len));
    hold(v);
    return (const float*)w.p;
  }
  /** A matrix [n, k] (n = -1: deduced from the length): Float32Array f32, Uint16Array bf16, Uint8Array Q8_0. */
  Mat mat(long n, long k, bool optional = false) {
    bool has;
    napi_value v = next(&has);
    Mat m;
    if (!has) { if (optional) return m; bad("is missing"); }
    View w{};
    if (!viewOf(env, v, &w)) bad("must be a typed array");
    long per;  // elements per output row
    if (w.t == napi_float32_array) { m.fmt = F32; per = k; }
    else if (w.t == napi_uint16_array) { m.fmt = BF16; per = k; }
    else if (w.t == napi_uint8_array) {
      if (k % 32 != 0) bad("is Q8_0 but its width " + std::to_string(k) + " is not a multiple of 32");
      m.fmt = Q8; per = k / 32 * 34;
    } else bad("must be a Float32Array, Uint16Array (bf16) or Uint8Array (Q8_0)");
    if (n < 0) {
      if (w.len == 0 || (long)w.len % per != 0) bad("has " + std::to_string(w.len) + " elements, not a whole number of rows of " + std::to_string(per));
      n = (long)w.len / per;
    }
    if ((long)w.len != n * per) bad("has " + std::to_string(w.len) + " elements, expected " + std::to_string(n * per) + " (" + std::to_string(n) + "×" + std::to_string(k) + ")");
    m.w = w.p; m.n = n; m.k = k;
    hold(v);
    return m;
  }
  Mlp mlp(long H, bool optional) {
    Mlp m;
    m.gate = mat(-1, H, optional);
    if (!m.gate.w) { none(); none(); return m; }
    m.up = mat(m.gate.n, H);
    m.down = mat(H, m.gate.n);
    return m;
  }
  void layer(Layer& ly, const Cfg& c, bool moe) {
    const long H = c.H, dq = c.dn + c.dr;
    ly.attnNorm = vec(H);
    ly.ffnNorm = vec(H);
    if (c.rq > 0) {
      none();
      ly.qA = mat(c.rq, H);
      ly.qANorm = vec(c.rq);
      ly.qB = mat(c.nh * dq, c.rq);
    } else {
      ly.q = mat(c.nh * dq, H);
      none(); none(); none();
    }
    ly.kvA = mat(c.rkv + c.dr, H);
    ly.kvANorm = vec(c.rkv);
    ly.kvB = vec(c.nh * (c.dn + c.dv) * c.rkv);
    ly.o = mat(H, c.nh * c.dv);
    ly.isMoe = moe;
    if (!moe) { ly.mlp = mlp(H, false); return; }
    ly.router = vec(c.E * H);
    ly.bias = vec(c.E, true);
    ly.shared = mlp(H, true);
    ly.hasShared = ly.shared.gate.w != nullptr;
    ly.experts.resize((size_t)c.E);
    for (long e = 0; e < c.E; e++) ly.experts[(size_t)e] = mlp(H, false);
  }
};

void finalize(napi_env env, void* data, void*) {
  Held* h = static_cast<Held*>(data);
  for (napi_ref r : h->refs) napi_delete_reference(env, r);
  delete h;
}

// decodeEngineCreate(cfg: Float64Array, kinds: Int32Array [L + nMtp] (1 = MoE), arrays: Array)
napi_value Create(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    const char* fn = "decodeEngineCreate";
    size_t argc = 3;
    napi_value a[3];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    if (argc < 3) throwType(env, fn, "expected (cfg, kinds, arrays)");
    const double* f = typed<double>(env, fn, a[0], napi_float64_array, "cfg", 20);
    for (int i = 0; i < 20; i++) if (!std::isfinite(f[i]) || f[i] < 0 || f[i] > 1e9) throwRange(env, fn, "cfg[" + std::to_string(i) + "] out of range");
    auto L = [&](int i) { return (long)f[i]; };
    Cfg c{L(0), L(1), L(2), L(3), L(4), L(5), L(6), L(7), L(8), L(9), L(10), L(11), L(12), f[13] != 0, f[14] != 0, f[15] != 0, f[16], (float)f[17], (float)f[18]};
    const long nMtp = L(19);
    if (c.H < 1 || c.V < 1 || c.nh < 1 || c.rkv < 1 || c.dr % 2 != 0 || c.E > kMaxExperts || c.topk > c.E || (c.E > 0 && (c.G < 1 || c.E % c.G != 0 || c.Gk > c.G)))
      throwRange(env, fn, "cfg: inconsistent model dimensions");
    const int32_t* kinds = typed<int32_t>(env, fn, a[1], napi_int32_array, "kinds", (size_t)(c.L + nMtp));
    bool isArr = false;
    napi_is_array(env, a[2], &isArr);
    if (!isArr) throwType(env, fn, "arrays must be an Array");
    auto held = std::make_unique<Held>();
    Reader rd{env, a[2], 0, 0, held.get()};
    napi_get_array_length(env, a[2], &rd.n);
    try {
      Engine& e = held->engine;
      e.c = c;
      e.embed = rd.vec(c.V * c.H);
      e.norm = rd.vec(c.H);
      e.head = rd.mat(c.V, c.H);
      e.layers.resize((size_t)c.L);
      for (long l = 0; l < c.L; l++) {
        if (kinds[l] == 1 && c.E < 1) throwRange(env, fn, "kinds: a MoE layer in a model without routed experts");
        rd.layer(e.layers[(size_t)l], c, kinds[l] == 1);
      }
      e.mtp.resize((size_t)nMtp);
      for (long d = 0; d < nMtp; d++) {
        Mtp& m = e.mtp[(size_t)d];
        m.embed = rd.vec(c.V * c.H);
        m.enorm = rd.vec(c.H);
        m.hnorm = rd.vec(c.H);
        m.eh = rd.mat(c.H, 2 * c.H);
        m.headNorm = rd.vec(c.H);
        m.head = rd.mat(c.V, c.H);
        rd.layer(m.layer, c, kinds[c.L + d] == 1);
      }
      if (rd.i != rd.n) throwRange(env, fn, "arrays: " + std::to_string(rd.n) + " given, " + std::to_string(rd.i) + " expected");
    } catch (const Fail&) {
      for (napi_ref r : held->refs) napi_delete_reference(env, r);
      throw;
    }
    napi_value ext;
    Held* raw = held.release();
    napi_create_external(env, raw, finalize, nullptr, &ext);
    napi_type_tag_object(env, ext, &kTag);
    return ext;
  });
}

Engine& engineOf(napi_env env, const char* fn, napi_value v) {
  bool ok = false;
  if (napi_check_object_type_tag(env, v, &kTag, &ok) != napi_ok || !ok) throwType(env, fn, "engine must come from decodeEngineCreate");
  void* p = nullptr;
  napi_get_value_external(env, v, &p);
  return static_cast<Held*>(p)->engine;
}

// Segments (Int32Array [start, rows]×S) and their caches (Array of S·nl Float32Arrays, D per row).
struct Segs {
  std::vector<float*> ptrs;
  std::vector<SegRef> refs;
};
long readSegs(napi_env env, const char* fn, napi_value segsV, napi_value cachesV, long nl, long D, Segs& out) {
  View w{};
  if (!viewOf(env, segsV, &w) || w.t != napi_int32_array || w.len < 2 || w.len % 2 != 0) throwType(env, fn, "segs must be an Int32Array of [start, rows] pairs");
  const int32_t* s = (const int32_t*)w.p;
  const long S = (long)w.len / 2;
  bool isArr = false;
  napi_is_array(env, cachesV, &isArr);
  uint32_t n = 0;
  if (isArr) napi_get_array_length(env, cachesV, &n);
  if (!isArr || (long)n != S * nl) throwType(env, fn, "caches must be an Array of " + std::to_string(S * nl) + " Float32Arrays (segments × layers)");
  out.ptrs.resize((size_t)(S * nl));
  out.refs.resize((size_t)S);
  long R = 0;
  for (long i = 0; i < S; i++) {
    const long start = s[2 * i], rows = s[2 * i + 1];
    if (start < 0 || rows < 1) throwRange(env, fn, "segs: segment " + std::to_string(i) + " needs start >= 0 and rows >= 1");
    for (long l = 0; l < nl; l++) {
      napi_value cv;
      napi_get_element(env, cachesV, (uint32_t)(i * nl + l), &cv);
      View cw{};
      if (!viewOf(env, cv, &cw) || cw.t != napi_float32_array) throwType(env, fn, "caches[" + std::to_string(i * nl + l) + "] must be a Float32Array");
      if ((long)cw.len < (start + rows) * D) throwRange(env, fn, "KV cache full: segment " + std::to_string(i) + " needs " + std::to_string(start + rows) + " rows");
      out.ptrs[(size_t)(i * nl + l)] = (float*)cw.p;
    }
    out.refs[(size_t)i] = SegRef{start, rows, out.ptrs.data() + i * nl};
    R += rows;
  }
  return R;
}

constexpr long kMaxRows = 4096;

// decodeEngineMain(engine, tokens, segs, caches, cos, sin, from, hidden, logits)
// decodeEngineMtp(engine, depth, hiddenIn, nextTokens, segs, caches, cos, sin, from, hidden, logits[, window])
napi_value Run(napi_env env, napi_callback_info info, bool isMtp) {
  return guard([&]() -> napi_value {
    const char* fn = isMtp ? "decodeEngineMtp" : "decodeEngineMain";
    size_t argc = 12;
    napi_value a[12];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    const size_t want = isMtp ? 11 : 9;
    if (argc < want) throwType(env, fn, "expected " + std::to_string(want) + " arguments");
    Engine& e = engineOf(env, fn, a[0]);
    const Cfg& c = e.c;
    const int o = isMtp ? 2 : 0;
    long depth = 0;
    if (isMtp) {
      depth = countOf(env, fn, a[1], "depth", 1 << 20);
      if (depth >= (long)e.mtp.size()) throwRange(env, fn, "the model has " + std::to_string(e.mtp.size()) + " MTP layers, depth " + std::to_string(depth) + " requested");
    }
    Segs sg;
    const long D = c.rkv + c.dr;
    const long R = readSegs(env, fn, a[2 + o], a[3 + o], isMtp ? 1 : c.L, D, sg);
    if (R > kMaxRows) throwRange(env, fn, "at most " + std::to_string(kMaxRows) + " rows per pass, got " + std::to_string(R));
    const int32_t* tok = typed<int32_t>(env, fn, a[1 + o], napi_int32_array, isMtp ? "nextTokens" : "tokens", (size_t)R);
    for (long r = 0; r < R; r++)
      if (tok[r] < 0 || tok[r] >= c.V) throwRange(env, fn, "decode: token id " + std::to_string(tok[r]) + " out of range [0, " + std::to_string(c.V) + ")");
    const float* hin = isMtp ? typed<float>(env, fn, a[2], napi_float32_array, "hiddenIn", (size_t)(R * c.H)) : nullptr;
    const float* cs = typed<float>(env, fn, a[4 + o], napi_float32_array, "cos", (size_t)(R * c.dr / 2));
    const float* sn = typed<float>(env, fn, a[5 + o], napi_float32_array, "sin", (size_t)(R * c.dr / 2));
    const long from = countOf(env, fn, a[6 + o], "from", R);
    if (isMtp && from > 0 && sg.refs.size() != 1) throwRange(env, fn, "rows that only fill the cache (from > 0) need a single segment");
    float* hidden = typed<float>(env, fn, a[7 + o], napi_float32_array, "hidden", (size_t)((isMtp ? R - from : R) * c.H));
    float* logits = typed<float>(env, fn, a[8 + o], napi_float32_array, "logits", (size_t)((R - from) * c.V));
    const long window = isMtp ? optCount(env, fn, argc, a, 11, "window", 1L << 30, 0) : 0;
    if (isMtp) e.runMtp(depth, hin, tok, R, sg.refs.data(), (long)sg.refs.size(), cs, sn, from, hidden, logits, window);
    else e.runMain(tok, R, sg.refs.data(), (long)sg.refs.size(), cs, sn, from, hidden, logits);
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
  });
}

// decodeMatRows(w, n, k, x, rows, y): y[rows, n] = x[rows, k] · Wᵀ with W [n, k] as a Float32Array
// (f32), Uint16Array (bf16 bits) or Uint8Array (Q8_0 blocks; x quantised as llama.cpp does): the
// engine's row-exact product for one matrix, split by columns over the pool when large.
napi_value MatRowsFn(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    const char* fn = "decodeMatRows";
    size_t argc = 6;
    napi_value a[6];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    if (argc < 6) throwType(env, fn, "expected (w, n, k, x, rows, y)");
    const long n = countOf(env, fn, a[1], "n", 1L << 30), k = countOf(env, fn, a[2], "k", 1L << 30), R = countOf(env, fn, a[4], "rows", kMaxRows);
    View w{};
    if (!viewOf(env, a[0], &w)) throwType(env, fn, "w must be a Float32Array, Uint16Array (bf16) or Uint8Array (Q8_0)");
    Mat m;
    m.n = n; m.k = k; m.w = w.p;
    long need;
    if (w.t == napi_float32_array) { m.fmt = F32; need = n * k; }
    else if (w.t == napi_uint16_array) { m.fmt = BF16; need = n * k; }
    else if (w.t == napi_uint8_array) {
      if (k % 32 != 0) throwRange(env, fn, "Q8_0 weights need k to be a multiple of 32, got " + std::to_string(k));
      m.fmt = Q8; need = n * (k / 32) * 34;
    } else throwType(env, fn, "w must be a Float32Array, Uint16Array (bf16) or Uint8Array (Q8_0)");
    if ((long)w.len < need) throwRange(env, fn, "w has " + std::to_string(w.len) + " elements, needs " + std::to_string(need));
    const float* x = typed<float>(env, fn, a[3], napi_float32_array, "x", (size_t)(R * k));
    float* y = typed<float>(env, fn, a[5], napi_float32_array, "y", (size_t)(R * n));
    matRowsPar(m, x, R, y);
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
  });
}

// decodeDraftHead(w, n, k, x, y) → boolean: y [n] = the speculative loop's int8 draft head (DraftHead)
// built from f32 weights w [n, k], applied to x [k] (approximate logits; tests compare them with the
// exact product). False (y untouched) where the CPU has no AVX-512 VNNI.
napi_value DraftHeadFn(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    const char* fn = "decodeDraftHead";
    size_t argc = 5;
    napi_value a[5];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    if (argc < 5) throwType(env, fn, "expected (w, n, k, x, y)");
    const long n = countOf(env, fn, a[1], "n", 1L << 24), k = countOf(env, fn, a[2], "k", 1L << 20);
    if (n < 1 || k < 4 || k % 4 != 0) throwRange(env, fn, "needs n ≥ 1 and k a positive multiple of 4");
    Mat m;
    m.n = n; m.k = k;
    m.w = typed<float>(env, fn, a[0], napi_float32_array, "w", (size_t)(n * k));
    const float* x = typed<float>(env, fn, a[3], napi_float32_array, "x", (size_t)k);
    float* y = typed<float>(env, fn, a[4], napi_float32_array, "y", (size_t)n);
    DraftHead h;
    const bool ok = h.build(m);
    if (ok) {
      std::vector<uint8_t> xq((size_t)k);
      h.logits(x, xq.data(), y, 0, n);
    }
    napi_value r;
    napi_get_boolean(env, ok, &r);
    return r;
  });
}

// decodeSetTeams(on) → previous: whether engine passes may run as thread teams (setTeams).
napi_value SetTeamsFn(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    size_t argc = 1;
    napi_value a[1];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    bool on = false;
    napi_valuetype t = napi_undefined;
    if (argc >= 1) napi_typeof(env, a[0], &t);
    if (t != napi_boolean) throwType(env, "decodeSetTeams", "expected a boolean");
    napi_get_value_bool(env, a[0], &on);
    napi_value r;
    napi_get_boolean(env, setTeams(on), &r);
    return r;
  });
}

// The draft engine argument of the speculative steps: an engine for the same model, with an MTP layer.
Engine& draftOf(napi_env env, const char* fn, const Engine& e, napi_value v) {
  Engine& dr = engineOf(env, fn, v);
  const Cfg& c = e.c;
  const Cfg& k = dr.c;
  if (k.H != c.H || k.V != c.V || k.L != c.L || k.nh != c.nh || k.dn != c.dn || k.dr != c.dr || k.dv != c.dv || k.rkv != c.rkv)
    throwRange(env, fn, "draft engine is for another model (its dimensions differ)");
  if (dr.mtp.empty()) throwRange(env, fn, "draft engine has no MTP layer");
  return dr;
}

// decodeEngineSpec(main, draft, hiddenIn, nextTokens, mtpSegs, mtpCaches, mtpCos, mtpSin,
//                  token, mainSegs, mainCaches, cos, sin, vocab, hidden, logits, mtpLogits, picks)
// picks (Int32Array [3]) receives [draft, argmax of row 0, argmax of row 1] over [0, vocab).
// One greedy speculative step (Engine::runSpec): the draft engine's MTP depth 0 over the rows of
// its one segment (the last row drafts), then the main model over [token, draft] (a segment of 2).
napi_value Spec(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    const char* fn = "decodeEngineSpec";
    size_t argc = 18;
    napi_value a[18];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    if (argc < 18) throwType(env, fn, "expected 18 arguments");
    Engine& e = engineOf(env, fn, a[0]);
    Engine& dr = draftOf(env, fn, e, a[1]);
    const Cfg& c = e.c;
    const long D = c.rkv + c.dr, half = c.dr / 2;
    Segs ms, mn;
    const long m = readSegs(env, fn, a[4], a[5], 1, D, ms);
    if (ms.refs.size() != 1 || m > kMaxRows) throwRange(env, fn, "mtpSegs must be one segment of at most " + std::to_string(kMaxRows) + " rows");
    const long R = readSegs(env, fn, a[9], a[10], c.L, D, mn);
    if (mn.refs.size() != 1 || R != 2) throwRange(env, fn, "mainSegs must be one segment of 2 rows (the token and the draft)");
    const float* hin = typed<float>(env, fn, a[2], napi_float32_array, "hiddenIn", (size_t)(m * c.H));
    const int32_t* next = typed<int32_t>(env, fn, a[3], napi_int32_array, "nextTokens", (size_t)m);
    for (long r = 0; r < m; r++)
      if (next[r] < 0 || next[r] >= c.V) throwRange(env, fn, "decode: token id " + std::to_string(next[r]) + " out of range [0, " + std::to_string(c.V) + ")");
    const float* mcs = typed<float>(env, fn, a[6], napi_float32_array, "mtpCos", (size_t)(m * half));
    const float* msn = typed<float>(env, fn, a[7], napi_float32_array, "mtpSin", (size_t)(m * half));
    const long token = countOf(env, fn, a[8], "token", c.V - 1);
    const float* cs = typed<float>(env, fn, a[11], napi_float32_array, "cos", (size_t)(2 * half));
    const float* sn = typed<float>(env, fn, a[12], napi_float32_array, "sin", (size_t)(2 * half));
    const long vocab = countOf(env, fn, a[13], "vocab", c.V);
    if (vocab < 1) throwRange(env, fn, "vocab must be at least 1");
    float* hidden = typed<float>(env, fn, a[14], napi_float32_array, "hidden", (size_t)(2 * c.H));
    float* logits = typed<float>(env, fn, a[15], napi_float32_array, "logits", (size_t)(2 * c.V));
    float* mtpLogits = typed<float>(env, fn, a[16], napi_float32_array, "mtpLogits", (size_t)c.V);
    int32_t* picks = typed<int32_t>(env, fn, a[17], napi_int32_array, "picks", 3);
    e.runSpec(dr, hin, next, m, ms.refs[0], mcs, msn, (int32_t)token, mn.refs[0].start, mn.refs[0].caches, cs, sn, vocab, hidden, logits, mtpLogits, picks);
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
  });
}

// decodeEngineSpecLoop(main, draft, hin, next, state, mainCaches, mtpCache, cosT, sinT, vocab, steps, budget, stops, out[, drafts[, draftsOut[, exactHead[, draftWindow]]]]) → count
// Up to `steps` greedy speculative steps in one call (Engine::runSpecLoop), each chaining K =
// drafts (1…4, default 1) MTP drafts. state: Float64Array [token, n, mtpStart, m, proposed,
// accepted] (in/out); hin [max(K+1, m)·H] and next (Int32Array [max(K+1, m)]) hold the m ≤ 5
// pending MTP rows (in/out); cosT/sinT: rope tables of positions [0, len / (dr/2)); out (Int32Array of at least
// (K+1)·steps) receives the emitted tokens; draftsOut (Int32Array of K·steps, or null) each step's
// drafts; exactHead (default false) drafts with the MTP head itself instead of its int8 copy;
// draftWindow (default 0: all) caps the rows each draft attends over (its last ones).
napi_value SpecLoop(napi_env env, napi_callback_info info) {
  return guard([&]() -> napi_value {
    const char* fn = "decodeEngineSpecLoop";
    size_t argc = 18;
    napi_value a[18];
    napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
    if (argc < 14) throwType(env, fn, "expected 14 or 15 arguments");
    Engine& e = engineOf(env, fn, a[0]);
    Engine& dr = draftOf(env, fn, e, a[1]);
    const Cfg& c = e.c;
    const long D = c.rkv + c.dr, half = c.dr / 2;
    const long K = optCount(env, fn, argc, a, 14, "drafts", kMaxDrafts, 1);
    if (K < 1) throwRange(env, fn, "drafts must be 1 to " + std::to_string(kMaxDrafts));
    double* sd = typed<double>(env, fn, a[4], napi_float64_array, "state", 6);
    const long steps = countOf(env, fn, a[10], "steps", 1 << 20);
    const long budget = countOf(env, fn, a[11], "budget", 1L << 40);
    View tv{};
    if (!viewOf(env, a[7], &tv) || tv.t != napi_float32_array) throwType(env, fn, "cosT must be a Float32Array");
    const long tableRows = half > 0 ? (long)tv.len / half : 0;
    const float* cosT = typed<float>(env, fn, a[7], napi_float32_array, "cosT", (size_t)(tableRows * half));
    const float* sinT = typed<float>(env, fn, a[8], napi_float32_array, "sinT", (size_t)(tableRows * half));
    int64_t st[6];
    for (int i = 0; i < 6; i++) {
      if (!std::isfinite(sd[i]) || sd[i] < 0 || sd[i] != std::floor(sd[i]) || sd[i] > 9e15) throwRange(env, fn, "state[" + std::to_string(i) + "] must be a non-negative integer");
      st[i] = (int64_t)sd[i];
    }
    if (st[0] >= c.V) throwRange(env, fn, "decode: token id " + std::to_string(st[0]) + " out of range [0, " + std::to_string(c.V) + ")");
    if (st[3] < 1 || st[3] > kMaxDrafts + 1 || st[2] + st[3] > st[1]) throwRange(env, fn, "state: 1 to " + std::to_string(kMaxDrafts + 1) + " MTP rows ending before the main position");
    // The pending rows in, and up to K + 1 out (a previous call may have had a longer chain).
    const long rows = std::max<long>(K + 1, (long)st[3]);
    float* hin = typed<float>(env, fn, a[2], napi_float32_array, "hin", (size_t)(rows * c.H));
    int32_t* next = typed<int32_t>(env, fn, a[3], napi_int32_array, "next", (size_t)rows);
    for (long r = 0; r < st[3]; r++)
      if (next[r] < 0 || next[r] >= c.V) throwRange(env, fn, "decode: token id " + std::to_string(next[r]) + " out of range [0, " + std::to_string(c.V) + ")");
    // Positions the steps may write: main rows below n + (K + 1)·steps, within the tables and caches.
    const long reach = std::min<long>(st[1] + (K + 1) * steps, tableRows);
    Segs mn, mt;
    int32_t segBuf[2] = {0, (int32_t)std::max<long>(1, reach)};
    napi_value segV;
    {
      napi_value ab;
      void* data = nullptr;
      napi_create_arraybuffer(env, sizeof(segBuf), &data, &ab);
      std::memcpy(data, segBuf, sizeof(segBuf));
      napi_create_typedarray(env, napi_int32_array, 2, ab, 0, &segV);
    }
    readSegs(env, fn, segV, a[5], c.L, D, mn);  // every main layer holds `reach` rows
    napi_value mtpArr;
    napi_create_array_with_length(env, 1, &mtpArr);
    napi_set_element(env, mtpArr, 0, a[6]);
    readSegs(env, fn, segV, mtpArr, 1, D, mt);
    const long vocab = countOf(env, fn, a[9], "vocab", c.V);
    if (vocab < 1) throwRange(env, fn, "vocab must be at least 1");
    View sv{};
    if (!viewOf(env, a[12], &sv) || sv.t != napi_int32_array) throwType(env, fn, "stops must be an Int32Array");
    int32_t* out = typed<int32_t>(env, fn, a[13], napi_int32_array, "out", (size_t)((K + 1) * steps));
    int32_t* draftsOut = nullptr;
    napi_valuetype dt = napi_undefined;
    if (argc > 15) napi_typeof(env, a[15], &dt);
    if (dt != napi_undefined && dt != napi_null) draftsOut = typed<int32_t>(env, fn, a[15], napi_int32_array, "draftsOut", (size_t)(K * steps));
    bool exactHead = false;
    napi_valuetype et = napi_undefined;
    if (argc > 16) napi_typeof(env, a[16], &et);
    if (et == napi_boolean) napi_get_value_bool(env, a[16], &exactHead);
    else if (et != napi_undefined) throwType(env, fn, "exactHead must be a boolean");
    const long draftWindow = optCount(env, fn, argc, a, 17, "draftWindow", 1L << 30, 0);
    const long count = e.runSpecLoop(dr, hin, next, st, mn.refs[0].caches, mt.refs[0].caches[0], cosT, sinT, reach, vocab, steps, budget,
                                     (const int32_t*)sv.p, (long)sv.len, out, K, draftsOut, exactHead, draftWindow);
    for (int i = 0; i < 6; i++) sd[i] = (double)st[i];
    napi_value r;
    napi_create_int64(env, count, &r);
    return r;
  });
}

napi_value Main(napi_env env, napi_callback_info info) { return Run(env, info, false); }
napi_value MtpRun(napi_env env, napi_callback_info info) { return Run(env, info, true); }

}  // namespace

void registerDecodeExports(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"decodeEngineCreate", nullptr, Create, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeEngineMain", nullptr, Main, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeEngineMtp", nullptr, MtpRun, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeEngineSpec", nullptr, Spec, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeEngineSpecLoop", nullptr, SpecLoop, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeMatRows", nullptr, MatRowsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeDraftHead", nullptr, DraftHeadFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"decodeSetTeams", nullptr, SetTeamsFn, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}

}  // namespace frugal
