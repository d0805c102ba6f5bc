/** Training loop pieces that need no file system (checkpoints and corpora live in *-node.ts). */
export * from './optim.js';
export * from './schedule.js';
export * from './balance.js';
export * from './data.js';
export * from './trainer.js';
