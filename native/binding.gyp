# Frugal native CPU backend (N-API, C++17). Built by scripts/build-native.mjs; kernels carry
# per-function target attributes and are dispatched at run time, so there is no -march here.
{
  "targets": [
    {
      "target_name": "frugal_native",
      "sources": [
        "src/addon.cc",
        "src/pool.cc",
        "src/gemm_f32.cc",
        "src/gemv.cc",
        "src/gemm_bf16.cc",
        "src/ops.cc",
        "src/optim.cc",
        "src/attention.cc",
        "src/gemv_q8.cc",
        "src/fp8_quant.cc",
        "src/fp8_gemm.cc",
        "src/adamw_bf16.cc",
        "src/fp8_addon.cc",
        "src/moe_ffn.cc",
        "src/train_rows.cc",
        "src/train_addon.cc",
        "src/decode_gemv.cc",
        "src/decode_attn.cc",
        "src/draft_head.cc",
        "src/decode_engine.cc",
        "src/decode_addon.cc"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fvisibility=hidden", "-Wall", "-Wno-unused-function", "-Wno-maybe-uninitialized"],
      "ldflags": ["-pthread"],
      "defines": ["NAPI_VERSION=8"],
      "xcode_settings": {
        "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3"],
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES"
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17", "/O2"] } }
    }
  ]
}
