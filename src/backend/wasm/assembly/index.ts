// AssemblyScript entry of the wasm backend: re-exports the kernels the JS glue calls.
export { runMatMul, heapBase, PACK_STRIDE } from './gemm';
