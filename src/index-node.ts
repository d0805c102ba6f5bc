/**
 * frugal-lm as Node resolves it (the `node` condition of the package's "." export): the browser
 * entry (src/index.ts) with the Node platform installed, so useBackend can load the native addon,
 * start worker threads and reach WebGPU through the `webgpu` package. Bundlers targeting a browser
 * take src/index.ts instead and never see a `node:*` module.
 */
import './backend/platform-node.js';

export * from './index.js';
