// Argument checking for the addon's N-API entry points (addon.cc, fp8_addon.cc, train_addon.cc).
//
// Contract:
// - Every failure throws a JS TypeError (wrong kind of value) or RangeError (wrong size or value)
//   whose message starts with "frugal_native.<function>: " and names the argument, then unwinds
//   the C++ side with `Fail`; `guard` turns that into a return with the exception pending.
// - Typed arrays are used in place (zero-copy); `arr` checks the element type, and the length
//   against the elements the call needs (`need`), so no kernel reads or writes past an array.
// - Sizes and strides (`count`) are integers in [min, 2^40]: products of two stay exact in
//   double and long, so extent checks cannot overflow.
#pragma once
#define NAPI_VERSION 8
#include <node_api.h>

#include <cmath>
#include <string>
#include <vector>

namespace frugal {
namespace napi {

struct Fail {};  // thrown after a JS exception is pending

inline const char* typedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_float64_array: return "Float64Array";
    default: return "typed array";
  }
}

// Checks on single values, for entry points that read named fields or arrays of arrays.
struct Ctx {
  napi_env env;
  const char* fn;
  [[noreturn]] void type(const std::string& m) const {
    napi_throw_type_error(env, nullptr, (std::string("frugal_native.") + fn + ": " + m).c_str());
    throw Fail{};
  }
  [[noreturn]] void range(const std::string& m) const {
    napi_throw_range_error(env, nullptr, (std::string("frugal_native.") + fn + ": " + m).c_str());
    throw Fail{};
  }
  bool present(napi_value v) const {
    napi_valuetype t;
    napi_typeof(env, v, &t);
    return t != napi_undefined && t != napi_null;
  }
  void need(const std::string& name, size_t len, double elems) const {
    if (elems > (double)len) range(name + " has " + std::to_string(len) + " elements, needs " + std::to_string((long long)elems));
  }
  // A typed array of type `want` with at least `elems` elements; its length goes to *len when given.
  // `optional`: undefined/null gives nullptr.
  template <class T>
  T* arr(napi_value v, napi_typedarray_type want, const std::string& name, double elems = 0, bool optional = false, size_t* len = nullptr) const {
    if (optional && !present(v)) return nullptr;
    bool is = false;
    if (v) napi_is_typedarray(env, v, &is);
    napi_typedarray_type t;
    size_t l = 0;
    void* data = nullptr;
    if (is) napi_get_typedarray_info(env, v, &t, &l, &data, nullptr, nullptr);
    if (!is || t != want) type(name + " must be a" + (want == napi_int32_array ? "n " : " ") + typedArrayName(want));
    need(name, l, elems);
    if (len) *len = l;
    return static_cast<T*>(data);
  }
  double num(napi_value v, const std::string& name) const {
    double d = 0;
    if (!v || napi_get_value_double(env, v, &d) != napi_ok || !std::isfinite(d)) type(name + " must be a finite number");
    return d;
  }
  long count(napi_value v, const std::string& name, long min = 0) const {
    const double d = num(v, name);
    if (d < min || d != std::floor(d) || d > 1099511627776.0) range(name + " must be an integer in [" + std::to_string(min) + ", 2^40], got " + std::to_string(d));
    return (long)d;
  }
  bool flag(napi_value v) const {
    bool b = false;
    if (v) napi_get_value_bool(env, v, &b);
    return b;
  }
  napi_value field(napi_value obj, const char* name) const {
    napi_value v;
    if (napi_get_named_property(env, obj, name, &v) != napi_ok) type(std::string("missing field ") + name);
    return v;
  }
  // A JS array of `n` Float32Arrays (entries may be null when `optional`), each of `elems` elements.
  std::vector<float*> list(napi_value v, const std::string& name, long n, double elems, bool optional) const {
    bool isArr = false;
    napi_is_array(env, v, &isArr);
    uint32_t len = 0;
    if (isArr) napi_get_array_length(env, v, &len);
    if (!isArr || (long)len != n) type(name + " must be an array of " + std::to_string(n) + " Float32Arrays");
    std::vector<float*> out(n);
    for (uint32_t i = 0; i < len; i++) {
      napi_value e;
      napi_get_element(env, v, i, &e);
      out[i] = arr<float>(e, napi_float32_array, name + "[" + std::to_string(i) + "]", elems, optional);
    }
    return out;
  }
};

// Positional arguments: at least `need` of them, read by index.
struct Args : Ctx {
  static constexpr size_t kMax = 20;
  napi_value v[kMax] = {};
  size_t n = kMax;
  Args(napi_env e, napi_callback_info info, const char* name, size_t need) : Ctx{e, name} {
    napi_get_cb_info(e, info, &n, v, nullptr, nullptr);
    if (n < need) type("expected at least " + std::to_string(need) + " arguments, got " + std::to_string(n));
    if (n > kMax) n = kMax;
  }
  napi_value at(size_t i) const { return i < n ? v[i] : nullptr; }
  bool has(size_t i) const { return i < n && present(v[i]); }
  template <class T>
  T* arr(size_t i, napi_typedarray_type want, const char* name, size_t* len) const {
    return Ctx::arr<T>(at(i), want, name, 0, false, len);
  }
  double num(size_t i, const char* name) const { return Ctx::num(at(i), name); }
  long count(size_t i, const char* name) const { return Ctx::count(at(i), name); }
  bool flag(size_t i) const { return Ctx::flag(at(i)); }
};

inline napi_value undef(napi_env env) { napi_value u; napi_get_undefined(env, &u); return u; }

template <class F>
napi_value guard(F f) {
  try { return f(); } catch (const Fail&) { return nullptr; }
}
template <class F>
napi_value guard(napi_env, F f) { return guard(f); }

}  // namespace napi
}  // namespace frugal
