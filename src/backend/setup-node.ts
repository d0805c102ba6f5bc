/**
 * Backend setup for Node code: the same API as setup.ts, with the Node platform installed first
 * (native addon, worker_threads, the `webgpu` package). Node files in this repository import this
 * one; the browser entry imports setup.ts.
 */
import './platform-node.js';

export * from './setup.js';
