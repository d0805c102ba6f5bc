/** frugal-lm/node — everything in the browser entry plus the Node-only parts. */
export * from './index.js';
