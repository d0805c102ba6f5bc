/**
 * The `webgpu` backend: WGSL kernels (wgsl-*.ts) run by a GPU thread (thread-source.ts) that owns
 * the GPUDevice, behind the registry's synchronous kernel interface. The engine thread writes a
 * kernel's operands into a shared arena, posts a job, and blocks in Atomics.wait until the GPU
 * thread has run it and copied the outputs back — so the model, trainer and inference code run on
 * WebGPU unchanged. Browser-safe; in Node the GPU thread loads the `webgpu` package (Dawn).
 *
 * Contract:
 * - Must run where the calling thread may block: Node's main thread, or a Worker in a browser
 *   (a page's main thread may not Atomics.wait — create it in a Worker; the page in src/web does).
 *   Needs SharedArrayBuffer, i.e. a cross-origin-isolated page (COOP/COEP headers).
 * - Kernels have the ts reference's semantics (registry.ts); aliasing allowed there (softmax in
 *   place, gradK === gradV) is handled by computing on separate device buffers and adding dense
 *   results back on the engine side.
 * - A call whose operand exceeds the device's storage-binding limit runs on the ts reference
 *   instead (counted in stats().oversize); the FP8 kernels (wgsl-fp8*.ts: quantisers bit-exact with
 *   src/fp8/quant.ts, the scaled GEMM) have no ts twin in this layer and throw a RangeError then.
 * - Residency (src/backend/residency.ts): an operand the engine declared resident (parameters,
 *   AdamW's f32 moments) keeps a device copy, tagged with the array's write version, and is
 *   uploaded again only after a write was announced; every other operand is uploaded with the call,
 *   and only what the caller reads is copied back. AdamW updates resident w, m, v on the device:
 *   w is copied back in the same job (host parameters stay current for every host reader), m and v
 *   stay on the device (marked device-newer; copied back on syncHost, setResidency(false) and
 *   dispose). `verifyResidency` keeps a host snapshot of each copy and throws when a resident array
 *   changed without an announcement (tests run with it on).
 * - A GPU error, a lost device or a GPU thread that stops answering for `timeoutS` becomes an
 *   Error naming it; it never hangs.
 */
import type { AdamWHyper, AdamWItem, AttnGeometry, Backend, Fp8GemmArgs, Kernels, MatMulArgs } from '../registry.js';
import { platform } from '../platform.js';
import { tsAdamW, tsAddInto, tsMatMul, tsRMSNorm, tsRMSNormBackward, tsRowsAxpy, tsSiluMul, tsSiluMulBackward, tsSoftmax, tsSoftmaxBackward, tsSumSquares } from '../ts.js';
import { GPU_THREAD_SOURCE } from './thread-source.js';
import { isDeviceNewer, markDeviceNewer, onHostWrite, residentParent, residentVersion, syncHost } from '../residency.js';
import { MATMUL_WGSL } from './wgsl-gemm.js';
import { ADAMW_WGSL, ADDINTO_WGSL, RMSNORM_BW_WGSL, RMSNORM_BX_WGSL, RMSNORM_WGSL, ROWSAXPY_WGSL, SILUMUL_B_WGSL, SILUMUL_WGSL, SOFTMAX_B_WGSL, SOFTMAX_WGSL, SUMSQ_WGSL } from './wgsl-rows.js';
import { ATTN_BWD1_WGSL, ATTN_BWD2_WGSL, ATTN_FWD_WGSL } from './wgsl-attention.js';
import { FP8_CODES_WGSL, FP8_RECODES_WGSL, FP8_RESCALES_WGSL, FP8_SCALES_WGSL } from './wgsl-fp8.js';
import { FP8_GEMM_WGSL } from './wgsl-fp8-gemm.js';
import { Job } from './job.js';
import { DECODE_SHADERS } from './wgsl-decode.js';
import { decodeEngineKernels } from './decode-engine.js';
import { MOE_COMBINE_WGSL, MOE_DY_WGSL, MOE_GEMM_WGSL } from './wgsl-moe.js';
import { moeKernels } from './moe.js';
import { CE_ROWS_WGSL } from './wgsl-head.js';
import { headKernels } from './head.js';
import { matmulBatch } from './gemm-batch.js';

const SHADERS: Record<string, string> = {
  matmul: MATMUL_WGSL, rmsnorm: RMSNORM_WGSL, rmsnormBx: RMSNORM_BX_WGSL, rmsnormBw: RMSNORM_BW_WGSL,
  softmax: SOFTMAX_WGSL, softmaxB: SOFTMAX_B_WGSL, silumul: SILUMUL_WGSL, silumulB: SILUMUL_B_WGSL,
  addinto: ADDINTO_WGSL, adamw: ADAMW_WGSL, sumsq: SUMSQ_WGSL, rowsaxpy: ROWSAXPY_WGSL,
  attnFwd: ATTN_FWD_WGSL, attnBwd1: ATTN_BWD1_WGSL, attnBwd2: ATTN_BWD2_WGSL,
  fp8Scales: FP8_SCALES_WGSL, fp8Codes: FP8_CODES_WGSL, fp8Rescales: FP8_RESCALES_WGSL, fp8Recodes: FP8_RECODES_WGSL, fp8Gemm: FP8_GEMM_WGSL,
  ...DECODE_SHADERS,
  moeGemm: MOE_GEMM_WGSL, moeCombine: MOE_COMBINE_WGSL, moeDy: MOE_DY_WGSL,
  ceRows: CE_ROWS_WGSL,
};

/** What the adapter and device are (from the GPU thread's init reply). */
export interface GpuInfo {
  vendor: string; architecture: string; description: string; device: string;
  features: string[]; enabled: string[]; limits: Record<string, number>;
}

/** Options of createWebGPUBackend. */
export interface WebGPUBackendOptions {
  /** Seconds a kernel may take before the call fails (default 300). */
  timeoutS?: number;
  /** Initial arena size in MB (default 16; grows as needed). */
  arenaMB?: number;
  /** Keep declared arrays (parameters, AdamW moments) on the device between calls (default true). */
  resident?: boolean;
  /** Device memory resident copies may take, in MB (default 4096); past it arrays are uploaded per call. */
  residentMB?: number;
  /** Check every resident hit against a host snapshot: a missed write announcement becomes an Error. */
  verifyResidency?: boolean;
}

/** The webgpu backend, with the adapter's description and call statistics. */
export interface WebGPUBackend extends Backend {
  readonly info: GpuInfo;
  /** GPU jobs run, bytes uploaded and read back, and calls that ran on ts because an operand was too big. */
  stats(): { jobs: number; upBytes: number; downBytes: number; oversize: number; residentBytes: number; residentHits: number; residentUploads: number };
  /** Turns residency on or off (off: device-newer arrays are copied back, every resident copy is freed). */
  setResidency(on: boolean): void;
  /**
   * Benchmarks: milliseconds of one job that uploads A [m,k] and B [k,n], runs `passes` GEMMs on
   * the device-resident operands in one submission and reads C back. (T(p) − T(1)) / (p − 1) is the
   * device time of one GEMM without transfers.
   */
  timeGemm(a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, passes: number): number;
}

/** Creates the backend: starts the GPU thread, requests the device, compiles every pipeline. */
export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
  if (typeof SharedArrayBuffer !== 'function') {
    throw new Error('SharedArrayBuffer is unavailable: serve the page cross-origin isolated (Cross-Origin-Opener-Policy: same-origin, Cross-Origin-Embedder-Policy: require-corp), as `frugal web` does');
  }
  if (typeof (globalThis as { window?: unknown }).window !== 'undefined' && typeof (globalThis as { document?: unknown }).document !== 'undefined') {
    throw new Error("a page's main thread may not block on the GPU: create the webgpu backend inside a Worker (see docs/browser.md)");
  }
  const plat = platform();
  if (!plat.spawn) throw new Error('this environment cannot start a worker thread for the GPU');
  const extra: Record<string, string> = {};
  if (plat.webgpuInit) {
    const w = plat.webgpuInit();
    if ('error' in w) throw new Error(w.error);
    extra.__webgpu = w.module;
  }
  const ctrlBuf = new SharedArrayBuffer(16);
  const msgBuf = new SharedArrayBuffer(65536);
  const ctrl = new Int32Array(ctrlBuf);
  let arena = new SharedArrayBuffer(Math.max(1, opts.arenaMB ?? 16) * 2 ** 20);
  const worker = plat.spawn(GPU_THREAD_SOURCE, { ctrl: ctrlBuf, msg: msgBuf, arena, ...extra });
  await worker.ready;
  const timeoutS = opts.timeoutS ?? 300;
  let disposed = false;
  const dec = new TextDecoder();
  const stats = { jobs: 0, upBytes: 0, downBytes: 0, oversize: 0, residentBytes: 0, residentHits: 0, residentUploads: 0 };

  /** Posts a message and blocks until the GPU thread replies; returns the reply text. */
  function call(m: Record<string, unknown>): string {
    if (disposed) throw new Error('webgpu backend: used after dispose(); create a new backend');
    Atomics.store(ctrl, 0, 0);
    worker.post(m);
    let waited = 0;
    while (Atomics.load(ctrl, 0) === 0) {
      if (Atomics.wait(ctrl, 0, 0, 1000) === 'timed-out' && ++waited >= timeoutS) {
        throw new Error(`webgpu backend: the GPU thread did not answer '${String(m.op)}' within ${timeoutS} s (device hung or thread died)`);
      }
    }
    const text = dec.decode(new Uint8Array(msgBuf, 0, Atomics.load(ctrl, 1)).slice());
    if (Atomics.load(ctrl, 0) === 2) throw new Error(`webgpu backend: ${text}`);
    return text;
  }

  let info: GpuInfo;
  try {
    info = JSON.parse(call({ op: 'init', shaders: SHADERS })) as GpuInfo;
  } catch (e) {
    worker.terminate();
    throw e;
  }
  const offsetAlign = info.limits.minStorageBufferOffsetAlignment ?? 256;
  const maxBinding = Math.min(info.limits.maxStorageBufferBindingSize ?? 134217728, info.limits.maxBufferSize ?? 268435456);

  /** Runs a job: grows the arena if needed, uploads, runs, and leaves outputs in the arena. */
  function run(job: Job): void {
    const bytes = job.words * 4;
    if (bytes > arena.byteLength) {
      arena = new SharedArrayBuffer(Math.ceil(bytes * 1.5 / 2 ** 20) * 2 ** 20);
      call({ op: 'arena', arena });
    }
    job.write(arena);
    const free = freed.splice(0);
    call({ op: 'run', roles: job.roles, passes: job.passes, free });
    for (const f of job.done) f();
    stats.jobs++;
    stats.upBytes += job.upWords * 4;
    stats.downBytes += job.downWords * 4;
  }
  /** True when any operand of the call would exceed the device's binding limit. */
  const tooBig = (...lens: number[]): boolean => {
    if (lens.some((n) => n * 4 > maxBinding)) { stats.oversize++; return true; }
    return false;
  };

  // Residency (see the file contract): one persistent device buffer per declared array.
  interface Resident { key: string; version: number; pending: boolean; bytes: number; ref: WeakRef<Float32Array>; snap: Float32Array | null }
  let entries = new WeakMap<Float32Array, Resident>();
  const live = new Map<string, Resident>();
  const freed: string[] = [];
  let nextId = 1, residentOn = opts.resident ?? true;
  const verify = opts.verifyResidency ?? false, capBytes = (opts.residentMB ?? 4096) * 2 ** 20;
  const release = (key: string): void => {
    const e = live.get(key);
    if (!e) return;
    live.delete(key);
    stats.residentBytes -= e.bytes;
    freed.push(key);
  };
  const finalizer = new FinalizationRegistry<string>(release);
  // A write by this backend's own AdamW (writer 'webgpu') advances the copy it just wrote; any other write leaves it stale.
  const unsubscribe = onHostWrite((arr, version, writer) => {
    const e = entries.get(arr);
    if (!e) return;
    if (writer === 'webgpu' && e.pending && e.version === version - 1) e.version = version;
    e.pending = false;
  });

  /** The resident copy of a declared array (created on first use), or null: undeclared, off, too big or over the cap. */
  function residentEntry(arr: Float32Array): Resident | null {
    if (!residentOn || residentVersion(arr) === undefined) return null;
    let e = entries.get(arr);
    if (e) return e;
    const bytes = arr.length * 4;
    if (bytes === 0 || bytes > maxBinding || stats.residentBytes + bytes > capBytes) return null;
    e = { key: `res:${nextId++}`, version: -1, pending: false, bytes, ref: new WeakRef(arr), snap: null };
    entries.set(arr, e);
    live.set(e.key, e);
    finalizer.register(arr, e.key);
    stats.residentBytes += bytes;
    return e;
  }
  /** Binds `arr` as role `name` of job j: its resident copy (uploaded only when stale), else an upload of its first len elements. */
  function operand(j: Job, name: string, arr: Float32Array | Int32Array, len: number): void {
    const e = arr instanceof Float32Array ? residentEntry(arr) : null;
    if (!e) { if (!(arr instanceof Float32Array && viewOperand(j, name, arr, len))) j.input(name, arr, len); return; }
    const f = arr as Float32Array, version = residentVersion(f)!;
    if (e.version === version) {
      if (verify && !isDeviceNewer(f)) checkSnapshot(e, f);
      stats.residentHits++;
      j.resident(name, e.key, f, false, false);
      return;
    }
    stats.residentUploads++;
    e.version = -1; // unknown until the job has run
    j.resident(name, e.key, f, true, false);
    j.done.push(() => { e.version = version; e.pending = false; if (verify) e.snap = f.slice(); });
  }
  /** A view into a declared array (residentParent): bound as a window of the parent's copy when aligned; false otherwise. */
  function viewOperand(j: Job, name: string, view: Float32Array, len: number): boolean {
    const pv = residentOn && len > 0 ? residentParent(view) : undefined;
    if (!pv || (pv.offset * 4) % offsetAlign !== 0 || pv.offset + len > pv.parent.length) return false;
    const e = residentEntry(pv.parent);
    if (!e) return false;
    operand(j, name + '#parent', pv.parent, pv.parent.length);
    j.resident(name, e.key, pv.parent, false, false, [pv.offset * 4, len * 4]);
    return true;
  }
  /** Verify mode: a resident array whose host values changed without an announced write is an error. */
  function checkSnapshot(e: Resident, arr: Float32Array): void {
    const s = e.snap;
    if (!s) return;
    for (let i = 0; i < arr.length; i++) {
      if (!Object.is(s[i], arr[i])) throw new Error(`webgpu residency: a resident array of ${arr.length} floats changed on the host at index ${i} without an announced write (bump the tensor's version after writing its data, or call hostWrote)`);
    }
  }
  /** Copies a device-newer resident array back to the host (the syncHost callback). */
  function download(arr: Float32Array, e: Resident): void {
    const j = new Job();
    j.resident('dl', e.key, arr, false, true);
    run(j);
    arr.set(j.view('dl'));
    if (verify) e.snap = arr.slice();
  }
  /** Copies every device-newer array back and forgets every resident copy. */
  function dropAll(): void {
    for (const e of live.values()) { const a = e.ref.deref(); if (a && isDeviceNewer(a)) syncHost(a); }
    for (const key of [...live.keys()]) release(key);
    entries = new WeakMap();
  }

  /** AdamW of a parameter too big to bind: ts, after the device copies are synced back and forgotten; false otherwise. */
  function adamwTooBig(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWHyper): boolean {
    if (!tooBig(w.length)) return false;
    for (const a of [w, m, v]) { syncHost(a); const e = entries.get(a); if (e) { e.version = -1; e.pending = false; } }
    tsAdamW(w, g, m, v, h);
    return true;
  }
  /**
   * Adds one parameter's AdamW pass to job j (roles prefixed `pre`); returns what to do once the job
   * ran. Resident w, m, v are updated in place on the device; w also comes back (host parameters stay
   * current), m and v stay there (device-newer until syncHost); other operands travel as inout.
   */
  function adamwPass(j: Job, pre: string, w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamWHyper): () => void {
    const n = w.length;
    const state = ([[pre + 'w', w, true], [pre + 'm', m, false], [pre + 'v', v, false]] as const).map(([name, arr, back]) => {
      const e = residentEntry(arr);
      if (!e) { j.inout(name, arr, n); return { name, arr, e: null, version: 0, back }; }
      const version = residentVersion(arr)!, stale = e.version !== version;
      if (!stale && verify && !isDeviceNewer(arr)) checkSnapshot(e, arr);
      if (stale) stats.residentUploads++; else stats.residentHits++;
      e.version = -1; // unknown until the job has run
      j.resident(name, e.key, arr, stale, back);
      return { name, arr, e, version, back };
    });
    operand(j, pre + 'g', g, n);
    j.pass('adamw', [pre + 'w', pre + 'g', pre + 'm', pre + 'v'], [n, f32(h.beta1), f32(h.beta2), f32(h.eps), f32(h.stepSize), f32(h.decay), f32(h.invBc2Sqrt)], eltGrid(n));
    return () => {
      for (const { name, arr, e, version, back } of state) {
        if (!e) { j.read(name, arr); continue; }
        // The device copy holds the written values: current now, and after the caller's announcement (pending).
        e.version = version; e.pending = true;
        if (back) { arr.set(j.view(name)); if (verify) e.snap = arr.slice(); } else markDeviceNewer(arr, 'webgpu', () => download(arr, e));
      }
    };
  }

  const kernels: Partial<Kernels> = {
    MatMul(x: MatMulArgs): void {
      const { batch, m, n, k } = x;
      if (batch <= 0 || m <= 0 || n <= 0) return;
      const extA = m * k + (batch - 1) * x.strideA, extB = k * n + (batch - 1) * x.strideB, extC = m * n + (batch - 1) * x.strideC;
      if (x.a.length < extA || x.b.length < extB || x.c.length < extC) {
        throw new Error(`webgpu MatMul: operand too short for batch=${batch} m=${m} n=${n} k=${k} (a ${x.a.length}/${extA}, b ${x.b.length}/${extB}, c ${x.c.length}/${extC} elements)`);
      }
      if (k === 0) { if (!x.accumulate) { for (let b = 0; b < batch; b++) x.c.fill(0, b * x.strideC, b * x.strideC + m * n); } return; }
      if (tooBig(extA, extB, extC) || batch > 65535 || Math.ceil(m / 64) > 65535 || Math.ceil(n / 64) > 65535) { tsMatMul(x); return; }
      const j = new Job();
      operand(j, 'mm.a', x.a, extA);
      operand(j, 'mm.b', x.b, extB);
      // C is read when accumulating, or when batches leave gaps the kernel does not write.
      const readC = x.accumulate || (batch > 1 && x.strideC !== m * n);
      if (readC) j.inout('mm.c', x.c, extC); else j.output('mm.c', extC);
      j.pass('matmul', ['mm.a', 'mm.b', 'mm.c'], [m, n, k, x.transA ? 1 : 0, x.transB ? 1 : 0, x.strideA, x.strideB, x.strideC, x.accumulate ? 1 : 0], [Math.ceil(n / 64), Math.ceil(m / 64), batch]);
      run(j);
      j.read('mm.c', x.c);
    },
    RMSNorm(x, w, out, rows, cols, eps, rstd): void {
      if (rows <= 0) return;
      if (tooBig(rows * cols)) { tsRMSNorm(x, w, out, rows, cols, eps, rstd); return; }
      const j = new Job();
      operand(j, 'rn.x', x, rows * cols); operand(j, 'rn.w', w, cols);
      j.output('rn.o', rows * cols); j.output('rn.r', rows, !!rstd);
      j.pass('rmsnorm', ['rn.x', 'rn.w', 'rn.o', 'rn.r'], [rows, cols, f32(eps)], rowGrid(rows));
      run(j);
      j.read('rn.o', out);
      if (rstd) j.read('rn.r', rstd);
    },
    RMSNormBackward(x, w, rstd, gradOut, gradX, gradW, rows, cols): void {
      if (rows <= 0 || (!gradX && !gradW)) return;
      if (tooBig(rows * cols)) { tsRMSNormBackward(x, w, rstd, gradOut, gradX, gradW, rows, cols); return; }
      const j = new Job();
      operand(j, 'rb.x', x, rows * cols); operand(j, 'rb.r', rstd, rows); operand(j, 'rb.go', gradOut, rows * cols);
      if (gradX) {
        operand(j, 'rb.w', w, cols); j.output('rb.gx', rows * cols);
        j.pass('rmsnormBx', ['rb.x', 'rb.w', 'rb.r', 'rb.go', 'rb.gx'], [rows, cols], rowGrid(rows));
      }
      if (gradW) {
        j.inout('rb.gw', gradW, cols);
        j.pass('rmsnormBw', ['rb.x', 'rb.r', 'rb.go', 'rb.gw'], [rows, cols], [Math.ceil(cols / 64), 1, 1]);
      }
      run(j);
      if (gradX) j.read('rb.gx', gradX);
      if (gradW) j.read('rb.gw', gradW);
    },
    Softmax(x, out, rows, cols): void {
      if (rows <= 0) return;
      if (tooBig(rows * cols)) { tsSoftmax(x, out, rows, cols); return; }
      const j = new Job();
      operand(j, 'sm.x', x, rows * cols); j.output('sm.o', rows * cols);
      j.pass('softmax', ['sm.x', 'sm.o'], [rows, cols], rowGrid(rows));
      run(j);
      j.read('sm.o', out);
    },
    SoftmaxBackward(p, gradOut, gradIn, rows, cols, scale): void {
      if (rows <= 0) return;
      if (tooBig(rows * cols)) { tsSoftmaxBackward(p, gradOut, gradIn, rows, cols, scale); return; }
      const j = new Job();
      operand(j, 'sb.p', p, rows * cols); operand(j, 'sb.go', gradOut, rows * cols); j.output('sb.gi', rows * cols);
      j.pass('softmaxB', ['sb.p', 'sb.go', 'sb.gi'], [rows, cols, f32(scale)], rowGrid(rows));
      run(j);
      j.read('sb.gi', gradIn);
    },
    SiluMul(g, u, out): void {
      const n = out.length;
      if (n === 0) return;
      if (tooBig(n)) { tsSiluMul(g, u, out); return; }
      const j = new Job();
      operand(j, 'sl.g', g, n); operand(j, 'sl.u', u, n); j.output('sl.o', n);
      j.pass('silumul', ['sl.g', 'sl.u', 'sl.o'], [n], eltGrid(n));
      run(j);
      j.read('sl.o', out);
    },
    SiluMulBackward(g, u, gradOut, gradG, gradU): void {
      const n = gradG.length;
      if (n === 0) return;
      if (tooBig(n)) { tsSiluMulBackward(g, u, gradOut, gradG, gradU); return; }
      const j = new Job();
      operand(j, 'slb.g', g, n); operand(j, 'slb.u', u, n); operand(j, 'slb.go', gradOut, n);
      j.output('slb.gg', n); j.output('slb.gu', n);
      j.pass('silumulB', ['slb.g', 'slb.u', 'slb.go', 'slb.gg', 'slb.gu'], [n], eltGrid(n));
      run(j);
      j.read('slb.gg', gradG); j.read('slb.gu', gradU);
    },
    AddInto(dst, src): void {
      const n = dst.length;
      if (n === 0) return;
      if (tooBig(n)) { tsAddInto(dst, src); return; }
      const j = new Job();
      j.inout('ai.d', dst, n); operand(j, 'ai.s', src, n);
      j.pass('addinto', ['ai.d', 'ai.s'], [n], eltGrid(n));
      run(j);
      j.read('ai.d', dst);
    },
    AdamW(w, g, m, v, h: AdamWHyper): void {
      if (w.length === 0) return;
      if (adamwTooBig(w, g, m, v, h)) return;
      const j = new Job();
      const finish = adamwPass(j, 'ad.', w, g, m, v, h);
      run(j);
      finish();
    },
    AdamWBatch(items: AdamWItem[]): void {
      // One job (one submission) for many parameters, in chunks of at most BATCH_WORDS arena words.
      const arrays = new Set<unknown>();
      for (const it of items) for (const a of [it.w, it.g, it.m, it.v]) arrays.add(a);
      if (arrays.size < items.length * 4) { for (const it of items) kernels.AdamW!(it.w, it.g, it.m, it.v, it.h); return; }
      let j = new Job(), todo: Array<() => void> = [];
      const flush = (): void => { if (!todo.length) return; run(j); for (const f of todo) f(); j = new Job(); todo = []; };
      for (const [k, it] of items.entries()) {
        if (it.w.length === 0 || adamwTooBig(it.w, it.g, it.m, it.v, it.h)) continue;
        todo.push(adamwPass(j, `ad${k}.`, it.w, it.g, it.m, it.v, it.h));
        if (j.words > BATCH_WORDS) flush();
      }
      flush();
    },
    SumSquares(x): number {
      const n = x.length;
      if (n === 0) return 0;
      if (tooBig(n)) return tsSumSquares(x);
      const blocks = Math.ceil(n / 1024);
      const j = new Job();
      operand(j, 'ss.x', x, n); j.output('ss.o', blocks);
      j.pass('sumsq', ['ss.x', 'ss.o'], [n], rowGrid(blocks));
      run(j);
      const parts = j.view('ss.o');
      let s = 0;
      for (let i = 0; i < blocks; i++) s += parts[i]!;
      return s;
    },
    SumSquaresBatch(xs: Float32Array[]): number[] {
      const out = new Array<number>(xs.length).fill(0);
      let j = new Job(), todo: Array<() => void> = [];
      const flush = (): void => { if (!todo.length) return; run(j); for (const f of todo) f(); j = new Job(); todo = []; };
      for (const [k, x] of xs.entries()) {
        const n = x.length;
        if (n === 0) continue;
        if (tooBig(n)) { out[k] = tsSumSquares(x); continue; }
        const blocks = Math.ceil(n / 1024), job = j;
        operand(job, `ss${k}.x`, x, n); job.output(`ss${k}.o`, blocks);
        job.pass('sumsq', [`ss${k}.x`, `ss${k}.o`], [n], rowGrid(blocks));
        todo.push(() => { const parts = job.view(`ss${k}.o`); let s = 0; for (let i = 0; i < blocks; i++) s += parts[i]!; out[k] = s; });
        if (j.words > BATCH_WORDS) flush();
      }
      flush();
      return out;
    },
    RowsAxpy(dst, dstRows, src, srcRows, scales, count, D): void {
      if (count <= 0 || D <= 0) return;
      // Range checks on the engine side: a bad row is a RangeError, as in ts, never a GPU fault.
      let distinct = true;
      const seen = dstRows ? new Uint8Array(Math.ceil(dst.length / D)) : null;
      for (let i = 0; i < count; i++) {
        const d = (dstRows ? dstRows[i]! : i) * D, s = (srcRows ? srcRows[i]! : i) * D;
        if (d < 0 || d + D > dst.length || s < 0 || s + D > src.length) throw new RangeError(`RowsAxpy: row ${i} out of range`);
        if (seen) { if (seen[d / D]) distinct = false; seen[d / D] = 1; }
      }
      if (tooBig(dst.length, src.length)) { tsRowsAxpy(dst, dstRows, src, srcRows, scales, count, D); return; }
      const j = new Job();
      j.inout('ra.d', dst, dst.length); operand(j, 'ra.s', src, src.length);
      operand(j, 'ra.dr', dstRows ?? ONE_I32, dstRows ? count : 1); operand(j, 'ra.sr', srcRows ?? ONE_I32, srcRows ? count : 1);
      operand(j, 'ra.sc', scales ?? ONE_F32, scales ? count : 1);
      const threads = distinct ? count * D : D;
      j.pass('rowsaxpy', ['ra.d', 'ra.s', 'ra.dr', 'ra.sr', 'ra.sc'], [count, D, dstRows ? 1 : 0, srcRows ? 1 : 0, scales ? 1 : 0, distinct ? 0 : 1], eltGrid(threads));
      run(j);
      j.read('ra.d', dst);
    },
    AttentionForward(q, k, v, out, g: AttnGeometry): void {
      const rows = g.B * g.T * g.H;
      if (rows === 0) return;
      const extK = g.B * g.S * g.ldk, extV = g.B * g.S * g.ldv;
      if (tooBig(rows * g.S, extK, extV, rows * g.Dk)) throw new Error(`webgpu AttentionForward: B·T·H·S = ${rows * g.S} scores exceed the device's binding limit; use a smaller batch or sequence`);
      const j = new Job();
      operand(j, 'at.q', q, rows * g.Dk); operand(j, 'at.k', k, extK); operand(j, 'at.v', v, extV);
      j.output('at.o', rows * g.Dv); j.scratch('at.p', rows * g.S);
      j.pass('attnFwd', ['at.q', 'at.k', 'at.v', 'at.o', 'at.p'], geo(g), rowGrid(rows));
      run(j);
      j.read('at.o', out);
    },
    AttentionBackward(q, k, v, gradOut, gradQ, gradK, gradV, g: AttnGeometry): void {
      const rows = g.B * g.T * g.H, keys = g.B * g.S * g.KH;
      if (rows === 0) return;
      const extK = g.B * g.S * g.ldk, extV = g.B * g.S * g.ldv;
      if (tooBig(rows * g.S, extK, extV, rows * g.Dk)) throw new Error(`webgpu AttentionBackward: B·T·H·S = ${rows * g.S} scores exceed the device's binding limit; use a smaller batch or sequence`);
      const j = new Job();
      operand(j, 'ab.q', q, rows * g.Dk); operand(j, 'ab.k', k, extK); operand(j, 'ab.v', v, extV); operand(j, 'ab.go', gradOut, rows * g.Dv);
      j.scratch('ab.p', rows * g.S); j.scratch('ab.ds', rows * g.S);
      j.output('ab.gq', rows * g.Dk); j.output('ab.gk', keys * g.Dk); j.output('ab.gv', keys * g.Dv);
      j.pass('attnBwd1', ['ab.q', 'ab.k', 'ab.v', 'ab.go', 'ab.p', 'ab.ds', 'ab.gq'], geo(g), rowGrid(rows));
      j.pass('attnBwd2', ['ab.q', 'ab.go', 'ab.p', 'ab.ds', 'ab.gk', 'ab.gv'], geo(g), rowGrid(keys));
      run(j);
      const gq = j.view('ab.gq');
      for (let i = 0; i < gq.length; i++) gradQ[i]! += gq[i]!;
      // Dense [B, S, KH, D] results added into the strided arrays, K first then V (they may alias).
      addStrided(gradK, j.view('ab.gk'), keys, g.Dk, g.KH, g.ldk);
      addStrided(gradV, j.view('ab.gv'), keys, g.Dv, g.KH, g.ldv);
    },
    Fp8QuantizeRows(x, rows, cols, codes, scales, ue8m0): void { quantize(x, null, rows, cols, 1, 128, codes, scales, null, ue8m0, 'Fp8QuantizeRows'); },
    Fp8QuantizeCols(x, rows, cols, codes, scales, ue8m0): void { quantize(x, null, rows, cols, 128, 1, codes, scales, null, ue8m0, 'Fp8QuantizeCols'); },
    Fp8QuantizeWeight(w, rows, cols, codes, scales, codesT, ue8m0): void { quantize(w, null, rows, cols, 128, 128, codes, scales, codesT, ue8m0, 'Fp8QuantizeWeight'); },
    Fp8RequantizeCols(codes, rowScales, rows, cols, outCodes, outScales, ue8m0): void {
      quantize(codes, rowScales, rows, cols, 128, 1, outCodes, outScales, null, ue8m0, 'Fp8RequantizeCols');
    },
    Fp8ScaledGemm(g: Fp8GemmArgs): void {
      const { m: M, n: N, k: K } = g;
      const need = (what: string, len: number, n: number): void => { if (len < n) throw new RangeError(`webgpu Fp8ScaledGemm: ${what} has ${len} elements, needs ${n} (m=${M} n=${N} k=${K})`); };
      if (!(g.sbDiv >= 1)) throw new RangeError(`webgpu Fp8ScaledGemm: sbDiv must be >= 1, got ${g.sbDiv}`);
      need('a', g.a.length, M * K); need('b', g.b.length, K * N); need('c', g.c.length, M * N);
      if (M * N === 0) return;
      if (K === 0) { if (!g.accumulate) g.c.fill(0, 0, M * N); return; }
      const KB = Math.ceil(K / 128);
      const saLen = (KB - 1) * g.saKb + (M - 1) * g.saRow + 1, sbLen = (KB - 1) * g.sbKb + Math.floor((N - 1) / g.sbDiv) * g.sbCol + 1;
      need('sa (largest index + 1)', g.sa.length, saLen); need('sb (largest index + 1)', g.sb.length, sbLen);
      if (tooBig(M * N, Math.ceil(M * K / 4), Math.ceil(K * N / 4), saLen, sbLen) || Math.ceil(M / 64) > 65535 || Math.ceil(N / 64) > 65535) {
        throw new RangeError(`webgpu Fp8ScaledGemm: ${M}x${N}x${K} exceeds the device's binding or dispatch limits; use the ts path (gemm 'ts') for it`);
      }
      const j = new Job();
      j.inputBytes('fg.a', g.a, M * K); operand(j, 'fg.sa', g.sa, saLen);
      j.inputBytes('fg.b', g.b, K * N); operand(j, 'fg.sb', g.sb, sbLen);
      if (g.accumulate) j.inout('fg.c', g.c, M * N); else j.output('fg.c', M * N);
      j.pass('fp8Gemm', ['fg.a', 'fg.sa', 'fg.b', 'fg.sb', 'fg.c'],
        [M, N, K, g.aTrans ? 1 : 0, g.saKb, g.saRow, g.sbKb, g.sbDiv, g.sbCol, g.accumulate ? 1 : 0, g.accum ?? 0], [Math.ceil(N / 64), Math.ceil(M / 64), 1]);
      run(j);
      j.read('fg.c', g.c);
    },
    ...moeKernels({ newJob: () => new Job(), run, operand, tooBig, eltGrid, rowGrid }),
    MatMulBatch: matmulBatch({ newJob: () => new Job(), run, operand, tooBig, eltGrid, rowGrid, single: (x) => kernels.MatMul!(x), maxGroups: 65535 }),
    ...headKernels({ newJob: () => new Job(), run, operand, tooBig, eltGrid, rowGrid, matmul: (x) => kernels.MatMul!(x) }),
  };

  // The whole-pass decode engine (decode-engine.ts): one job per decode pass.
  Object.assign(kernels, decodeEngineKernels({ run, operand, maxBinding, free: (key) => freed.push(key) }));

  /**
   * One FP8 quantisation in th×tw tiles: of f32 `src` (rowScales null) or of FP8 rows (codes `src`
   * with their 1×128 rowScales, dequantised first). Scales pass, then codes (and transposed codes).
   */
  function quantize(src: Float32Array | Uint8Array, rowScales: Float32Array | null, rows: number, cols: number, th: number, tw: number,
    codes: Uint8Array, scales: Float32Array, codesT: Uint8Array | null, ue8m0: boolean, what: string): void {
    const n = rows * cols, nTc = Math.ceil(cols / tw), nT = Math.ceil(rows / th) * nTc, ntr = Math.ceil(cols / 128);
    const need = (name: string, len: number, want: number): void => { if (len < want) throw new RangeError(`webgpu ${what}: ${name} has ${len} elements, needs ${want} (${rows}x${cols})`); };
    need(rowScales ? 'codes' : 'x', src.length, n); need('output codes', codes.length, n); need('output scales', scales.length, nT);
    if (rowScales) need('row scales', rowScales.length, rows * ntr);
    if (codesT) need('codesT', codesT.length, n);
    if (n === 0) return;
    if (tooBig(n)) throw new RangeError(`webgpu ${what}: ${rows}x${cols} exceeds the device's binding limit; use the ts path (gemm 'ts') for it`);
    const j = new Job();
    const ins = rowScales ? ['fq.qi', 'fq.rs'] : ['fq.x'];
    if (rowScales) { j.inputBytes('fq.qi', src as Uint8Array, n); operand(j, 'fq.rs', rowScales, rows * ntr); } else operand(j, 'fq.x', src as Float32Array, n);
    const words = Math.ceil(n / 4);
    j.output('fq.s', nT); j.output('fq.c', words); if (codesT) j.output('fq.ct', words);
    const prm = [rows, cols, th, tw, nTc, nT, ue8m0 ? 1 : 0, AMAX_THRESHOLD_BITS, AMAX_FLOOR_SCALE_BITS, 0, ntr];
    const [sp, cp] = rowScales ? ['fp8Rescales', 'fp8Recodes'] : ['fp8Scales', 'fp8Codes'];
    j.pass(sp, [...ins, 'fq.s'], prm, rowGrid(nT));
    j.pass(cp, [...ins, 'fq.s', 'fq.c'], prm, eltGrid(words));
    if (codesT) { const t = prm.slice(); t[9] = 1; j.pass(cp, [...ins, 'fq.s', 'fq.ct'], t, eltGrid(words)); }
    run(j);
    scales.set(j.view('fq.s'));
    j.readBytes('fq.c', codes, n);
    if (codesT) j.readBytes('fq.ct', codesT, n);
  }

  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown adapter';
  return {
    name: 'webgpu',
    fallback: 'ts',
    threads: 1,
    kernels,
    info,
    stats: () => ({ ...stats }),
    setResidency(on: boolean): void { if (!on) dropAll(); residentOn = on; },
    timeGemm(a, b, c, m, n, k, passes): number {
      if (!(passes >= 1 && passes <= 60)) throw new RangeError(`timeGemm: passes must be 1..60, got ${passes}`);
      if (tooBig(m * k, k * n, m * n)) throw new RangeError(`timeGemm: ${m}x${n}x${k} exceeds the device's binding limit`);
      const j = new Job();
      j.input('mm.a', a, m * k); j.input('mm.b', b, k * n); j.output('mm.c', m * n);
      for (let i = 0; i < passes; i++) j.pass('matmul', ['mm.a', 'mm.b', 'mm.c'], [m, n, k, 0, 0, 0, 0, 0, 0], [Math.ceil(n / 64), Math.ceil(m / 64), 1]);
      const t0 = performance.now();
      run(j);
      const ms = performance.now() - t0;
      j.read('mm.c', c);
      return ms;
    },
    describe: () => `webgpu (${name}; WGSL 64x64 tiled GEMM, fused RMSNorm/softmax/SiLU/attention/AdamW, grouped MoE FFN, fused output head + cross-entropy, FP8 E4M3 quantisers and scaled GEMM; features: ${info.enabled.join(', ') || 'none'}; GPU thread + shared-memory arena; ${residentOn ? 'parameters and AdamW moments device-resident' : 'no device residency'})`,
    dispose(): void {
      if (disposed) return;
      unsubscribe();
      try { dropAll(); } catch { /* a lost device: nothing to copy back */ }
      try { call({ op: 'dispose' }); } catch { /* the thread is going away anyway */ }
      disposed = true;
      worker.terminate();
    },
  };
}

/** Arena words past which a batched call (AdamWBatch, SumSquaresBatch) starts another job (128 MB). */
const BATCH_WORDS = 32 * 2 ** 20;
const ONE_I32 = new Int32Array(1);
const ONE_F32 = new Float32Array(1);
const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
/** The bits of an f32 uniform field, as the u32 word the job carries. */
function f32(x: number): number { f32buf[0] = x; return u32buf[0]!; }
/** Bits of the smallest f32 above 1e-4 (amax below it takes the reference's 1e-4 floor: quant.ts scaleOf). */
const AMAX_THRESHOLD_BITS = ((): number => { const b = f32(1e-4); return Math.fround(1e-4) < 1e-4 ? b + 1 : b; })();
/** Bits of fround(1e-4 / 448), the scale of a tile whose amax is below that floor. */
const AMAX_FLOOR_SCALE_BITS = f32(1e-4 / 448);
/** A 2-D grid of `n` workgroups (at most 65535 per dimension). */
function rowGrid(n: number): [number, number, number] { const x = Math.min(n, 65535); return [x, Math.ceil(n / x), 1]; }
/** The grid for `n` elements in 256-thread workgroups. */
function eltGrid(n: number): [number, number, number] { return rowGrid(Math.ceil(n / 256)); }
function geo(g: AttnGeometry): number[] { return [g.B, g.T, g.S, g.H, g.KH, g.Dk, g.Dv, g.ldk, g.ldv, f32(g.scale)]; }
/** dst[(r / KH)·ld + (r % KH)·D + e] += dense[r·D + e] for rows r of width D. */
function addStrided(dst: Float32Array, dense: Float32Array, rows: number, D: number, KH: number, ld: number): void {
  for (let r = 0; r < rows; r++) {
    const o = Math.floor(r / KH) * ld + (r % KH) * D, s = r * D;
    for (let e = 0; e < D; e++) dst[o + e]! += dense[s + e]!;
  }
}
