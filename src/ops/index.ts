/** All tensor ops, one namespace. */
export * from './elementwise.js';
export * from './shape.js';
export * from './reduce.js';
export * from './linalg.js';
export * from './nn.js';
export * from './indexing.js';
export * from './moe.js';
