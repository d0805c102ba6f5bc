/** Sampling, generation (with MTP speculation) and the radix prefix cache (the disk cache is node-only). */
export * from './sampling.js';
export * from './generate.js';
export * from './prefix-cache.js';
