/** Tensors and reverse-mode autograd. */
export * from './tensor.js';
export * from './tape.js';
