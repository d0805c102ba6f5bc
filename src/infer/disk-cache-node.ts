/**
 * Disk context cache: prompt prefixes persisted in fixed units of 64 tokens, so a server restart
 * (or another process on the same model) reuses them. Implements `PrefixStore`.
 *
 * Contract:
 * - Unit i of a prompt (tokens [64i, 64i+64)) lives in `<dir>/<key_i>.kv`, where key_i chains
 *   SHA-256 over (model id, row width, unit) and every token id up to the unit's end, so a file is
 *   only ever found for exactly the same model and the same full prefix.
 * - File = 88-byte header (magic `FRKV0001`, row width, unit, unit index, payload bytes, the key,
 *   SHA-256 of the payload) + float32 rows. A file that is truncated, corrupt or for another key is
 *   a miss: logged, deleted, never a crash and never used.
 * - Writes are atomic (temp file + rename). Total size is bounded by `maxBytes`: least recently
 *   used files (mtime, refreshed on every hit) are deleted first.
 * - Only regular files are ever opened: entries that are FIFOs, sockets, directories or symlinks
 *   (dangling or not) are skipped when the folder is indexed, and reads open with O_NONBLOCK and
 *   O_NOFOLLOW and check fstat before reading, so nothing placed in the folder can block the
 *   event loop or redirect a read; temp files are created with O_EXCL.
 * Synchronous on purpose: the engine is synchronous, and a write has landed when save() returns
 * (regular files of bounded size only, so a call never waits on anything but the disk).
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, readSync, renameSync, unlinkSync, utimesSync, writeSync, fstatSync } from 'node:fs';
import path from 'node:path';
import type { PrefixStore } from './generate.js';

const MAGIC = Buffer.from('FRKV0001', 'ascii');
const HEADER = 88;
/** Open flags: never block on a FIFO/device, never follow a symlink (0 where the OS lacks them). */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);
const WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0);

export interface DiskCacheOptions {
  dir: string;
  /** Identifies the model's weights (e.g. a hash of its files): other models never share files. */
  modelId: string;
  /** Floats per token row. */
  rowWidth: number;
  /** Most bytes kept on disk (default 1 GiB). */
  maxBytes?: number;
  /** Tokens per file (default 64). */
  unit?: number;
  /** Where misses due to bad files are reported (default console.warn). */
  log?: (msg: string) => void;
}

/** Counters for monitoring and tests. */
export interface DiskCacheStats { files: number; bytes: number; hits: number; hitTokens: number; writes: number; corrupt: number; evictions: number }

export class DiskCache implements PrefixStore {
  readonly dir: string;
  readonly unit: number;
  private readonly maxBytes: number;
  private readonly seed: Buffer;
  private readonly log: (msg: string) => void;
  private readonly index = new Map<string, { bytes: number; used: number }>();
  private total = 0;
  private counters = { hits: 0, hitTokens: 0, writes: 0, corrupt: 0, evictions: 0 };

  constructor(private readonly opts: DiskCacheOptions) {
    this.dir = opts.dir;
    this.unit = opts.unit ?? 64;
    this.maxBytes = opts.maxBytes ?? 2 ** 30;
    this.log = opts.log ?? ((m) => console.warn(m));
    this.seed = createHash('sha256').update(`frugal-kv/1\0${opts.modelId}\0${opts.rowWidth}\0${this.unit}`).digest();
    let names: string[];
    try {
      mkdirSync(this.dir, { recursive: true });
      names = readdirSync(this.dir);
    } catch (e) {
      throw new Error(`disk cache: cannot use ${this.dir} as a cache folder: ${(e as Error).message}`);
    }
    for (const f of names) {
      const p = path.join(this.dir, f);
      if (f.includes('.tmp-')) { try { unlinkSync(p); } catch { /* another process's temp file */ } continue; }
      if (!/^[0-9a-f]{64}\.kv$/.test(f)) continue;
      let st;
      try { st = lstatSync(p); } catch { continue; /* removed meanwhile */ }
      if (!st.isFile()) { this.log(`disk cache: ${p} is not a regular file; ignored`); continue; }
      this.index.set(f.slice(0, 64), { bytes: st.size, used: st.mtimeMs });
      this.total += st.size;
    }
    this.evict();
  }

  /** Keys of units 0..n-1 of tokens. */
  private keys(tokens: readonly number[], n: number): Buffer[] {
    const out: Buffer[] = [];
    let k = this.seed;
    for (let i = 0; i < n; i++) {
      const ids = Int32Array.from(tokens.slice(i * this.unit, (i + 1) * this.unit));
      k = createHash('sha256').update(k).update(Buffer.from(ids.buffer)).digest();
      out.push(k);
    }
    return out;
  }

  private file(key: string): string { return path.join(this.dir, `${key}.kv`); }

  lookup(tokens: readonly number[], maxLen: number, have: number): { length: number; rows: Float32Array } | null {
    const W = this.opts.rowWidth, U = this.unit;
    const units = Math.floor(Math.min(maxLen, tokens.length) / U);
    if (units * U <= have) return null;
    const keys = this.keys(tokens, units);
    const first = Math.floor(have / U);
    const parts: Float32Array[] = [];
    for (let i = first; i < units; i++) {
      const key = keys[i]!.toString('hex');
      if (!this.index.has(key)) break;
      const rows = this.read(key, keys[i]!, i);
      if (!rows) break;
      parts.push(rows);
    }
    const length = (first + parts.length) * U;
    if (length <= have) return null;
    const rows = new Float32Array((length - have) * W);
    const skip = (have - first * U) * W;
    let off = 0;
    parts.forEach((p, j) => { const s = j === 0 ? p.subarray(skip) : p; rows.set(s, off); off += s.length; });
    this.counters.hits++;
    this.counters.hitTokens += length - have;
    return { length, rows };
  }

  /** Reads and checks one unit file; a bad file is logged, removed and reported as null. */
  private read(key: string, keyBytes: Buffer, unitIndex: number): Float32Array | null {
    const W = this.opts.rowWidth, U = this.unit;
    const file = this.file(key);
    const payload = U * W * 4;
    let fd = -1;
    try {
      fd = openSync(file, READ_FLAGS);
      const st = fstatSync(fd);
      if (!st.isFile()) { this.drop(key, `disk cache: ${file} is not a regular file; treated as a miss and removed`); return null; }
      const size = st.size;
      const buf = Buffer.alloc(HEADER + payload);
      const got = size === buf.length ? readFully(fd, buf) : -1;
      const bad = got !== buf.length ? `size ${size}, expected ${buf.length} (truncated?)`
        : !buf.subarray(0, 8).equals(MAGIC) ? 'bad magic'
        : buf.readUInt32LE(8) !== W || buf.readUInt32LE(12) !== U || buf.readUInt32LE(16) !== unitIndex || buf.readUInt32LE(20) !== payload ? 'header does not match'
        : !buf.subarray(24, 56).equals(keyBytes) ? 'key mismatch'
        : !createHash('sha256').update(buf.subarray(HEADER)).digest().equals(buf.subarray(56, 88)) ? 'checksum mismatch' : null;
      if (bad) { this.drop(key, `disk cache: ${file}: ${bad}; treated as a miss and removed`); return null; }
      const rows = new Float32Array(U * W);
      new Uint8Array(rows.buffer).set(buf.subarray(HEADER));
      const t = new Date();
      try { utimesSync(file, t, t); } catch { /* best effort */ }
      this.index.get(key)!.used = t.getTime();
      return rows;
    } catch (e) {
      this.drop(key, `disk cache: ${file}: ${(e as Error).message}; treated as a miss`);
      return null;
    } finally {
      if (fd >= 0) closeSync(fd);
    }
  }

  private drop(key: string, msg: string): void {
    this.counters.corrupt++;
    this.log(msg);
    const e = this.index.get(key);
    if (e) { this.total -= e.bytes; this.index.delete(key); }
    try { unlinkSync(this.file(key)); } catch { /* already gone */ }
  }

  save(tokens: readonly number[], rowsAt: (from: number, to: number) => Float32Array): void {
    const W = this.opts.rowWidth, U = this.unit;
    const units = Math.floor(tokens.length / U);
    if (units === 0) return;
    const keys = this.keys(tokens, units);
    const t = Date.now();
    for (let i = 0; i < units; i++) {
      const key = keys[i]!.toString('hex');
      const known = this.index.get(key);
      if (known) { known.used = t; continue; }
      const rows = rowsAt(i * U, (i + 1) * U);
      const body = Buffer.from(rows.buffer, rows.byteOffset, rows.byteLength);
      const head = Buffer.alloc(HEADER);
      MAGIC.copy(head, 0);
      head.writeUInt32LE(W, 8); head.writeUInt32LE(U, 12); head.writeUInt32LE(i, 16); head.writeUInt32LE(body.length, 20);
      keys[i]!.copy(head, 24);
      createHash('sha256').update(body).digest().copy(head, 56);
      const file = this.file(key), tmp = `${file}.tmp-${process.pid}`;
      try {
        try { unlinkSync(tmp); } catch { /* not there */ }
        const fd = openSync(tmp, WRITE_FLAGS, 0o644);
        try { writeFully(fd, head); writeFully(fd, body); } finally { closeSync(fd); }
        renameSync(tmp, file);
      } catch (e) {
        try { unlinkSync(tmp); } catch { /* not there */ }
        this.log(`disk cache: cannot write ${file}: ${(e as Error).message}`);
        return;
      }
      this.index.set(key, { bytes: HEADER + body.length, used: t });
      this.total += HEADER + body.length;
      this.counters.writes++;
    }
    this.evict();
  }

  /** Deletes least recently used files until the total is within maxBytes. */
  private evict(): void {
    if (this.total <= this.maxBytes) return;
    const byAge = [...this.index.entries()].sort((a, b) => a[1].used - b[1].used);
    for (const [key, e] of byAge) {
      if (this.total <= this.maxBytes) break;
      try { unlinkSync(this.file(key)); } catch { /* gone */ }
      this.index.delete(key);
      this.total -= e.bytes;
      this.counters.evictions++;
    }
  }

  stats(): DiskCacheStats {
    return { files: this.index.size, bytes: this.total, ...this.counters };
  }
}

/** Reads buf.length bytes from offset 0 (short reads retried); returns the bytes read. */
function readFully(fd: number, buf: Buffer): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

function writeFully(fd: number, buf: Buffer): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
}
