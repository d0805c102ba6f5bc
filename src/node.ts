/** frugal-lm/node — everything in the browser entry plus the Node-only parts (and the Node platform: native addon, worker threads, Dawn WebGPU). */
import './backend/platform-node.js';
export * from './index.js';
export { loadModel, saveModel, loadConfig, atomicWrite, type LoadedModel } from './model/load-node.js';
export { SafetensorsModel, writeSafetensors, fileSource, openSafetensorsFile } from './io/safetensors-node.js';
export { loadTokenizer, deepseekV3Tokenizer } from './io/tokenizer-node.js';
export { loadCorpus } from './train/data-node.js';
export * as checkpoints from './train/checkpoint-node.js';
export { DiskCache } from './infer/disk-cache-node.js';
export { startServer } from './serve/server.js';
export { loadNativeBackend, nativeUnavailableReason } from './backend/native-node.js';
export { runCli } from './cli/main.js';
