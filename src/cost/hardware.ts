/**
 * Accelerator table: dense (no 2:4 sparsity) tensor-core peaks in TFLOP/s for BF16 and FP8,
 * memory size and bandwidth. NVIDIA datasheets quote FP8/BF16 "with sparsity"; dense is half.
 * MFU in this project is always measured against the dense BF16 peak (DeepSeek-V3's ~39% is too),
 * even for FP8 training. Browser-safe.
 */

/** One accelerator. `fp8Tflops` null = no FP8 tensor cores. */
export interface Gpu {
  name: string;
  bf16Tflops: number;
  fp8Tflops: number | null;
  memoryGiB: number;
  memoryTBps: number;
  /** Where the numbers come from. */
  source: string;
}

/** Known accelerators, by lower-case id (`--gpu`). */
export const gpus: Record<string, Gpu> = {
  // H800 SXM = H100 SXM compute with NVLink cut to 400 GB/s (export-control variant); the V3
  // report (§3.1) trains on it. Peaks as H100 SXM5.
  h800: { name: 'NVIDIA H800 SXM', bf16Tflops: 989.5, fp8Tflops: 1979, memoryGiB: 80, memoryTBps: 3.35, source: 'NVIDIA H100 Tensor Core GPU datasheet (SXM: BF16 1,979 / FP8 3,958 TFLOPS with sparsity); H800 = H100 SXM compute, NVLink 400 GB/s' },
  h100: { name: 'NVIDIA H100 SXM5', bf16Tflops: 989.5, fp8Tflops: 1979, memoryGiB: 80, memoryTBps: 3.35, source: 'NVIDIA H100 Tensor Core GPU datasheet, SXM column (sparsity figures halved)' },
  h200: { name: 'NVIDIA H200 SXM', bf16Tflops: 989.5, fp8Tflops: 1979, memoryGiB: 141, memoryTBps: 4.8, source: 'NVIDIA H200 Tensor Core GPU datasheet, SXM column (sparsity figures halved)' },
  a100: { name: 'NVIDIA A100 SXM4 80GB', bf16Tflops: 312, fp8Tflops: null, memoryGiB: 80, memoryTBps: 2.039, source: 'NVIDIA A100 Tensor Core GPU datasheet (BF16 312 TFLOPS dense; no FP8)' },
  b200: { name: 'NVIDIA B200 (HGX)', bf16Tflops: 2250, fp8Tflops: 4500, memoryGiB: 180, memoryTBps: 8, source: 'NVIDIA HGX B200 datasheet: 8 GPUs FP16/BF16 36 PFLOPS, FP8 72 PFLOPS with sparsity → per GPU dense 2.25 / 4.5 PFLOPS' },
};

/** Looks up `--gpu`; the error lists the known ids. */
export function getGpu(id: string): Gpu {
  const g = gpus[id.toLowerCase()];
  if (!g) throw new Error(`unknown GPU "${id}" (known: ${Object.keys(gpus).join(', ')})`);
  return g;
}
