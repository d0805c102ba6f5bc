/**
 * frugal-lm — browser-safe entry: tensors, autograd, ops, backends, FP8 formats, the DeepSeek-V3
 * model, and the parts of training and inference that need no file system. Node-only parts
 * (files, CLI, server, native/worker backends) are under `frugal-lm/node`.
 */
export * from './backend/index.js';
export * from './autograd/index.js';
export * as ops from './ops/index.js';
export * as fp8 from './fp8/index.js';
