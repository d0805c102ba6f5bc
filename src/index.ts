/**
 * frugal-lm — browser-safe entry: tensors, autograd, ops, backends, FP8 formats, the DeepSeek-V3
 * model, safetensors parsing, tokenizers, training and inference loops, and the cost meter — all
 * without `node:*` imports (test/browser-entry.test.ts walks the import graph to keep it so).
 * Node-only parts (files, CLI, server, the native addon) are under `frugal-lm/node`.
 */
export * from './backend/index.js';
export { useBackend, describeBackend, disposeBackends, type BackendChoice } from './backend/setup.js';
export * from './autograd/index.js';
export * as ops from './ops/index.js';
export * as fp8 from './fp8/index.js';
export * from './fp8/linear.js';
export * from './fp8/recipe.js';
export * from './model/config.js';
export * from './model/deepseek.js';
export * from './model/dense.js';
export { RowDecoder, f32RowsLinear, rowsLinearOf, type RowsLinear, type Segment, type RowsResult } from './model/decode.js';
export * as safetensors from './io/safetensors.js';
export { Tokenizer, StreamDecoder } from './io/tokenizer.js';
export { trainBpe } from './io/bpe.js';
export * as train from './train/index.js';
export * as infer from './infer/index.js';
export * as cost from './cost/index.js';
