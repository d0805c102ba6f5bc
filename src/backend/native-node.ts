/**
 * The `native` backend (Node only): the N-API addon built from native/ by scripts/build-native.mjs
 * (build/Release/frugal_native.node). Its kernels take the engine's Float32Arrays in place (zero
 * copy), dispatch at run time to AVX-512 / AVX2+FMA / portable C++ code, and run on an internal
 * persistent thread pool. It also offers BF16 and FP8 GEMMs (operands decoded exactly to BF16,
 * AVX-512 BF16 dot products with FP32 accumulation, DeepSeek-V3 1x128 / 128x128 scales per K block).
 * When the addon is absent or fails to load, loadNativeBackend returns null and
 * nativeUnavailableReason() says why; callers then use wasm (or ts). Never imported by the browser entry.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { setUninitF32Allocator } from './alloc.js';
import { registerBackend, getBackendByName, type Backend, type MatMulArgs, type AdamWHyper, type AttnGeometry, type Fp8GemmArgs, type MoeFfnArgs, type MoeFfnGrads, type RopeGeometry, type EngineArray } from './index.js';

/** CPU features seen by the addon and the kernel families it dispatches. */
export interface NativeCpuFeatures {
  avx2: boolean; fma: boolean; avx512f: boolean; avx512bw: boolean; avx512vl: boolean; avx512dq: boolean; avx512bf16: boolean;
  /** f32 kernel family: 'avx512' (14x32 tile), 'avx2' (6x16) or 'portable' (4x16). */
  isa: 'avx512' | 'avx2' | 'portable';
  /** BF16/FP8 GEMM family: 'avx512bf16' (vdpbf16ps) or 'f32-dequant' (widen to f32, f32 GEMM). */
  lowp: 'avx512bf16' | 'f32-dequant';
  threads: number;
  /** The allocator policy the addon applied at load (glibc malloc tuning, or why not). */
  allocator: string;
}

/** The raw addon (see native/src/addon.cc for the argument checks). */
export interface NativeAddon {
  matmul(a: Float32Array, b: Float32Array, c: Float32Array, batch: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, strideA: number, strideB: number, strideC: number, accumulate: boolean): void;
  rmsnorm(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, cols: number, eps: number, rstd?: Float32Array): void;
  softmax(x: Float32Array, out: Float32Array, rows: number, cols: number): void;
  siluMul(g: Float32Array, u: Float32Array, out: Float32Array): void;
  siluMulBackward(g: Float32Array, u: Float32Array, gradOut: Float32Array, gradG: Float32Array, gradU: Float32Array): void;
  softmaxBackward(p: Float32Array, gradOut: Float32Array, gradIn: Float32Array, rows: number, cols: number, scale: number): void;
  rmsnormBackward(x: Float32Array, w: Float32Array, rstd: Float32Array, gradOut: Float32Array,
    gradX: Float32Array | null, gradW: Float32Array | null, rows: number, cols: number): void;
  bf16Gemm(a: Uint16Array, b: Uint16Array, c: Float32Array, m: number, n: number, k: number, accumulate?: boolean): void;
  fp8Gemm(aCodes: Uint8Array, aScales: Float32Array, bCodes: Uint8Array, bScales: Float32Array, c: Float32Array,
    m: number, n: number, k: number, aE5m2?: boolean, bE5m2?: boolean, accumulate?: boolean): void;
  setThreads(n: number): number;
  setIsa(isa: 'portable' | 'avx2' | 'avx512' | 'auto'): string;
  cpuFeatures(): NativeCpuFeatures;
  adamw?(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, beta1: number, beta2: number, eps: number,
    stepSize: number, decay: number, invBc2Sqrt: number): void;
  sumSquares?(x: Float32Array): number;
  rowsAxpy?(dst: Float32Array, dstRows: Int32Array | null, src: Float32Array, srcRows: Int32Array | null, scales: Float32Array | null, count: number, D: number): void;
  gemvBf16?(x: Float32Array, w: Uint16Array, y: Float32Array, m: number, n: number, k: number): void;
  attentionForward?(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, B: number, T: number, S: number, H: number,
    KH: number, Dk: number, Dv: number, ldk: number, ldv: number, scale: number): void;
  attentionBackward?(q: Float32Array, k: Float32Array, v: Float32Array, gradOut: Float32Array, gradQ: Float32Array, gradK: Float32Array,
    gradV: Float32Array, B: number, T: number, S: number, H: number, KH: number, Dk: number, Dv: number, ldk: number, ldv: number, scale: number): void;
  addInto?(dst: Float32Array, src: Float32Array): void;
  // FP8 training kernels (native/src/fp8_addon.cc); absent in older builds.
  fp8QuantizeRows?(x: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, ue8m0: boolean): void;
  fp8QuantizeCols?(x: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, ue8m0: boolean): void;
  fp8RequantizeCols?(codes: Uint8Array, rowScales: Float32Array, rows: number, cols: number, outCodes: Uint8Array, outScales: Float32Array, ue8m0: boolean): void;
  fp8QuantizeWeight?(w: Float32Array, rows: number, cols: number, codes: Uint8Array, scales: Float32Array, codesT: Uint8Array | null, ue8m0: boolean): void;
  fp8ScaledGemm?(a: Uint8Array, aTrans: boolean, sa: Float32Array, saKb: number, saRow: number, b: Uint8Array, sb: Float32Array,
    sbKb: number, sbDiv: number, sbCol: number, c: Float32Array, m: number, n: number, k: number, accumulate: boolean, accum?: number): void;
  adamwBf16?(w: Float32Array, g: Float32Array, m: Uint16Array, v: Uint16Array, beta1: number, beta2: number, eps: number,
    stepSize: number, decay: number, invBc2Sqrt: number): void;
  fp8Family?(): string;
  // Fused training kernels (native/src/train_addon.cc); absent in older builds.
  moeFfnForward?(args: MoeFfnArgs, out: Float32Array): void;
  moeFfnBackward?(args: MoeFfnArgs, grads: MoeFfnGrads): void;
  rope?(x: Float32Array, out: Float32Array, cos: Float32Array, sin: Float32Array, B: number, T: number, H: number, D: number, offset: number, sign: number): void;
  concatHeads?(a: Float32Array, b: Float32Array, out: Float32Array, R: number, H: number, Dfull: number, Da: number, Db: number): void;
  concatHeadsBackward?(g: Float32Array, ga: Float32Array | null, gb: Float32Array | null, R: number, H: number, Dfull: number, Da: number, Db: number): void;
  crossEntropyRows?(p: Float32Array, rows: number, V: number, targets: Int32Array, ignoreIndex: number, inv: number, grad: boolean): number;
  // The decode engine (native/src/decode_addon.cc); absent in older builds.
  decodeEngineCreate?(cfg: Float64Array, kinds: Int32Array, arrays: Array<EngineArray | null>): object;
  decodeEngineMain?(engine: object, tokens: Int32Array, segs: Int32Array, caches: Float32Array[], cos: Float32Array, sin: Float32Array,
    from: number, hidden: Float32Array, logits: Float32Array): void;
  decodeEngineMtp?(engine: object, depth: number, hiddenIn: Float32Array, nextTokens: Int32Array, segs: Int32Array, caches: Float32Array[],
    cos: Float32Array, sin: Float32Array, from: number, hidden: Float32Array, logits: Float32Array, window?: number): void;
  decodeEngineSpec?(engine: object, draft: object, hiddenIn: Float32Array, nextTokens: Int32Array, mtpSegs: Int32Array, mtpCaches: Float32Array[],
    mtpCos: Float32Array, mtpSin: Float32Array, token: number, segs: Int32Array, caches: Float32Array[], cos: Float32Array, sin: Float32Array,
    vocab: number, hidden: Float32Array, logits: Float32Array, mtpLogits: Float32Array, picks: Int32Array): void;
  decodeEngineSpecLoop?(engine: object, draft: object, hin: Float32Array, next: Int32Array, state: Float64Array, caches: Float32Array[], mtpCache: Float32Array,
    cosT: Float32Array, sinT: Float32Array, vocab: number, steps: number, budget: number, stops: Int32Array, out: Int32Array, drafts?: number,
    draftsOut?: Int32Array | null, exactHead?: boolean, draftWindow?: number): number;
  decodeMatRows?(w: EngineArray, n: number, k: number, x: Float32Array, rows: number, y: Float32Array): void;
  /** The speculative loop's int8 draft head built from w [n, k] applied to x [k] into y [n]; false without AVX-512 VNNI (tests). */
  decodeDraftHead?(w: Float32Array, n: number, k: number, x: Float32Array, y: Float32Array): boolean;
  /** Whether decode-engine passes may run as thread teams (default true); returns the previous setting (tests, comparisons). */
  decodeSetTeams?(on: boolean): boolean;
  /** Bytes the C allocator has in use (glibc mallinfo2), -1 where unknown: native-side memory for tests. */
  mallocInUse?(): number;
}

/** An FP8 operand as produced by src/fp8/quant.ts (codes + float32 dequantisation scales). */
export interface NativeFp8Operand { codes: Uint8Array; scales: Float32Array; format?: 'e4m3' | 'e5m2' | undefined }

/** The native backend plus its low-precision GEMMs and the raw addon. */
export interface NativeBackend extends Backend {
  readonly addon: NativeAddon;
  /** C[M,N] = A[M,K] · B[N,K]^T over bf16 bit patterns, f32 accumulation (into `out` when given; `accumulate` adds). */
  bf16Gemm(a: Uint16Array, b: Uint16Array, m: number, n: number, k: number, out?: Float32Array, accumulate?: boolean): Float32Array;
  /** Same contract as src/fp8/quant.ts fp8Gemm: C = A·B^T with 1x128 activation and 128x128 weight scales. */
  fp8Gemm(a: NativeFp8Operand, b: NativeFp8Operand, m: number, n: number, k: number, out?: Float32Array, accumulate?: boolean): Float32Array;
  /** Resizes the thread pool (1..256); returns the count now in use. */
  setThreads(n: number): number;
  cpuFeatures(): NativeCpuFeatures;
}

let addon: NativeAddon | null = null;
let reason: string | null = null;
let backend: NativeBackend | null = null;

function candidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const out: string[] = [];
  if (process.env.FRUGAL_NATIVE_PATH) out.push(path.resolve(process.env.FRUGAL_NATIVE_PATH));
  // src/backend/ (tsx) and dist/src/backend/ (compiled) both reach the package root's build/.
  for (const up of ['../..', '../../..']) out.push(path.resolve(here, up, 'build', 'Release', 'frugal_native.node'));
  return out;
}

function loadAddon(): NativeAddon | null {
  if (addon || reason) return addon;
  if (process.env.FRUGAL_NATIVE === '0') { reason = 'disabled by FRUGAL_NATIVE=0'; return null; }
  const file = candidates().find((p) => existsSync(p));
  if (!file) {
    reason = 'build/Release/frugal_native.node is not built (no C++ compiler at install time? run `node scripts/build-native.mjs` to see why)';
    return null;
  }
  try {
    addon = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (e) {
    reason = `${file} failed to load: ${(e as Error).message.split('\n')[0]} (rebuild with \`node scripts/build-native.mjs --force\`)`;
  }
  return addon;
}

/** Why the native backend is unavailable (null when it loaded or was not tried yet). */
export function nativeUnavailableReason(): string | null { return reason; }

/**
 * Loads the addon and registers the `native` backend (fallback: `wasm` when registered, else `ts`).
 * Returns null when the addon is missing or fails to load; see nativeUnavailableReason().
 * Calling again returns the same backend, resized when `threads` is given.
 */
export function loadNativeBackend(opts: { threads?: number } = {}): NativeBackend | null {
  const lib = loadAddon();
  if (!lib) return null;
  const threads = Math.floor(opts.threads ?? backend?.threads ?? Math.min(availableParallelism(), 16));
  if (!(threads >= 1 && threads <= 256)) throw new Error(`native backend: threads must be 1..256, got ${opts.threads}`);
  if (backend) { backend.setThreads(threads); return backend; }
  lib.setThreads(threads);
  // GEMM outputs are overwritten whole by the kernel: allocate large ones without the zero-fill
  // (Buffer's non-zeroing allocation; below 256 KB the ordinary zero-filled path is cheaper:
  // creating a Buffer costs more than the memset, measured on batch-1 decode).
  setUninitF32Allocator((n) => {
    if (n < 65536) return new Float32Array(n);
    const buf = Buffer.allocUnsafeSlow(n * 4);
    return new Float32Array(buf.buffer, buf.byteOffset, n);
  });
  const b: NativeBackend = {
    name: 'native',
    get fallback() { return getBackendByName('wasm') ? 'wasm' : 'ts'; },
    threads,
    addon: lib,
    kernels: {
      MatMul: (x: MatMulArgs) => lib.matmul(x.a, x.b, x.c, x.batch, x.m, x.n, x.k, x.transA, x.transB, x.strideA, x.strideB, x.strideC, x.accumulate),
      RMSNorm: (x, w, out, rows, cols, eps, rstd) => lib.rmsnorm(x, w, out, rows, cols, eps, rstd),
      Softmax: (x, out, rows, cols) => lib.softmax(x, out, rows, cols),
      SiluMul: (g, u, out) => lib.siluMul(g, u, out),
      SiluMulBackward: (g, u, go, gg, gu) => lib.siluMulBackward(g, u, go, gg, gu),
      ...(lib.softmaxBackward ? { SoftmaxBackward: (p: Float32Array, go: Float32Array, gi: Float32Array, rows: number, cols: number, scale: number) => lib.softmaxBackward(p, go, gi, rows, cols, scale) } : {}),
      RMSNormBackward: (x, w, rstd, go, gx, gw, rows, cols) => lib.rmsnormBackward(x, w, rstd, go, gx, gw, rows, cols),
      // Older addon builds lack these; the registry then falls back to wasm/ts.
      ...(lib.adamw ? { AdamW: (w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWHyper) => lib.adamw!(w, g, m, v, h.beta1, h.beta2, h.eps, h.stepSize, h.decay, h.invBc2Sqrt) } : {}),
      ...(lib.sumSquares ? { SumSquares: (x: Float32Array) => lib.sumSquares!(x) } : {}),
      ...(lib.attentionForward ? {
        AttentionForward: (q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, g: AttnGeometry) =>
          lib.attentionForward!(q, k, v, out, g.B, g.T, g.S, g.H, g.KH, g.Dk, g.Dv, g.ldk, g.ldv, g.scale),
      } : {}),
      ...(lib.attentionBackward ? {
        AttentionBackward: (q: Float32Array, k: Float32Array, v: Float32Array, go: Float32Array, gq: Float32Array, gk: Float32Array, gv: Float32Array, g: AttnGeometry) =>
          lib.attentionBackward!(q, k, v, go, gq, gk, gv, g.B, g.T, g.S, g.H, g.KH, g.Dk, g.Dv, g.ldk, g.ldv, g.scale),
      } : {}),
      ...(lib.rowsAxpy ? {
        RowsAxpy: (d: Float32Array, dr: Int32Array | null, src: Float32Array, sr: Int32Array | null, sc: Float32Array | null, count: number, D: number) =>
          lib.rowsAxpy!(d, dr, src, sr, sc, count, D),
      } : {}),
      ...(lib.moeFfnForward && lib.moeFfnBackward ? {
        MoeFfnForward: (a: MoeFfnArgs, out: Float32Array) => lib.moeFfnForward!(a, out),
        MoeFfnBackward: (a: MoeFfnArgs, g: MoeFfnGrads) => lib.moeFfnBackward!(a, g),
      } : {}),
      ...(lib.rope ? {
        Rope: (x: Float32Array, out: Float32Array, c: Float32Array, s: Float32Array, g: RopeGeometry, sign: number) => lib.rope!(x, out, c, s, g.B, g.T, g.H, g.D, g.offset, sign),
        ConcatHeads: (a: Float32Array, b2: Float32Array, out: Float32Array, R: number, H: number, Df: number, Da: number, Db: number) => lib.concatHeads!(a, b2, out, R, H, Df, Da, Db),
        ConcatHeadsBackward: (g: Float32Array, ga: Float32Array | null, gb: Float32Array | null, R: number, H: number, Df: number, Da: number, Db: number) => lib.concatHeadsBackward!(g, ga, gb, R, H, Df, Da, Db),
        CrossEntropyRows: (p: Float32Array, rows: number, V: number, t: Int32Array, ign: number, inv: number, grad: boolean) => lib.crossEntropyRows!(p, rows, V, t, ign, inv, grad),
      } : {}),
      ...(lib.addInto ? { AddInto: (d: Float32Array, src: Float32Array) => lib.addInto!(d, src) } : {}),
      ...(lib.decodeEngineCreate ? {
        DecodeEngineCreate: lib.decodeEngineCreate.bind(lib),
        DecodeEngineMain: lib.decodeEngineMain!.bind(lib),
        DecodeEngineMtp: lib.decodeEngineMtp!.bind(lib),
        ...(lib.decodeEngineSpec ? { DecodeEngineSpec: lib.decodeEngineSpec.bind(lib) } : {}),
        ...(lib.decodeEngineSpecLoop ? { DecodeEngineSpecLoop: lib.decodeEngineSpecLoop.bind(lib) } : {}),
        DecodeMatRows: lib.decodeMatRows!.bind(lib),
      } : {}),
      ...(lib.fp8ScaledGemm ? {
        Fp8QuantizeRows: (x: Float32Array, r: number, c: number, codes: Uint8Array, s: Float32Array, u: boolean) => lib.fp8QuantizeRows!(x, r, c, codes, s, u),
        Fp8QuantizeCols: (x: Float32Array, r: number, c: number, codes: Uint8Array, s: Float32Array, u: boolean) => lib.fp8QuantizeCols!(x, r, c, codes, s, u),
        Fp8RequantizeCols: (codes: Uint8Array, rs: Float32Array, r: number, c: number, oc: Uint8Array, os: Float32Array, u: boolean) => lib.fp8RequantizeCols!(codes, rs, r, c, oc, os, u),
        Fp8QuantizeWeight: (w: Float32Array, r: number, c: number, codes: Uint8Array, s: Float32Array, t: Uint8Array | null, u: boolean) => lib.fp8QuantizeWeight!(w, r, c, codes, s, t, u),
        Fp8ScaledGemm: (g: Fp8GemmArgs) => lib.fp8ScaledGemm!(g.a, g.aTrans, g.sa, g.saKb, g.saRow, g.b, g.sb, g.sbKb, g.sbDiv, g.sbCol, g.c, g.m, g.n, g.k, g.accumulate, g.accum ?? 0),
        AdamWBf16: (w: Float32Array, g: Float32Array, m: Uint16Array, v: Uint16Array, h: AdamWHyper) => lib.adamwBf16!(w, g, m, v, h.beta1, h.beta2, h.eps, h.stepSize, h.decay, h.invBc2Sqrt),
      } : {}),
    },
    bf16Gemm(a, bm, m, n, k, out, accumulate = false) {
      const c = out ?? new Float32Array(m * n);
      lib.bf16Gemm(a, bm, c, m, n, k, accumulate);
      return c;
    },
    fp8Gemm(a, bm, m, n, k, out, accumulate = false) {
      const c = out ?? new Float32Array(m * n);
      lib.fp8Gemm(a.codes, a.scales, bm.codes, bm.scales, c, m, n, k, a.format === 'e5m2', bm.format === 'e5m2', accumulate);
      return c;
    },
    setThreads(n: number) { const t = lib.setThreads(n); b.threads = t; return t; },
    cpuFeatures: () => lib.cpuFeatures(),
    describe() {
      const f = lib.cpuFeatures();
      const tile = f.isa === 'avx512' ? '14x32' : f.isa === 'avx2' ? '6x16' : '4x16';
      const feats = (['avx512f', 'avx512bf16', 'avx2', 'fma'] as const).filter((k) => f[k]).join(' ') || 'none of avx512f/avx2/fma';
      return `native (C++ N-API: f32 GEMM ${f.isa} ${tile} tile, BF16/FP8 GEMM ${f.lowp}${lib.fp8Family ? `, FP8 recipe kernels ${lib.fp8Family()}` : ''}, ${f.threads} thread${f.threads > 1 ? 's' : ''}; cpu: ${feats}${f.allocator ? `; ${f.allocator}` : ''})`;
    },
    dispose() { lib.setThreads(1); b.threads = 1; },
  };
  backend = b;
  registerBackend(b);
  return b;
}
