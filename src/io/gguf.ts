/**
 * GGUF container reader and writer (the llama.cpp file format, v3; `ggml/include/gguf.h`) —
 * browser-safe, treats every file as hostile input. Layout (little-endian):
 * `"GGUF" | u32 version | i64 n_tensors | i64 n_kv | n_kv × {str key | u32 type | value} |
 * n_tensors × {str name | u32 n_dims | i64 ne[n_dims] | i32 ggml_type | u64 offset} | padding to
 * general.alignment | data`, strings as u64 length + UTF-8.
 *
 * Contract:
 * - `GgufReader.open(src)` reads only the header (growing its read window as needed, never past
 *   `MAX_HEADER_BYTES`), and checks every count, length, offset and size against the file size
 *   and fixed limits before allocating anything from it: versions 2–3, at most `MAX_KV` keys and
 *   `MAX_TENSORS` tensors, strings valid UTF-8 and bounded, arrays not nested, 1–4 dims, names
 *   under 64 bytes, no duplicate keys or tensor names, a power-of-two alignment, supported tensor
 *   types (F32, F16, BF16, Q8_0), and tensor offsets equal to the running sum of the aligned
 *   sizes before them (the rule ggml enforces), all inside the file.
 * - Every failure is a `GgufError` whose message starts with `gguf:` and names the key, tensor or
 *   field at fault.
 * - `ggufHeaderBytes` writes the same layout (the writer: metadata in the order given, tensor
 *   offsets aligned); `GgufOutTensor.bytes()` supplies each tensor's data lazily.
 */
import type { ByteSource } from './safetensors.js';
import { GGML_TYPE, Q8_0_BLOCK, describeGgmlType, ggmlTypeName, rowBytes, decodeTensor, type GgmlTypeId } from './gguf-quant.js';

/** Every GGUF failure; the message starts with `gguf:`. */
export class GgufError extends Error {
  override name = 'GgufError';
}
const fail = (msg: string): never => { throw new GgufError(`gguf: ${msg}`); };

/** GGUF metadata value types (gguf.h `gguf_type`). */
export const GGUF_TYPE = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const TYPE_NAME = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];

/** Largest header (metadata + tensor infos) read: DeepSeek-V3's is ~10 MB. */
export const MAX_HEADER_BYTES = 256 * 2 ** 20;
export const MAX_KV = 1 << 16;
export const MAX_TENSORS = 1 << 20;
/** Longest string value (a chat template can be long) and longest key. */
export const MAX_STRING_BYTES = 16 * 2 ** 20;
export const MAX_KEY_BYTES = 1 << 16;
/** ggml's GGML_MAX_NAME: tensor names are shorter than this. */
export const MAX_NAME_BYTES = 64;

/** A metadata value: numbers (u64/i64 beyond 2^53 as bigint), booleans, strings, or a flat array. */
export type GgufScalar = number | bigint | boolean | string;
export interface GgufKV { type: number; itemType?: number; value: GgufScalar | GgufScalar[] }

/** One tensor's header entry; `offset` is absolute in the file, `nbytes` its data size. */
export interface GgufTensorInfo { name: string; ne: number[]; type: GgmlTypeId; offset: number; nbytes: number; count: number }

/** Thrown by the parser when the window is too short; the reader retries with a larger one. */
class NeedMore extends Error { constructor(readonly bytes: number) { super('need more header bytes'); } }

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bounded little-endian reads over the header window. */
class Cursor {
  pos = 0;
  private readonly dv: DataView;
  constructor(private readonly buf: Uint8Array, private readonly fileSize: number) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.fileSize) fail(`${what} at byte ${this.pos} runs past the end of the ${this.fileSize}-byte file (truncated file?)`);
    if (this.pos + n > this.buf.length) throw new NeedMore(this.pos + n);
  }
  u32(what: string): number { this.need(4, what); const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(what: string): number { this.need(4, what); const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; }
  /** A 64-bit count/offset: must be a non-negative safe integer. */
  u64(what: string): number {
    this.need(8, what);
    const lo = this.dv.getUint32(this.pos, true), hi = this.dv.getUint32(this.pos + 4, true);
    this.pos += 8;
    if (hi >= 0x200000) fail(`${what} is ${hi >= 0x80000000 ? 'negative' : 'larger than 2^53'} (corrupt file?)`);
    return hi * 2 ** 32 + lo;
  }
  str(what: string, max: number): string {
    const n = this.u64(`${what} length`);
    if (n > max) fail(`${what} is ${n} bytes, over the ${max}-byte limit`);
    this.need(n, what);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try { return utf8.decode(b); } catch { return fail(`${what} is not valid UTF-8`); }
  }
  scalar(type: number, what: string): GgufScalar {
    const size = SCALAR_SIZE[type];
    if (size === undefined) return fail(`${what} has unknown value type ${type}`);
    this.need(size, what);
    const p = this.pos, dv = this.dv;
    this.pos += size;
    switch (type) {
      case 0: return dv.getUint8(p);
      case 1: return dv.getInt8(p);
      case 2: return dv.getUint16(p, true);
      case 3: return dv.getInt16(p, true);
      case 4: return dv.getUint32(p, true);
      case 5: return dv.getInt32(p, true);
      case 6: return dv.getFloat32(p, true);
      case 7: {
        const b = dv.getUint8(p);
        if (b > 1) fail(`${what} is a bool stored as ${b} (must be 0 or 1)`);
        return b === 1;
      }
      case 10: { const v = dv.getBigUint64(p, true); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      case 11: { const v = dv.getBigInt64(p, true); return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
      default: return dv.getFloat64(p, true);
    }
  }
}

/** Typed access to the metadata; getters throw a GgufError naming the key and what was expected. */
export class GgufMetadata {
  constructor(readonly entries: Map<string, GgufKV>) {}
  has(key: string): boolean { return this.entries.has(key); }
  private get(key: string, required: boolean): GgufKV | undefined {
    const kv = this.entries.get(key);
    if (!kv && required) fail(`metadata key ${key} is missing`);
    return kv;
  }
  /** A non-negative integer of any integer type, at most `max`. */
  uint(key: string, dflt?: number, max = Number.MAX_SAFE_INTEGER): number {
    const kv = this.get(key, dflt === undefined);
    if (!kv) return dflt!;
    const v = kv.value;
    if (kv.type === GGUF_TYPE.ARRAY || kv.type === GGUF_TYPE.BOOL || kv.type === GGUF_TYPE.STRING || kv.type === GGUF_TYPE.F32 || kv.type === GGUF_TYPE.F64 ||
        typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      return fail(`metadata key ${key} must be a non-negative integer, got ${describe(kv)}`);
    }
    if (v > max) fail(`metadata key ${key} is ${v}, over the limit of ${max}`);
    return v;
  }
  /** A finite float (f32/f64) or integer. */
  float(key: string, dflt?: number): number {
    const kv = this.get(key, dflt === undefined);
    if (!kv) return dflt!;
    if (kv.type === GGUF_TYPE.ARRAY || kv.type === GGUF_TYPE.BOOL || kv.type === GGUF_TYPE.STRING || typeof kv.value !== 'number' || !Number.isFinite(kv.value)) {
      return fail(`metadata key ${key} must be a finite number, got ${describe(kv)}`);
    }
    return kv.value;
  }
  bool(key: string, dflt?: boolean): boolean {
    const kv = this.get(key, dflt === undefined);
    if (!kv) return dflt!;
    if (kv.type !== GGUF_TYPE.BOOL) return fail(`metadata key ${key} must be a bool, got ${describe(kv)}`);
    return kv.value as boolean;
  }
  str(key: string, dflt?: string): string {
    const kv = this.get(key, dflt === undefined);
    if (!kv) return dflt!;
    if (kv.type !== GGUF_TYPE.STRING) return fail(`metadata key ${key} must be a string, got ${describe(kv)}`);
    return kv.value as string;
  }
  /** An array of strings (or null when absent and `optional`). */
  strArray(key: string, optional = false): string[] | null {
    const kv = this.get(key, !optional);
    if (!kv) return null;
    if (kv.type !== GGUF_TYPE.ARRAY || kv.itemType !== GGUF_TYPE.STRING) return fail(`metadata key ${key} must be an array of strings, got ${describe(kv)}`);
    return kv.value as string[];
  }
  /** An array of integers (any integer item type), or null when absent. */
  intArray(key: string): number[] | null {
    const kv = this.entries.get(key);
    if (!kv) return null;
    const ok = kv.type === GGUF_TYPE.ARRAY && kv.itemType !== undefined && [0, 1, 2, 3, 4, 5, 10, 11].includes(kv.itemType);
    if (!ok) return fail(`metadata key ${key} must be an array of integers, got ${describe(kv)}`);
    const v = kv.value as GgufScalar[];
    for (const x of v) if (typeof x !== 'number') fail(`metadata key ${key} holds a value outside ±2^53`);
    return v as number[];
  }
}

function describe(kv: GgufKV): string {
  if (kv.type === GGUF_TYPE.ARRAY) return `an array of ${TYPE_NAME[kv.itemType ?? 99] ?? '?'} (${(kv.value as unknown[]).length} items)`;
  const v = typeof kv.value === 'string' ? JSON.stringify(kv.value.slice(0, 40)) : String(kv.value);
  return `${TYPE_NAME[kv.type] ?? 'type ' + kv.type} ${v}`;
}

/** The parsed header of a GGUF file. */
export interface GgufHeader {
  version: number;
  metadata: GgufMetadata;
  /** Tensors in file order. */
  tensors: GgufTensorInfo[];
  alignment: number;
  dataStart: number;
}

/** Parses a header from the first bytes of a file (throws NeedMore when `buf` is too short). */
function parseHeader(buf: Uint8Array, fileSize: number): GgufHeader {
  const c = new Cursor(buf, fileSize);
  c.need(4, 'magic');
  if (buf[0] !== 0x47 || buf[1] !== 0x47 || buf[2] !== 0x55 || buf[3] !== 0x46) fail('not a GGUF file (the first 4 bytes are not "GGUF")');
  c.pos = 4;
  const version = c.u32('version');
  if (version === 1) fail('GGUF version 1 is not supported (re-convert the model with a current llama.cpp)');
  if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version}${version > 0xffff ? ' (a big-endian file?)' : ''}; Frugal reads versions 2 and 3`);
  const nTensors = c.u64('tensor count'), nKv = c.u64('metadata count');
  if (nTensors > MAX_TENSORS) fail(`tensor count ${nTensors} exceeds the limit of ${MAX_TENSORS}`);
  if (nKv > MAX_KV) fail(`metadata count ${nKv} exceeds the limit of ${MAX_KV}`);
  // Each key needs ≥ 13 bytes and each tensor info ≥ 29: cheap early check on the counts.
  if (24 + nKv * 13 + nTensors * 29 > fileSize) fail(`${nKv} keys and ${nTensors} tensors cannot fit in a ${fileSize}-byte file (truncated or corrupt)`);
  const entries = new Map<string, GgufKV>();
  for (let i = 0; i < nKv; i++) {
    const key = c.str(`key #${i}`, MAX_KEY_BYTES);
    if (key === '') fail(`key #${i} is empty`);
    if (entries.has(key)) fail(`duplicate metadata key ${key}`);
    const type = c.u32(`type of ${key}`);
    if (type === GGUF_TYPE.ARRAY) {
      const itemType = c.u32(`item type of ${key}`);
      if (itemType === GGUF_TYPE.ARRAY) fail(`metadata key ${key} is an array of arrays (not supported)`);
      const n = c.u64(`length of ${key}`);
      const minItem = itemType === GGUF_TYPE.STRING ? 8 : SCALAR_SIZE[itemType];
      if (minItem === undefined) fail(`metadata key ${key} has unknown item type ${itemType}`);
      if (n * minItem! > fileSize - c.pos) fail(`metadata key ${key}: ${n} items cannot fit in the rest of the file`);
      const items: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) items[j] = itemType === GGUF_TYPE.STRING ? c.str(`${key}[${j}]`, MAX_STRING_BYTES) : c.scalar(itemType, `${key}[${j}]`);
      entries.set(key, { type, itemType, value: items });
    } else if (type === GGUF_TYPE.STRING) {
      entries.set(key, { type, value: c.str(`value of ${key}`, MAX_STRING_BYTES) });
    } else {
      entries.set(key, { type, value: c.scalar(type, `value of ${key}`) });
    }
  }
  const metadata = new GgufMetadata(entries);
  let alignment = 32;
  if (metadata.has('general.alignment')) {
    const kv = entries.get('general.alignment')!;
    if (kv.type !== GGUF_TYPE.U32) fail(`general.alignment must be a u32, got ${describe(kv)}`);
    alignment = kv.value as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0 || alignment > 1 << 20) fail(`general.alignment ${alignment} must be a power of two up to 2^20`);
  }
  const raw: { name: string; ne: number[]; type: GgmlTypeId; rel: number; nbytes: number; count: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.str(`name of tensor #${i}`, MAX_KEY_BYTES);
    if (utf8Length(name) >= MAX_NAME_BYTES) fail(`tensor name ${JSON.stringify(name.slice(0, 80))} is ${utf8Length(name)} bytes (ggml allows under ${MAX_NAME_BYTES})`);
    if (names.has(name)) fail(`duplicate tensor name ${name}`);
    names.add(name);
    const nDims = c.u32(`dimension count of ${name}`);
    if (nDims < 1 || nDims > 4) fail(`tensor ${name} has ${nDims} dimensions (1 to 4 allowed)`);
    const ne: number[] = [];
    let count = 1;
    for (let d = 0; d < nDims; d++) {
      const n = c.u64(`ne[${d}] of ${name}`);
      ne.push(n);
      count *= n;
      if (count > fileSize) fail(`tensor ${name} with shape [${ne.join(', ')}…] is larger than the ${fileSize}-byte file`);
    }
    const typeId = c.i32(`type of ${name}`);
    const tn = ggmlTypeName(typeId);
    if (tn === null) fail(`tensor ${name} has type ${describeGgmlType(typeId)}, which Frugal does not read (supported: F32, F16, BF16, Q8_0)`);
    const type = GGML_TYPE[tn!];
    if (type === GGML_TYPE.Q8_0 && ne[0]! % Q8_0_BLOCK !== 0) fail(`tensor ${name}: Q8_0 needs ne[0] (${ne[0]}) to be a multiple of ${Q8_0_BLOCK}`);
    const nbytes = ne[0] === 0 ? 0 : rowBytes(type, ne[0]!) * (count / ne[0]!);
    const rel = c.u64(`offset of ${name}`);
    raw.push({ name, ne, type, rel, nbytes, count });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  let expect = 0;
  const tensors: GgufTensorInfo[] = [];
  for (const t of raw) {
    if (t.rel !== expect) fail(`tensor ${t.name} starts at data offset ${t.rel}, expected ${expect} (tensors must be packed in order at ${alignment}-byte alignment)`);
    if (dataStart + t.rel + t.nbytes > fileSize) fail(`tensor ${t.name} (${t.nbytes} bytes at ${dataStart + t.rel}) runs past the end of the ${fileSize}-byte file (truncated file?)`);
    tensors.push({ name: t.name, ne: t.ne, type: t.type, offset: dataStart + t.rel, nbytes: t.nbytes, count: t.count });
    expect = Math.ceil((t.rel + t.nbytes) / alignment) * alignment;
  }
  return { version, metadata, tensors, alignment, dataStart };
}

/** UTF-8 byte length without Buffer (browser-safe). */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1; else if (c < 0x800) n += 2; else if (c >= 0xd800 && c < 0xdc00) { n += 4; i++; } else n += 3;
  }
  return n;
}

/** A GGUF file opened through a ByteSource: header parsed once, tensors read on demand. */
export class GgufReader {
  readonly byName: Map<string, GgufTensorInfo>;
  private constructor(readonly source: ByteSource, readonly header: GgufHeader) {
    this.byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /** Reads and validates the header (a window of 1 MiB, doubled while the header needs more). */
  static async open(src: ByteSource): Promise<GgufReader> {
    if (!Number.isSafeInteger(src.size) || src.size < 24) fail(`file is ${src.size} bytes, too short for a GGUF header`);
    let len = Math.min(src.size, 1 << 20);
    for (;;) {
      const buf = await src.read(0, len);
      try {
        return new GgufReader(src, parseHeader(buf, src.size));
      } catch (e) {
        if (!(e instanceof NeedMore)) throw e;
        if (e.bytes > MAX_HEADER_BYTES) fail(`header needs more than ${MAX_HEADER_BYTES} bytes (corrupt file?)`);
        len = Math.min(src.size, Math.max(e.bytes, len * 2), MAX_HEADER_BYTES);
      }
    }
  }

  get metadata(): GgufMetadata { return this.header.metadata; }
  has(name: string): boolean { return this.byName.has(name); }

  /** Header entry of a tensor; throws naming it when absent. */
  info(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) return fail(`tensor ${name} is missing`);
    return t;
  }

  /** The tensor's raw bytes. */
  async bytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const b = await this.source.read(t.offset, t.nbytes);
    if (b.length !== t.nbytes) fail(`tensor ${name}: short read (${b.length} of ${t.nbytes} bytes; file changed?)`);
    return b;
  }

  /** The tensor as float32 (dequantised). */
  async float32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    return decodeTensor(t.type, await this.bytes(name), t.count);
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

/** A metadata entry to write. Arrays are flat: strings, or numbers of `itemType`. */
export type GgufOutKV =
  | { key: string; type: 'u32' | 'i32' | 'f32' | 'u64'; value: number }
  | { key: string; type: 'bool'; value: boolean }
  | { key: string; type: 'str'; value: string }
  | { key: string; type: 'str[]'; value: readonly string[] }
  | { key: string; type: 'i32[]' | 'f32[]'; value: ArrayLike<number> };

/** A tensor to write: `ne` in GGUF order (ne[0] fastest), its bytes produced on demand. */
export interface GgufOutTensor { name: string; ne: number[]; type: GgmlTypeId; nbytes: number; bytes: () => Uint8Array }

const te = new TextEncoder();

/** Growable little-endian byte buffer. */
class Out {
  buf = new Uint8Array(1 << 16);
  dv = new DataView(this.buf.buffer);
  n = 0;
  private room(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.n + k) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
    this.dv = new DataView(b.buffer);
  }
  u32(v: number): void { this.room(4); this.dv.setUint32(this.n, v, true); this.n += 4; }
  i32(v: number): void { this.room(4); this.dv.setInt32(this.n, v, true); this.n += 4; }
  u64(v: number): void { this.room(8); this.dv.setBigUint64(this.n, BigInt(v), true); this.n += 8; }
  f32(v: number): void { this.room(4); this.dv.setFloat32(this.n, v, true); this.n += 4; }
  u8(v: number): void { this.room(1); this.buf[this.n++] = v; }
  str(s: string): void { const b = te.encode(s); this.u64(b.length); this.room(b.length); this.buf.set(b, this.n); this.n += b.length; }
}

/** Bytes a tensor of `type` and shape `ne` occupies. */
export function tensorBytes(type: GgmlTypeId, ne: readonly number[]): number {
  const rows = ne.slice(1).reduce((a, b) => a * b, 1);
  return rowBytes(type, ne[0]!) * rows;
}

/**
 * The header of a GGUF v3 file (through the padding before the data); the data then follows as
 * each tensor's bytes padded with zeros to `alignment`, in the order given.
 */
export function ggufHeaderBytes(kvs: readonly GgufOutKV[], tensors: readonly GgufOutTensor[], alignment = 32): Uint8Array {
  const o = new Out();
  o.u8(0x47); o.u8(0x47); o.u8(0x55); o.u8(0x46);
  o.u32(3);
  o.u64(tensors.length);
  o.u64(kvs.length);
  for (const kv of kvs) {
    o.str(kv.key);
    switch (kv.type) {
      case 'u32': o.u32(GGUF_TYPE.U32); o.u32(kv.value); break;
      case 'i32': o.u32(GGUF_TYPE.I32); o.i32(kv.value); break;
      case 'u64': o.u32(GGUF_TYPE.U64); o.u64(kv.value); break;
      case 'f32': o.u32(GGUF_TYPE.F32); o.f32(kv.value); break;
      case 'bool': o.u32(GGUF_TYPE.BOOL); o.u8(kv.value ? 1 : 0); break;
      case 'str': o.u32(GGUF_TYPE.STRING); o.str(kv.value); break;
      case 'str[]': o.u32(GGUF_TYPE.ARRAY); o.u32(GGUF_TYPE.STRING); o.u64(kv.value.length); for (const s of kv.value) o.str(s); break;
      case 'i32[]': o.u32(GGUF_TYPE.ARRAY); o.u32(GGUF_TYPE.I32); o.u64(kv.value.length); for (let i = 0; i < kv.value.length; i++) o.i32(kv.value[i]!); break;
      case 'f32[]': o.u32(GGUF_TYPE.ARRAY); o.u32(GGUF_TYPE.F32); o.u64(kv.value.length); for (let i = 0; i < kv.value.length; i++) o.f32(kv.value[i]!); break;
    }
  }
  let offset = 0;
  for (const t of tensors) {
    if (te.encode(t.name).length >= MAX_NAME_BYTES) fail(`tensor name ${t.name} is too long (ggml allows under ${MAX_NAME_BYTES} bytes)`);
    if (t.nbytes !== tensorBytes(t.type, t.ne)) fail(`tensor ${t.name}: ${t.nbytes} bytes given, its type and shape need ${tensorBytes(t.type, t.ne)}`);
    o.str(t.name);
    o.u32(t.ne.length);
    for (const n of t.ne) o.u64(n);
    o.i32(t.type);
    o.u64(offset);
    offset = Math.ceil((offset + t.nbytes) / alignment) * alignment;
  }
  const end = Math.ceil(o.n / alignment) * alignment;
  while (o.n < end) o.u8(0);
  return o.buf.slice(0, o.n);
}

/** A whole GGUF file in memory (header, then each tensor padded to `alignment`). */
export function serializeGguf(kvs: readonly GgufOutKV[], tensors: readonly GgufOutTensor[], alignment = 32): Uint8Array {
  const header = ggufHeaderBytes(kvs, tensors, alignment);
  let size = header.length;
  for (const t of tensors) size += Math.ceil(t.nbytes / alignment) * alignment;
  const out = new Uint8Array(size);
  out.set(header);
  let o = header.length;
  for (const t of tensors) {
    const b = t.bytes();
    if (b.length !== t.nbytes) fail(`tensor ${t.name} produced ${b.length} bytes, expected ${t.nbytes}`);
    out.set(b, o);
    o += Math.ceil(t.nbytes / alignment) * alignment;
  }
  return out;
}
