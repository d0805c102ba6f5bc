/**
 * The webgpu decode engine: the registry's DecodeEngineCreate / DecodeEngineMain / DecodeEngineMtp
 * (src/model/decode-engine.ts lays the model out; RowDecoder calls them) as ONE GPU job per pass —
 * embed, every layer's absorbed MLA over the latent cache and its DeepSeekMoE or dense MLP, final
 * norm and head — with the WGSL of wgsl-decode.ts. Mirrors RowDecoder's TypeScript path step for
 * step (model/decode.ts), as native/src/decode_engine.cc does.
 *
 * Contract:
 * - Weights are bound through the backend's residency (`operand`): declared parameters stay on the
 *   device and are uploaded again only after an announced write. The engine holds f32 weights only;
 *   Create returns null for bf16 / Q8_0 arrays or an array past the binding limit (RowDecoder then
 *   keeps its TypeScript path).
 * - Activations live in device scratch buffers; only the token ids, rope tables (and MTP's input
 *   hidden rows) go up, and only `hidden`, `logits` and the cache rows the pass wrote come back.
 * - KV cache: each host cache layer array gets a device copy and a host *shadow* of what that copy
 *   holds. Before a pass, rows [0, start) of each segment's array are compared with the shadow (bit
 *   for bit) and the changed range is uploaded in the same job, so any host write — prefill on the
 *   host, prefix/disk cache restores, other backends — is seen without an announcement; the rows the
 *   pass writes are copied back into the host array (and the shadow) in the same job. Host arrays
 *   are therefore always current; the caller still owns cache.length. Copies are freed with their
 *   array (FinalizationRegistry) and forgotten after a failed job.
 * Browser-safe.
 */
import type { EngineArray, Kernels } from '../registry.js';
import { Job } from './job.js';

/** What the engine needs from the backend (index.ts). */
export interface EngineHost {
  run(j: Job): void;
  /** Binds arr as role name of job j (resident copy when declared, else an upload). */
  operand(j: Job, name: string, arr: Float32Array | Int32Array, len: number): void;
  /** Largest storage binding, in bytes. */
  maxBinding: number;
  /** Destroys a persistent device buffer at the next job. */
  free(key: string): void;
}

type F = Float32Array;
interface Mlp { gate: F; up: F; down: F; I: number }
interface Layer {
  attnNorm: F; ffnNorm: F; q: F | null; qA: F | null; qANorm: F | null; qB: F | null; kvA: F; kvANorm: F; kvB: F; o: F;
  moe: { router: F; bias: F | null; shared: Mlp | null; experts: Mlp[] } | null; mlp: Mlp | null;
}
interface Mtp { embed: F; enorm: F; hnorm: F; eh: F; headNorm: F; head: F; layer: Layer }
interface Cfg { H: number; V: number; L: number; nh: number; dn: number; dr: number; dv: number; rkv: number; rq: number; E: number; k: number; G: number; Gk: number; limited: boolean; sigmoid: boolean; normTopk: boolean; rsf: number; eps: number; scale: number }
interface Engine { c: Cfg; embed: F; norm: F; head: F; layers: Layer[]; mtp: Mtp[] }
interface CacheCopy { key: string; shadow: Uint32Array; host: Uint32Array }

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
function bits(x: number): number { f32buf[0] = x; return u32buf[0]!; }
function rowGrid(n: number): [number, number, number] { const x = Math.min(n, 65535); return [x, Math.ceil(n / x), 1]; }
function eltGrid(n: number): [number, number, number] { return rowGrid(Math.ceil(n / 256)); }

/** The three engine kernels over a backend host. */
export function decodeEngineKernels(host: EngineHost): Pick<Kernels, 'DecodeEngineCreate' | 'DecodeEngineMain' | 'DecodeEngineMtp' | 'DecodeEngineSpec'> {
  const engines = new WeakSet<object>();
  let caches = new WeakMap<Float32Array, CacheCopy>();
  let nextId = 1;
  const finalizer = new FinalizationRegistry<string>((key) => host.free(key));

  function create(cfg: Float64Array, kinds: Int32Array, arrays: Array<EngineArray | null>): object | null {
    const g = (i: number): number => cfg[i]!;
    const c: Cfg = { H: g(0), V: g(1), L: g(2), nh: g(3), dn: g(4), dr: g(5), dv: g(6), rkv: g(7), rq: g(8), E: g(9), k: g(10), G: g(11), Gk: g(12),
      limited: g(13) !== 0, sigmoid: g(14) !== 0, normTopk: g(15) !== 0, rsf: g(16), eps: g(17), scale: g(18) };
    const nMtp = g(19);
    if (c.k > 16 || c.G > 64) return null; // the WGSL routing's private arrays
    let at = 0;
    const take = (n: number, what: string): F => {
      const a = arrays[at++];
      if (!(a instanceof Float32Array)) throw Object.assign(new Error('not f32'), { notF32: true });
      if (a.length !== n) throw new RangeError(`webgpu DecodeEngineCreate: arrays[${at - 1}] (${what}) has ${a.length} elements, expected ${n}`);
      if (n * 4 > host.maxBinding) throw Object.assign(new Error('too big'), { notF32: true });
      return a;
    };
    const opt = (n: number, what: string): F | null => (arrays[at] === null ? (at++, null) : take(n, what));
    const { H, nh, dn, dr, dv, rkv, rq } = c;
    const mlp = (I: number): Mlp => ({ gate: take(I * H, 'gate'), up: take(I * H, 'up'), down: take(H * I, 'down'), I });
    const mlpAuto = (what: string): Mlp | null => {
      const a = arrays[at];
      if (a === null) { at += 3; return null; }
      if (!(a instanceof Float32Array) || a.length % H !== 0) return mlp(-1); // take() names the problem
      void what;
      return mlp(a.length / H);
    };
    const layer = (moe: boolean): Layer => {
      const attnNorm = take(H, 'attn norm'), ffnNorm = take(H, 'ffn norm');
      const q = opt(nh * (dn + dr) * H, 'q_proj'), qA = opt(rq * H, 'q_a_proj'), qANorm = opt(rq, 'q_a_norm'), qB = opt(nh * (dn + dr) * rq, 'q_b_proj');
      if (!q && !(qA && qANorm && qB)) throw new RangeError('webgpu DecodeEngineCreate: a layer has neither q_proj nor q_a_proj/q_a_norm/q_b_proj');
      const kvA = take((rkv + dr) * H, 'kv_a_proj'), kvANorm = take(rkv, 'kv_a_norm'), kvB = take(nh * (dn + dv) * rkv, 'kv_b_proj'), o = take(H * nh * dv, 'o_proj');
      if (!moe) return { attnNorm, ffnNorm, q, qA, qANorm, qB, kvA, kvANorm, kvB, o, moe: null, mlp: mlpAuto('mlp') };
      const router = take(c.E * H, 'router'), bias = opt(c.E, 'bias'), shared = mlpAuto('shared');
      const experts: Mlp[] = [];
      for (let e = 0; e < c.E; e++) { const m = mlpAuto('expert'); if (!m) throw new RangeError(`webgpu DecodeEngineCreate: expert ${e} is missing`); experts.push(m); }
      return { attnNorm, ffnNorm, q, qA, qANorm, qB, kvA, kvANorm, kvB, o, moe: { router, bias, shared, experts }, mlp: null };
    };
    try {
      const embed = take(c.V * H, 'embed'), norm = take(H, 'norm'), head = take(c.V * H, 'head');
      const layers = Array.from({ length: c.L }, (_, l) => layer(kinds[l] === 1));
      const mtp = Array.from({ length: nMtp }, (_, d): Mtp => ({
        embed: take(c.V * H, 'mtp embed'), enorm: take(H, 'enorm'), hnorm: take(H, 'hnorm'), eh: take(H * 2 * H, 'eh_proj'),
        headNorm: take(H, 'mtp head norm'), head: take(c.V * H, 'mtp head'), layer: layer(kinds[c.L + d] === 1),
      }));
      if (at !== arrays.length) throw new RangeError(`webgpu DecodeEngineCreate: ${arrays.length} arrays given, ${at} expected`);
      const eng: Engine = { c, embed, norm, head, layers, mtp };
      engines.add(eng);
      return eng;
    } catch (e) {
      if ((e as { notF32?: boolean }).notF32) return null;
      throw e;
    }
  }

  /** One pass under construction: the job, the weights bound so far, cache copies touched. */
  class Pass {
    readonly j = new Job();
    private readonly bound = new Map<Float32Array, string>();
    private readonly sizes = new Map<string, number>();
    private uploads = 0;
    readonly touched: Array<[Float32Array, CacheCopy]> = [];
    private readonly downs: Array<[string, Float32Array, CacheCopy, number]> = [];
    /** Rope tables of the rows being built (a speculative step has one pair per section). */
    cos = 'de.cos';
    sin = 'de.sin';
    constructor(public e: Engine) {}
    /** The role name of weight array a in this job (bound once). */
    w(a: F): string {
      let n = this.bound.get(a);
      if (!n) { n = `de.w${this.bound.size}`; this.bound.set(a, n); host.operand(this.j, n, a, a.length); }
      return n;
    }
    /** A device-only buffer of at least len floats (the largest size asked in this job: passes share it). */
    scratch(name: string, len: number): string {
      const n = Math.max(1, len, this.sizes.get(name) ?? 0);
      if (n * 4 > host.maxBinding) throw new RangeError(`webgpu decode engine: scratch ${name} needs ${n * 4} bytes, past the device's binding limit ${host.maxBinding}: pass fewer rows (e.g. a smaller prefill chunk)`);
      this.sizes.set(name, n);
      this.j.scratch(name, n);
      return name;
    }
    p(pipe: string, binds: string[], params: number[], grid: [number, number, number]): void { this.j.pass(pipe, binds, params, grid); }
    /** Y[yoff + b·ybs + r·ldy + j] (+)= Σ_p X[xoff + b·xbs + r·ldx + p]·W[woff + b·wbs + j·wj + p·wp]. */
    lin(x: string, xoff: number, ldx: number, R: number, w: string, N: number, K: number, y: string, yoff: number, ldy: number, acc: boolean,
      o: { batch?: number; xbs?: number; woff?: number; wj?: number; wp?: number; wbs?: number; ybs?: number; expert?: number } = {}): void {
      const masked = o.expert !== undefined;
      const binds = masked ? [x, w, y, 'de.ids', 'de.gw'] : [x, w, y];
      this.p(masked ? 'decLinearMasked' : 'decLinear', binds, [R, N, K, xoff, ldx, o.xbs ?? 0, o.woff ?? 0, o.wj ?? K, o.wp ?? 1, o.wbs ?? 0, yoff, ldy, o.ybs ?? 0, acc ? 1 : 0, o.expert ?? 0, this.e.c.k],
        [Math.ceil(N / 64), R, o.batch ?? 1]);
    }
    norm(x: string, xoff: number, ldx: number, rows: number, cols: number, w: F, out: string, ooff: number, ldo: number): void {
      this.p('decNorm', [x, this.w(w), out], [rows, cols, xoff, ldx, ooff, ldo, bits(this.e.c.eps)], rowGrid(rows));
    }
    copy(src: string, soff: number, lds: number, rows: number, cols: number, dst: string, doff: number, ldd: number): void {
      this.p('decCopy', [src, dst], [rows, cols, soff, lds, doff, ldd], eltGrid(rows * cols));
    }
    /** The device copy of a cache layer array, with the host rows [0, start) that changed since it was last synced uploaded. */
    cache(arr: Float32Array, start: number): string {
      const D = this.e.c.rkv + this.e.c.dr;
      let cc = caches.get(arr);
      const first = !cc;
      if (!cc) {
        cc = { key: `kvc:${nextId++}`, shadow: new Uint32Array(arr.length), host: new Uint32Array(arr.buffer, arr.byteOffset, arr.length) };
        caches.set(arr, cc);
        finalizer.register(arr, cc.key);
      }
      if (!this.j.roles[cc.key]) { this.j.roles[cc.key] = { off: 0, len: arr.length, up: false, down: false, zero: first, keep: true }; this.touched.push([arr, cc]); }
      const n = start * D, a = cc.host, s = cc.shadow;
      let lo = -1, hi = -1;
      for (let i = 0; i < n; i++) if (a[i] !== s[i]) { if (lo < 0) lo = i; hi = i; }
      if (lo >= 0) {
        const r0 = Math.floor(lo / D), r1 = Math.floor(hi / D) + 1, name = `de.cu${this.uploads++}`;
        this.j.input(name, arr.subarray(r0 * D, r1 * D), (r1 - r0) * D);
        this.copy(name, 0, D, r1 - r0, D, cc.key, r0 * D, D);
        s.set(a.subarray(r0 * D, r1 * D), r0 * D);
      }
      return cc.key;
    }
    /** Rows [start, start + rows) of a cache copy come back into its host array after the job. */
    download(arr: Float32Array, key: string, start: number, rows: number): void {
      const D = this.e.c.rkv + this.e.c.dr, name = `de.cd${this.downs.length}`;
      this.j.output(name, rows * D);
      this.copy(key, start * D, D, rows, D, name, 0, D);
      this.downs.push([name, arr, caches.get(arr)!, start * D]);
    }
    /** Runs the job; on success copies the written cache rows back, on failure forgets the touched copies. */
    run(): void {
      try { host.run(this.j); } catch (err) {
        for (const [arr, cc] of this.touched) { caches.delete(arr); finalizer.unregister(arr); host.free(cc.key); }
        throw err;
      }
      for (const [name, arr, cc, off] of this.downs) {
        const v = this.j.view(name);
        arr.set(v, off);
        cc.shadow.set(new Uint32Array(v.buffer, v.byteOffset, v.length), off);
      }
    }
  }

  function engineOf(h: object, what: string): Engine {
    if (!engines.has(h)) throw new TypeError(`webgpu ${what}: engine must come from this backend's DecodeEngineCreate`);
    return h as Engine;
  }
  interface Seg { start: number; rows: number; r0: number; caches: Float32Array[] }
  /** Checks tokens, segments and caches; returns the segments with their first row and cache arrays. */
  function segments(e: Engine, what: string, tokens: Int32Array, segs: Int32Array, cs: Float32Array[], nl: number, cos: Float32Array, sin: Float32Array): Seg[] {
    const c = e.c, D = c.rkv + c.dr, S = segs.length / 2, R = tokens.length, half = c.dr / 2;
    if (!Number.isInteger(S) || S < 1) throw new RangeError(`webgpu ${what}: segs must hold (start, rows) pairs`);
    if (cs.length !== S * nl) throw new RangeError(`webgpu ${what}: caches must be an Array of ${S * nl} (segments × layers), got ${cs.length}`);
    if (cos.length < R * half || sin.length < R * half) throw new RangeError(`webgpu ${what}: cos/sin need ${R * half} values`);
    for (let i = 0; i < R; i++) { const t = tokens[i]!; if (!(t >= 0 && t < c.V)) throw new RangeError(`webgpu ${what}: token id ${t} out of range [0, ${c.V})`); }
    const out: Seg[] = [];
    let r = 0;
    for (let s = 0; s < S; s++) {
      const start = segs[2 * s]!, rows = segs[2 * s + 1]!, arrs = cs.slice(s * nl, (s + 1) * nl);
      if (!(start >= 0 && rows >= 1)) throw new RangeError(`webgpu ${what}: bad segment (${start}, ${rows})`);
      for (const a of arrs) if (!(a instanceof Float32Array) || a.length < (start + rows) * D) throw new RangeError(`webgpu ${what}: KV cache full: ${start + rows} tokens > capacity ${Math.floor((a?.length ?? 0) / D)}`);
      out.push({ start, rows, r0: r, caches: arrs });
      r += rows;
    }
    if (r !== R) throw new RangeError(`webgpu ${what}: ${R} tokens for segments of ${r} rows`);
    return out;
  }

  /** Feed-forward of layer ly over n rows of 'de.x2', added into h rows [from, R). */
  function ffn(P: Pass, ly: Layer, n: number, from: number): void {
    const c = P.e.c, H = c.H, k = c.k, hoff = from * H;
    const swiglu = (m: Mlp, out: string, yoff: number, acc: boolean, expert?: number): void => {
      P.p('decGateUp', ['de.x2', P.w(m.gate), P.w(m.up), 'de.ids', P.scratch('de.g', n * m.I)], [n, m.I, H, 0, expert ?? 0, k, expert === undefined ? 0 : 1], [Math.ceil(m.I / 64), n, 1]);
      P.lin('de.g', 0, m.I, n, P.w(m.down), H, m.I, out, yoff, H, acc, expert === undefined ? {} : { expert });
    };
    if (!ly.moe) { swiglu(ly.mlp!, 'de.h', hoff, true); return; }
    const m = ly.moe, E = c.E;
    P.lin('de.x2', 0, H, n, P.w(m.router), E, H, P.scratch('de.sc', n * E), 0, E, false);
    P.p('decRoute', ['de.sc', m.bias ? P.w(m.bias) : 'de.dummy', P.scratch('de.pr', n * E), P.scratch('de.bh', n * E), P.scratch('de.bl', n * E), 'de.ids', P.scratch('de.gw', n * k)],
      [n, E, k, c.G, c.Gk, c.limited ? 1 : 0, c.sigmoid ? 1 : 0, c.normTopk ? 1 : 0, m.bias ? 1 : 0, bits(c.rsf)], rowGrid(n));
    // The MoE output: the shared expert (or zeros: a product over K = 0), then each expert's gate-weighted rows, ascending.
    const moe = P.scratch('de.moe', n * H);
    if (m.shared) swiglu(m.shared, moe, 0, false);
    else P.lin('de.x2', 0, H, n, P.w(m.router), H, 0, moe, 0, H, false);
    m.experts.forEach((x, e) => swiglu(x, moe, 0, true, e));
    P.p('decCombine', [moe, 'de.h'], [n * H, hoff], eltGrid(n * H));
  }

  /** One block on 'de.h' [R, H]; rows before `from` only write their latent cache rows. */
  function block(P: Pass, ly: Layer, R: number, segs: Seg[], li: number, from: number): void {
    const c = P.e.c, H = c.H, nh = c.nh, dn = c.dn, dr = c.dr, dv = c.dv, rkv = c.rkv, dq = dn + dr, D = rkv + dr, half = dr / 2, blk = (dn + dv) * rkv;
    P.norm('de.h', 0, H, R, H, ly.attnNorm, P.scratch('de.x', R * H), 0, H);
    P.lin('de.x', 0, H, R, P.w(ly.kvA), D, H, P.scratch('de.kv', R * D), 0, D, false);
    const keys: string[] = [];
    for (const s of segs) {
      const key = P.cache(s.caches[li]!, s.start);
      keys.push(key);
      P.norm('de.kv', s.r0 * D, D, s.rows, rkv, ly.kvANorm, key, s.start * D, D);
      P.p('decRope', ['de.kv', P.cos, P.sin, key], [s.rows, 1, half, s.r0 * D + rkv, D, 0, s.start * D + rkv, D, 0, s.r0], eltGrid(s.rows * half));
      P.download(s.caches[li]!, key, s.start, s.rows);
    }
    const Rq = R - from;
    if (Rq === 0) return;
    const q = P.scratch('de.q', Rq * nh * dq);
    if (ly.q) P.lin('de.x', from * H, H, Rq, P.w(ly.q), nh * dq, H, q, 0, nh * dq, false);
    else {
      P.lin('de.x', from * H, H, Rq, P.w(ly.qA!), c.rq, H, P.scratch('de.qa', Rq * c.rq), 0, c.rq, false);
      P.norm('de.qa', 0, c.rq, Rq, c.rq, ly.qANorm!, P.scratch('de.qa2', Rq * c.rq), 0, c.rq);
      P.lin('de.qa2', 0, c.rq, Rq, P.w(ly.qB!), nh * dq, c.rq, q, 0, nh * dq, false);
    }
    // [q_nope·W_UK | rope(q_pe)] per head (W_UK read in place from kv_b_proj: element (p, j) at h·blk + p·rkv + j).
    const kvB = P.w(ly.kvB), qatt = P.scratch('de.qatt', Rq * nh * D);
    P.lin(q, 0, nh * dq, Rq, kvB, rkv, dn, qatt, 0, nh * D, false, { batch: nh, xbs: dq, woff: 0, wbs: blk, wj: 1, wp: rkv, ybs: D });
    P.p('decRope', [q, P.cos, P.sin, qatt], [Rq, nh, half, dn, nh * dq, dq, rkv, nh * D, D, from], eltGrid(Rq * nh * half));
    const olat = P.scratch('de.olat', Rq * nh * rkv);
    segs.forEach((s, i) => {
      // Query rows of this segment that attend (all of them, or rows from.. of the single segment).
      const skip = from > 0 ? from : 0, nq = s.rows - skip, L0 = s.start + skip + 1, Lmax = L0 + nq - 1;
      P.p('decAttn', [qatt, keys[i]!, olat, P.scratch('de.ps', nq * nh * Lmax)], [nq, nh, D, rkv, L0, s.r0 - from + skip, Lmax, bits(c.scale)], rowGrid(nq * nh));
    });
    // o[h] = o_lat[h]·W_UV[h]ᵀ (W_UV[h] at h·blk + dn·rkv, row j of width rkv), then o_proj added into h.
    const o = P.scratch('de.o', Rq * nh * dv);
    P.lin(olat, 0, nh * rkv, Rq, kvB, dv, rkv, o, 0, nh * dv, false, { batch: nh, xbs: rkv, woff: dn * rkv, wbs: blk, wj: rkv, wp: 1, ybs: dv });
    P.lin(o, 0, nh * dv, Rq, P.w(ly.o), H, nh * dv, 'de.h', from * H, H, true);
    P.norm('de.h', from * H, H, Rq, H, ly.ffnNorm, P.scratch('de.x2', Rq * H), 0, H);
    ffn(P, ly, Rq, from);
  }

  /** Common job inputs: token ids and rope tables of R rows (names `tok`, P.cos, P.sin), and the placeholder binding. */
  function inputs(P: Pass, tok: string, tokens: Int32Array, cos: Float32Array, sin: Float32Array): void {
    const R = tokens.length, half = P.e.c.dr / 2;
    P.j.input(tok, tokens, R); P.j.input(P.cos, cos, R * half); P.j.input(P.sin, sin, R * half);
    P.scratch('de.dummy', 1);
  }
  /** Main model over R rows of token ids `tok`: final-norm hidden rows into `hid` [R, H], logits of rows from.. into `lg`. */
  function mainBody(P: Pass, R: number, sg: Seg[], from: number, tok: string, hid: string, lg: string): void {
    const e = P.e, c = e.c, H = c.H;
    P.scratch('de.h', R * H); P.scratch('de.ids', R * c.k);
    P.p('decEmbed', [P.w(e.embed), tok, 'de.h'], [R, H, 0, H], eltGrid(R * H));
    e.layers.forEach((ly, l) => block(P, ly, R, sg, l, 0));
    P.norm('de.h', 0, H, R, H, e.norm, hid, 0, H);
    if (R > from) P.lin(hid, from * H, H, R - from, P.w(e.head), c.V, H, lg, 0, c.V, false);
  }
  /** MTP depth m over R rows (hidden rows `hin`, next ids `tok`): rows from.. give hidden into `hid`, logits into `lg`. */
  function mtpBody(P: Pass, m: Mtp, R: number, sg: Seg[], from: number, tok: string, hin: string, hid: string, lg: string): void {
    const H = P.e.c.H, n = R - from;
    P.scratch('de.h', R * H); P.scratch('de.ids', R * P.e.c.k);
    // [RMSNorm(embed(t_{i+1})) | RMSNorm(h_i)] · eh_projᵀ (embedding first).
    P.p('decEmbed', [P.w(m.embed), tok, P.scratch('de.e', R * H)], [R, H, 0, H], eltGrid(R * H));
    P.scratch('de.cat', R * 2 * H);
    P.norm('de.e', 0, H, R, H, m.enorm, 'de.cat', 0, 2 * H);
    P.norm(hin, 0, H, R, H, m.hnorm, 'de.cat', H, 2 * H);
    P.lin('de.cat', 0, 2 * H, R, P.w(m.eh), H, 2 * H, 'de.h', 0, H, false);
    block(P, m.layer, R, sg, 0, from);
    P.copy('de.h', from * H, H, n, H, hid, 0, H);
    P.norm('de.h', from * H, H, n, H, m.headNorm, P.scratch('de.x', R * H), 0, H);
    P.lin('de.x', 0, H, n, P.w(m.head), P.e.c.V, H, lg, 0, P.e.c.V, false);
  }
  /** The MTP layer of `depth`, or a RangeError naming it. */
  function mtpOf(e: Engine, depth: number, what: string): Mtp {
    const m = e.mtp[depth];
    if (!m) throw new RangeError(`webgpu ${what}: the engine has ${e.mtp.length} MTP layers, depth ${depth} requested`);
    return m;
  }

  return {
    DecodeEngineCreate: create as Kernels['DecodeEngineCreate'],
    DecodeEngineMain(h, tokens, segs, cs, cos, sin, from, hidden, logits): void {
      const e = engineOf(h, 'DecodeEngineMain'), c = e.c, R = tokens.length, H = c.H;
      const sg = segments(e, 'DecodeEngineMain', tokens, segs, cs, c.L, cos, sin);
      if (!(from >= 0 && from <= R) || hidden.length < R * H || logits.length < (R - from) * c.V) throw new RangeError(`webgpu DecodeEngineMain: from ${from}, hidden ${hidden.length}, logits ${logits.length} for ${R} rows`);
      const P = new Pass(e);
      inputs(P, 'de.tok', tokens, cos, sin);
      P.j.output('de.hid', R * H);
      if (R > from) P.j.output('de.lg', (R - from) * c.V);
      mainBody(P, R, sg, from, 'de.tok', 'de.hid', 'de.lg');
      P.run();
      hidden.set(P.j.view('de.hid'));
      if (R > from) logits.set(P.j.view('de.lg'));
    },
    DecodeEngineMtp(h, depth, hin, next, segs, cs, cos, sin, from, hidden, logits): void {
      const e = engineOf(h, 'DecodeEngineMtp'), c = e.c, R = next.length, H = c.H, m = mtpOf(e, depth, 'DecodeEngineMtp');
      const sg = segments(e, 'DecodeEngineMtp', next, segs, cs, 1, cos, sin);
      const n = R - from;
      if (!(from >= 0 && n >= 1) || (from > 0 && sg.length !== 1) || hin.length < R * H || hidden.length < n * H || logits.length < n * c.V) {
        throw new RangeError(`webgpu DecodeEngineMtp: from ${from} (a single segment when > 0), hiddenIn ${hin.length}, hidden ${hidden.length}, logits ${logits.length} for ${R} rows`);
      }
      const P = new Pass(e);
      inputs(P, 'de.tok', next, cos, sin);
      P.j.input('de.hin', hin, R * H);
      P.j.output('de.hid', n * H); P.j.output('de.lg', n * c.V);
      mtpBody(P, m, R, sg, from, 'de.tok', 'de.hin', 'de.hid', 'de.lg');
      P.run();
      hidden.set(P.j.view('de.hid'));
      logits.set(P.j.view('de.lg'));
    },
    DecodeEngineSpec(h, dh, hin, next, mtpSegs, mtpCaches, mcos, msin, token, segs, caches, cos, sin, vocab, hidden, logits, mtpLogits, picks): void {
      const e = engineOf(h, 'DecodeEngineSpec'), d = engineOf(dh, 'DecodeEngineSpec'), c = e.c, H = c.H, V = c.V, M = next.length;
      const m = mtpOf(d, 0, 'DecodeEngineSpec');
      if (d.c.H !== H || d.c.V !== V) throw new RangeError('webgpu DecodeEngineSpec: the draft engine is of another model shape');
      const msg = segments(d, 'DecodeEngineSpec', next, mtpSegs, mtpCaches, 1, mcos, msin);
      const two = Int32Array.of(token, 0);
      const sg = segments(e, 'DecodeEngineSpec', two, segs, caches, c.L, cos, sin);
      if (msg.length !== 1 || sg.length !== 1 || sg[0]!.rows !== 2 || !(vocab >= 1 && vocab <= V) || hin.length < M * H || hidden.length < 2 * H || logits.length < 2 * V || mtpLogits.length < V || picks.length < 3) {
        throw new RangeError(`webgpu DecodeEngineSpec: needs one MTP segment, one main segment of 2 rows, vocab in [1, ${V}] (got ${vocab}), hiddenIn ${M * H}, hidden ${2 * H}, logits ${2 * V}, mtpLogits ${V}, picks 3`);
      }
      // The draft: MTP depth 0 over the M rows, only the last drafting; its argmax becomes the second verify token on the device.
      const P = new Pass(d);
      P.cos = 'de.mcos'; P.sin = 'de.msin';
      inputs(P, 'de.mtok', next, mcos, msin);
      P.j.input('de.hin', hin, M * H);
      P.j.output('de.mlg', V); P.j.output('de.picks', 3);
      mtpBody(P, m, M, msg, M - 1, 'de.mtok', 'de.hin', P.scratch('de.mhid', H), 'de.mlg');
      P.j.input('de.tok2', two, 2);
      P.p('decArgmax', ['de.mlg', 'de.picks', 'de.tok2'], [vocab, 0, 0, 1], [1, 1, 1]);
      // The verify: the main model over [token, draft], then the argmax of each row.
      P.e = e; P.cos = 'de.cos'; P.sin = 'de.sin';
      P.j.input('de.cos', cos, 2 * (c.dr / 2)); P.j.input('de.sin', sin, 2 * (c.dr / 2));
      P.j.output('de.hid', 2 * H); P.j.output('de.lg', 2 * V);
      mainBody(P, 2, sg, 0, 'de.tok2', 'de.hid', 'de.lg');
      P.p('decArgmax', ['de.lg', 'de.picks', 'de.tok2'], [vocab, 0, 1, 0], [1, 1, 1]);
      P.p('decArgmax', ['de.lg', 'de.picks', 'de.tok2'], [vocab, V, 2, 0], [1, 1, 1]);
      P.run();
      hidden.set(P.j.view('de.hid'));
      logits.set(P.j.view('de.lg'));
      mtpLogits.set(P.j.view('de.mlg'));
      const pk = P.j.view('de.picks');
      picks.set(new Int32Array(pk.buffer, pk.byteOffset, 3));
    },
  };
}
