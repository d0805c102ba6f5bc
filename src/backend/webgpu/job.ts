/**
 * One GPU job of the webgpu backend, as the engine thread describes it: named *roles* (device
 * buffers) laid out in the shared arena, and the passes that bind them.
 *
 * Contract:
 * - `input` roles are copied into the arena and uploaded; `inout` ones also come back; `output`
 *   ones come back (when `down`); `scratch` ones live on the device only and take no arena space.
 * - Arena offsets are in 4-byte words, 64-word aligned; `words` is the arena size the job needs.
 * - Byte operands (FP8 codes) travel packed four per word, byte i in bits 8·(i mod 4) of word
 *   ⌊i/4⌋ (little-endian, as WGSL reads them); the padding bytes of the last word are zero.
 * - `view(name)` is the role's data in the arena after the job ran, valid until the next job.
 * - `resident` operands bind a persistent device buffer (named by its key, kept by the GPU thread
 *   across jobs) under a job-local name; they take arena space only when uploaded or copied back.
 * - `read` into a declared resident array (or a view into one) announces the write (residency.ts
 *   hostWrote), so no device copy of it survives a kernel writing it on the host side.
 */
import { hostWrote, residentParent } from '../residency.js';

/** A device buffer of a job (what thread-source.ts receives). */
export interface Role { off: number; len: number; up: boolean; down: boolean; zero: boolean; keep?: boolean }
/** One compute pass: pipeline, roles in binding order, uniform words, workgroup grid, and per binding an optional [byte offset, byte size] window. */
export interface Pass { pipe: string; binds: string[]; params: number[]; groups: [number, number, number]; win?: Array<[number, number] | null> }

type Operand = Float32Array | Int32Array | Uint8Array;

/** Builder of one job (see the file comment). */
export class Job {
  readonly roles: Record<string, Role> = {};
  readonly passes: Pass[] = [];
  words = 0;
  upWords = 0;
  downWords = 0;
  private readonly sources: Array<[number, Operand, number]> = [];
  /** Job-local names bound to resident device buffers (name → key). */
  private readonly alias: Record<string, string> = {};
  /** Byte windows of aliased names that bind part of their buffer (views). */
  private readonly windows: Record<string, [number, number]> = {};
  /** Run after the job succeeded (resident copies record the version they now hold). */
  readonly done: Array<() => void> = [];
  private arena: SharedArrayBuffer | null = null;

  private place(name: string, len: number, up: boolean, down: boolean): Role {
    const r: Role = { off: this.words, len, up, down, zero: false };
    this.words += Math.ceil(len / 64) * 64;
    if (up) this.upWords += len;
    if (down) this.downWords += len;
    this.roles[name] = r;
    return r;
  }

  /** An operand the kernel reads (its first len elements). */
  input(name: string, arr: Operand, len: number): void {
    const r = this.place(name, len, true, false);
    this.sources.push([r.off, arr, len]);
  }
  /** A byte operand (its first len bytes), packed four per word. */
  inputBytes(name: string, arr: Uint8Array, len: number): void {
    const r = this.place(name, Math.ceil(len / 4), true, false);
    this.sources.push([r.off, arr, len]);
  }
  /** An operand the kernel reads and writes (e.g. accumulated into). */
  inout(name: string, arr: Operand, len: number): void {
    const r = this.place(name, len, true, true);
    this.sources.push([r.off, arr, len]);
  }
  /** An output the kernel writes completely; copied back unless down is false. */
  output(name: string, len: number, down = true): void { this.place(name, len, false, down); }
  /** A device-only buffer (intermediates between passes). */
  scratch(name: string, len: number): void { this.roles[name] = { off: 0, len, up: false, down: false, zero: false }; }

  /**
   * A resident operand `arr` bound as `name`: the persistent device buffer `key` holding all of arr,
   * uploaded when `upload`, copied back into the arena when `down`; `window` [byte offset, byte size]
   * binds only that part (a view). A key already in the job is reused.
   */
  resident(name: string, key: string, arr: Float32Array, upload: boolean, down: boolean, window?: [number, number]): void {
    this.alias[name] = key;
    if (window) this.windows[name] = window;
    if (this.roles[key]) return;
    if (upload || down) {
      const r = this.place(key, arr.length, upload, down);
      r.keep = true;
      if (upload) this.sources.push([r.off, arr, arr.length]);
    } else {
      this.roles[key] = { off: 0, len: arr.length, up: false, down: false, zero: false, keep: true };
    }
  }

  /** Adds a pass over the named roles (binding order) with its uniform words and grid. */
  pass(pipe: string, binds: string[], params: number[], groups: [number, number, number]): void {
    const pass: Pass = { pipe, binds: binds.map((b) => this.alias[b] ?? b), params, groups };
    if (binds.some((b) => this.windows[b])) pass.win = binds.map((b) => this.windows[b] ?? null);
    this.passes.push(pass);
  }

  /** Copies every input into the arena (called once the arena is big enough). */
  write(arena: SharedArrayBuffer): void {
    this.arena = arena;
    const f = new Float32Array(arena), i = new Int32Array(arena), u8 = new Uint8Array(arena);
    for (const [off, arr, len] of this.sources) {
      const src = len === arr.length ? arr : arr.subarray(0, len);
      if (src instanceof Uint8Array) { u8.set(src, off * 4); u8.fill(0, off * 4 + len, off * 4 + Math.ceil(len / 4) * 4); }
      else if (src instanceof Int32Array) i.set(src, off); else f.set(src, off);
    }
  }

  /** The role's data in the arena after the job ran. */
  view(name: string): Float32Array {
    const r = this.roles[this.alias[name] ?? name];
    if (!r || !this.arena) throw new Error(`webgpu job: no role ${name} in the arena`);
    return new Float32Array(this.arena, r.off * 4, r.len);
  }
  /** Copies the role's data into dst (its first len elements). */
  read(name: string, dst: Float32Array): void {
    dst.set(this.view(name));
    hostWrote(dst);
    const pv = residentParent(dst);
    if (pv) hostWrote(pv.parent);
  }
  /** Copies the first n bytes of a packed byte role into dst. */
  readBytes(name: string, dst: Uint8Array, n: number): void {
    const v = this.view(name);
    if (n > v.length * 4) throw new Error(`webgpu job: role ${name} holds ${v.length * 4} bytes, ${n} asked`);
    dst.set(new Uint8Array(v.buffer, v.byteOffset, n));
  }
}
