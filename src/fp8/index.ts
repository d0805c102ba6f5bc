/**
 * FP8 recipe of DeepSeek-V3 (report §3.3): e4m3/e5m2/bf16 codecs, 1x128 activation tiles,
 * 128x128 weight blocks, and the block-scaled FP8 GEMM. Browser-safe; re-exported by the package
 * entry as `fp8` (`fp8.encode`, `fp8.quantizeTiles`, ...). On a CPU this is an exact emulation:
 * the win is memory and bandwidth (one byte per value), not FP8 arithmetic.
 */
export * from './codec.js';
export * from './quant.js';
