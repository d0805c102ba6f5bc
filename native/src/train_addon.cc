// N-API entry points of the fused training kernels (moe_ffn.cc, train_rows.cc), added to the
// addon's exports by registerTrainExports (called from addon.cc). Arguments are typed arrays used
// in place (the grouped MoE kernel takes one object of named fields); every extent, index and
// permutation is checked before a kernel runs, and bad input throws a TypeError/RangeError naming
// the argument, so nothing reads or writes out of bounds.
#include <string>
#include <vector>

#include "napi_args.h"
#include "train.h"

namespace frugal {
namespace {

using napi::Args;
using napi::Ctx;
using napi::guard;
using napi::undef;


// The MoE layer description shared by forward and backward; the pointer vectors live in `keep`.
struct MoeIn {
  MoeFfnArgs a{};
  std::vector<float*> gate, up, down;
};

void readMoe(const Ctx& c, napi_value o, MoeIn& m) {
  MoeFfnArgs& a = m.a;
  a.N = c.count(c.field(o, "N"), "N");
  a.H = c.count(c.field(o, "H"), "H", 1);
  a.I = c.count(c.field(o, "I"), "I", 1);
  a.k = c.count(c.field(o, "k"), "k", 1);
  const long M = a.N * a.k;
  a.x = c.arr<float>(c.field(o, "x"), napi_float32_array, "x", (double)a.N * a.H);
  napi_value gl = c.field(o, "gate");
  uint32_t E = 0;
  bool isArr = false;
  napi_is_array(c.env, gl, &isArr);
  if (!isArr) c.type("gate must be an array of Float32Arrays");
  napi_get_array_length(c.env, gl, &E);
  a.E = E;
  m.gate = c.list(gl, "gate", a.E, (double)a.I * a.H, false);
  m.up = c.list(c.field(o, "up"), "up", a.E, (double)a.I * a.H, false);
  m.down = c.list(c.field(o, "down"), "down", a.E, (double)a.H * a.I, false);
  a.gate = m.gate.data(); a.up = m.up.data(); a.down = m.down.data();
  a.Is = c.count(c.field(o, "Is"), "Is");
  a.sGate = c.arr<float>(c.field(o, "sGate"), napi_float32_array, "sGate", (double)a.Is * a.H, true);
  a.sUp = c.arr<float>(c.field(o, "sUp"), napi_float32_array, "sUp", (double)a.Is * a.H, a.sGate == nullptr);
  a.sDown = c.arr<float>(c.field(o, "sDown"), napi_float32_array, "sDown", (double)a.H * a.Is, a.sGate == nullptr);
  if (a.sGate && a.Is < 1) c.range("Is must be >= 1 with a shared expert");
  if (!a.sGate) { a.sUp = nullptr; a.sDown = nullptr; }
  a.order = c.arr<int32_t>(c.field(o, "order"), napi_int32_array, "order", (double)M);
  a.offsets = c.arr<int32_t>(c.field(o, "offsets"), napi_int32_array, "offsets", (double)a.E + 1);
  // order must be a permutation of the M slots and offsets a partition of it.
  std::vector<unsigned char> seen(M, 0);
  for (long p = 0; p < M; p++) {
    const long s = a.order[p];
    if (s < 0 || s >= M || seen[s]) c.range("order must be a permutation of 0.." + std::to_string(M - 1) + " (entry " + std::to_string(p) + " is " + std::to_string(s) + ")");
    seen[s] = 1;
  }
  if (a.offsets[0] != 0 || a.offsets[a.E] != M) c.range("offsets must start at 0 and end at N*k");
  for (long e = 0; e < a.E; e++)
    if (a.offsets[e + 1] < a.offsets[e]) c.range("offsets must be non-decreasing");
  a.slotW = c.arr<float>(c.field(o, "slotW"), napi_float32_array, "slotW", (double)M);
  a.g = c.arr<float>(c.field(o, "g"), napi_float32_array, "g", (double)M * a.I);
  a.u = c.arr<float>(c.field(o, "u"), napi_float32_array, "u", (double)M * a.I);
  a.y = c.arr<float>(c.field(o, "y"), napi_float32_array, "y", (double)M * a.H);
  a.sg = a.sGate ? c.arr<float>(c.field(o, "sg"), napi_float32_array, "sg", (double)a.N * a.Is) : nullptr;
  a.su = a.sGate ? c.arr<float>(c.field(o, "su"), napi_float32_array, "su", (double)a.N * a.Is) : nullptr;
}

// moeFfnForward(args, out)
napi_value MoeForward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args in(env, info, "moeFfnForward", 2);
    const Ctx& c = in;
    const napi_value* v = in.v;
    MoeIn m;
    readMoe(c, v[0], m);
    float* out = c.arr<float>(v[1], napi_float32_array, "out", (double)m.a.N * m.a.H);
    moeFfnForward(m.a, out);
    return undef(env);
  });
}

// moeFfnBackward(args, grads{gradOut, gradX, gradW, gGate[], gUp[], gDown[], gsGate?, gsUp?, gsDown?})
napi_value MoeBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args in(env, info, "moeFfnBackward", 2);
    const Ctx& c = in;
    const napi_value* v = in.v;
    MoeIn m;
    readMoe(c, v[0], m);
    const MoeFfnArgs& a = m.a;
    MoeFfnGrads d{};
    const double NH = (double)a.N * a.H;
    d.gradOut = c.arr<float>(c.field(v[1], "gradOut"), napi_float32_array, "gradOut", NH);
    d.gradX = c.arr<float>(c.field(v[1], "gradX"), napi_float32_array, "gradX", NH);
    d.gradW = c.arr<float>(c.field(v[1], "gradW"), napi_float32_array, "gradW", (double)a.N * a.k);
    std::vector<float*> gg = c.list(c.field(v[1], "gGate"), "gGate", a.E, (double)a.I * a.H, true);
    std::vector<float*> gu = c.list(c.field(v[1], "gUp"), "gUp", a.E, (double)a.I * a.H, true);
    std::vector<float*> gd = c.list(c.field(v[1], "gDown"), "gDown", a.E, (double)a.H * a.I, true);
    d.gGate = gg.data(); d.gUp = gu.data(); d.gDown = gd.data();
    if (a.sGate) {
      d.gsGate = c.arr<float>(c.field(v[1], "gsGate"), napi_float32_array, "gsGate", (double)a.Is * a.H, true);
      d.gsUp = c.arr<float>(c.field(v[1], "gsUp"), napi_float32_array, "gsUp", (double)a.Is * a.H, true);
      d.gsDown = c.arr<float>(c.field(v[1], "gsDown"), napi_float32_array, "gsDown", (double)a.H * a.Is, true);
    }
    moeFfnBackward(a, d);
    return undef(env);
  });
}

// rope(x, out, cos, sin, B, T, H, D, offset, sign)
napi_value Rope(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args a(env, info, "rope", 10);
    const Ctx& c = a;
    const long B = c.count(a.v[4], "B"), T = c.count(a.v[5], "T"), H = c.count(a.v[6], "H"), D = c.count(a.v[7], "D"), off = c.count(a.v[8], "offset");
    const double sign = c.num(a.v[9], "sign");
    if (off > D || (D - off) % 2 != 0) c.range("offset must leave an even number of features");
    const double n = (double)B * T * H * D;
    const float* x = c.arr<float>(a.v[0], napi_float32_array, "x", n);
    float* out = c.arr<float>(a.v[1], napi_float32_array, "out", n);
    const double tab = (double)T * ((D - off) / 2);
    const float* cs = c.arr<float>(a.v[2], napi_float32_array, "cos", tab);
    const float* sn = c.arr<float>(a.v[3], napi_float32_array, "sin", tab);
    ropeRows(x, out, cs, sn, B, T, H, D, off, sign < 0 ? -1.f : 1.f);
    return undef(env);
  });
}

// concatHeads(a, b, out, R, H, Dfull, Da, Db)
napi_value ConcatHeads(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args a(env, info, "concatHeads", 8);
    const Ctx& c = a;
    const long R = c.count(a.v[3], "R"), H = c.count(a.v[4], "H"), Df = c.count(a.v[5], "Dfull"), Da = c.count(a.v[6], "Da"), Db = c.count(a.v[7], "Db");
    if (Da > Df) c.range("Da must be <= Dfull");
    const float* x = c.arr<float>(a.v[0], napi_float32_array, "a", (double)R * H * Df);
    const float* y = c.arr<float>(a.v[1], napi_float32_array, "b", (double)R * Db);
    float* out = c.arr<float>(a.v[2], napi_float32_array, "out", (double)R * H * (Da + Db));
    concatHeads(x, y, out, R, H, Df, Da, Db);
    return undef(env);
  });
}

// concatHeadsBackward(g, ga | null, gb | null, R, H, Dfull, Da, Db)
napi_value ConcatHeadsBackward(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args a(env, info, "concatHeadsBackward", 8);
    const Ctx& c = a;
    const long R = c.count(a.v[3], "R"), H = c.count(a.v[4], "H"), Df = c.count(a.v[5], "Dfull"), Da = c.count(a.v[6], "Da"), Db = c.count(a.v[7], "Db");
    if (Da > Df) c.range("Da must be <= Dfull");
    const float* g = c.arr<float>(a.v[0], napi_float32_array, "g", (double)R * H * (Da + Db));
    float* ga = c.arr<float>(a.v[1], napi_float32_array, "ga", (double)R * H * Df, true);
    float* gb = c.arr<float>(a.v[2], napi_float32_array, "gb", (double)R * Db, true);
    concatHeadsBackward(g, ga, gb, R, H, Df, Da, Db);
    return undef(env);
  });
}

// crossEntropyRows(p, rows, V, targets, ignoreIndex, inv, grad) -> Σ row losses
napi_value CrossEntropyRows(napi_env env, napi_callback_info info) {
  return guard(env, [&] {
    Args a(env, info, "crossEntropyRows", 7);
    const Ctx& c = a;
    const long rows = c.count(a.v[1], "rows"), V = c.count(a.v[2], "V", 1);
    float* p = c.arr<float>(a.v[0], napi_float32_array, "p", (double)rows * V);
    const int32_t* y = c.arr<int32_t>(a.v[3], napi_int32_array, "targets", (double)rows);
    const double ign = c.num(a.v[4], "ignoreIndex");
    const double inv = c.num(a.v[5], "inv");
    bool grad = false;
    napi_get_value_bool(env, a.v[6], &grad);
    for (long r = 0; r < rows; r++)
      if (y[r] != ign && (y[r] < 0 || y[r] >= V)) c.range("target " + std::to_string(y[r]) + " out of range [0, " + std::to_string(V) + ")");
    napi_value out;
    napi_create_double(env, crossEntropyRows(p, rows, V, y, (long)ign, (float)inv, grad), &out);
    return out;
  });
}

}  // namespace

/** Adds the fused training kernels to the addon's exports. */
void registerTrainExports(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"moeFfnForward", nullptr, MoeForward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"moeFfnBackward", nullptr, MoeBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"rope", nullptr, Rope, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"concatHeads", nullptr, ConcatHeads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"concatHeadsBackward", nullptr, ConcatHeadsBackward, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"crossEntropyRows", nullptr, CrossEntropyRows, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

}  // namespace frugal
