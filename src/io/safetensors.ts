/**
 * safetensors reader/writer — browser-safe (no `node:*`), treats every file as hostile input.
 *
 * Contract:
 * - Layout: 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON
 *   `{"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}}`, then the
 *   data section; offsets are relative to the data section (byte 8 + N). `StTensorInfo.begin/end`
 *   are absolute file offsets.
 * - `parseHeader` validates everything before anything is allocated from it: header length vs
 *   file size and a 100 MB cap, strict UTF-8, JSON shape, dtypes, shapes (non-negative safe
 *   integers), element count × dtype size = offset span, offsets inside the file, no overlaps and
 *   (unless `allowHoles`) a contiguous data section with no trailing bytes, like the Python library.
 * - Every failure is a `SafetensorsError` whose message starts with `safetensors:` and names the
 *   tensor or field at fault.
 * - `serialize` writes the standard layout (header padded with spaces to a multiple of 8, tensors
 *   sorted by name, contiguous, `__metadata__` default `{format: 'pt'}`); data chunks are views of
 *   the caller's arrays (no copy).
 * - `SafetensorsFile` reads lazily through a `ByteSource` (`memorySource` here, `fileSource` in
 *   safetensors-node.ts): the header once, then each tensor's bytes on demand.
 */
import { E4M3_TO_F32, E5M2_TO_F32, decodeBf16, f16ToF32 } from '../fp8/codec.js';

/** safetensors dtype names (the subset Frugal reads and writes). */
export type StDtype =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** One tensor's header entry; `begin`/`end` are absolute byte offsets in the file. */
export interface StTensorInfo { name: string; dtype: StDtype; shape: number[]; begin: number; end: number }

/** Parsed header: tensors by name, `__metadata__`, and the absolute offset of the data section. */
export interface StHeader { tensors: Map<string, StTensorInfo>; metadata: Record<string, string>; dataStart: number }

/** Options for `parseHeader`. */
export interface ParseOptions {
  /** Accept gaps between tensors and trailing bytes after the last one (default false). */
  allowHoles?: boolean;
}

/** Every safetensors failure; the message starts with `safetensors:`. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const fail = (msg: string): never => { throw new SafetensorsError(`safetensors: ${msg}`); };

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<StDtype, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

/** Largest header accepted (same cap as the Python library). */
export const MAX_HEADER_BYTES = 100_000_000;

const isDtype = (s: unknown): s is StDtype => typeof s === 'string' && Object.hasOwn(DTYPE_SIZE, s);
const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decode the 8-byte little-endian header length (exact up to 2^53, larger values stay huge). */
export function readHeaderLength(first8: Uint8Array): number {
  if (first8.length < 8) fail(`file is ${first8.length} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  return dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
}

/** Check a header length against the file size and the cap before anything is read from it. */
export function checkHeaderLength(headerLen: number, fileSize: number): void {
  if (fileSize < 8) fail(`file is ${fileSize} bytes, shorter than the 8-byte header length`);
  if (headerLen > fileSize - 8) {
    fail(`header length ${headerLen} exceeds file size ${fileSize} (truncated file?)`);
  }
  if (headerLen > MAX_HEADER_BYTES) {
    fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`);
  }
  if (headerLen < 2) fail(`header length ${headerLen} is too small to hold a JSON object`);
}

function elementCount(name: string, shape: unknown): { shape: number[]; count: number } {
  if (!Array.isArray(shape)) return fail(`tensor "${name}": shape must be an array of integers`);
  let count = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(`tensor "${name}": shape ${JSON.stringify(shape).slice(0, 80)} must hold non-negative integers`);
    }
    count *= d as number;
    if (count > Number.MAX_SAFE_INTEGER) fail(`tensor "${name}": shape ${JSON.stringify(shape)} has too many elements`);
  }
  return { shape: shape as number[], count };
}

/**
 * Parse and validate a header. `prefix` holds at least the first 8 + N bytes of the file;
 * `fileSize` is the whole file's length.
 */
export function parseHeader(prefix: Uint8Array, fileSize: number, opts: ParseOptions = {}): StHeader {
  if (prefix.length < 8 || fileSize < 8) fail(`file is ${Math.min(prefix.length, fileSize)} bytes, shorter than the 8-byte header length`);
  const headerLen = readHeaderLength(prefix);
  checkHeaderLength(headerLen, fileSize);
  if (prefix.length < 8 + headerLen) fail(`need ${8 + headerLen} header bytes, got ${prefix.length}`);
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;

  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, dataStart));
  } catch {
    fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    fail(`header is not valid JSON (${e instanceof Error ? e.message.slice(0, 120) : 'parse error'})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('header must be a JSON object');

  let metadata: Record<string, string> = {};
  const tensors = new Map<string, StTensorInfo>();
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('__metadata__ must be an object of strings');
      const pairs = Object.entries(entry as Record<string, unknown>);
      for (const [k, v] of pairs) if (typeof v !== 'string') fail(`__metadata__.${k} must be a string, got ${typeof v}`);
      metadata = Object.fromEntries(pairs) as Record<string, string>; // fromEntries: "__proto__" stays a plain key
      continue;
    }
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail(`tensor "${name}": entry must be an object`);
    const { dtype, shape, data_offsets: offs } = entry as Record<string, unknown>;
    if (!isDtype(dtype)) return fail(`tensor "${name}": unknown dtype ${JSON.stringify(dtype)?.slice(0, 40)}`);
    const { shape: dims, count } = elementCount(name, shape);
    if (!Array.isArray(offs) || offs.length !== 2) fail(`tensor "${name}": data_offsets must be [begin, end]`);
    const [b, e] = offs as unknown[];
    if (typeof b !== 'number' || typeof e !== 'number' || !Number.isSafeInteger(b) || !Number.isSafeInteger(e) || b < 0 || e < b) {
      return fail(`tensor "${name}": data_offsets ${JSON.stringify(offs).slice(0, 80)} must be integers with 0 <= begin <= end`);
    }
    if (e > dataSize) fail(`tensor "${name}": data_offsets end ${e} is beyond the data section (${dataSize} bytes; truncated file?)`);
    const need = count * DTYPE_SIZE[dtype];
    if (need !== e - b) fail(`tensor "${name}": shape [${dims.join(', ')}] × ${dtype} needs ${need} bytes but data_offsets span ${e - b}`);
    tensors.set(name, { name, dtype, shape: dims.slice(), begin: dataStart + b, end: dataStart + e });
  }

  const sorted = [...tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let cursor = dataStart;
  let prev = '';
  for (const t of sorted) {
    if (t.begin < cursor) fail(`tensor "${t.name}" overlaps tensor "${prev}"`);
    if (t.begin > cursor && !opts.allowHoles) fail(`tensor "${t.name}": gap of ${t.begin - cursor} bytes before its data (holes not allowed)`);
    cursor = t.end;
    prev = t.name;
  }
  if (cursor !== fileSize && !opts.allowHoles) fail(`${fileSize - cursor} trailing bytes after the last tensor (holes not allowed)`);
  return { tensors, metadata, dataStart };
}

/** Product of a shape. */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** A copy of `bytes` whose buffer starts at offset 0 (so any typed view is aligned). */
const aligned = (bytes: Uint8Array, align: number): Uint8Array =>
  bytes.byteOffset % align === 0 ? bytes : bytes.slice();

/** A copy of `bytes` with every `size`-byte element reversed (big-endian hosts only). */
function byteSwapped(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) for (let k = 0; k < size; k++) out[i + k] = bytes[i + size - 1 - k] as number;
  return out;
}

/** Convert one tensor's bytes (little-endian) to a fresh Float32Array. */
export function toFloat32(info: StTensorInfo, bytes: Uint8Array): Float32Array {
  const size = DTYPE_SIZE[info.dtype];
  if (bytes.length !== info.end - info.begin) {
    fail(`tensor "${info.name}": got ${bytes.length} bytes, header says ${info.end - info.begin}`);
  }
  const n = bytes.length / size;
  const out = new Float32Array(n);
  if (!HOST_LE && size > 1) bytes = byteSwapped(bytes, size); // views below read host order
  switch (info.dtype) {
    case 'F32': new Uint8Array(out.buffer).set(bytes); break; // one copy, any alignment
    case 'F64': { const b = aligned(bytes, 8); out.set(new Float64Array(b.buffer, b.byteOffset, n)); break; }
    case 'I32': { const b = aligned(bytes, 4); out.set(new Int32Array(b.buffer, b.byteOffset, n)); break; }
    case 'I16': { const b = aligned(bytes, 2); out.set(new Int16Array(b.buffer, b.byteOffset, n)); break; }
    case 'I8': out.set(new Int8Array(bytes.buffer, bytes.byteOffset, n)); break;
    case 'U8': case 'BOOL': out.set(bytes); break;
    case 'BF16': { const b = aligned(bytes, 2); decodeBf16(new Uint16Array(b.buffer, b.byteOffset, n), out); break; }
    case 'F16': {
      const b = aligned(bytes, 2);
      const u = new Uint16Array(b.buffer, b.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(u[i] as number);
      break;
    }
    case 'F8_E4M3': case 'F8_E5M2': {
      const table = info.dtype === 'F8_E4M3' ? E4M3_TO_F32 : E5M2_TO_F32;
      for (let i = 0; i < n; i++) out[i] = table[bytes[i] as number] as number;
      break;
    }
    case 'I64': {
      const b = aligned(bytes, 8);
      const v = new BigInt64Array(b.buffer, b.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const x = v[i] as bigint;
        if (x > 9007199254740991n || x < -9007199254740991n) fail(`tensor "${info.name}": I64 value ${x} at index ${i} is beyond 2^53`);
        out[i] = Number(x);
      }
      break;
    }
  }
  return out;
}

/**
 * Dequantise a block-scaled FP8 (e4m3) weight [rows, cols]:
 * W[i,j] = e4m3(codes[i,j]) · scaleInv[⌊i/block⌋, ⌊j/blockCols⌋] (scale_inv is a multiplier;
 * edge blocks are partial). `scaleInv` is [ceil(rows/block), ceil(cols/blockCols)] row-major.
 */
export function dequantizeFp8Weight(
  codes: Uint8Array, scaleInv: Float32Array, rows: number, cols: number, block = 128, blockCols = block,
): Float32Array {
  if (!(Number.isSafeInteger(block) && block > 0 && Number.isSafeInteger(blockCols) && blockCols > 0)) {
    fail(`dequantizeFp8Weight: block size ${block}×${blockCols} must be positive integers`);
  }
  if (codes.length !== rows * cols) fail(`dequantizeFp8Weight: ${codes.length} codes for a [${rows}, ${cols}] weight`);
  const sr = Math.ceil(rows / block);
  const sc = Math.ceil(cols / blockCols);
  if (scaleInv.length !== sr * sc) {
    fail(`dequantizeFp8Weight: weight_scale_inv has ${scaleInv.length} values, a [${rows}, ${cols}] weight with ${block}×${blockCols} blocks needs [${sr}, ${sc}]`);
  }
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const srow = Math.floor(i / block) * sc;
    const base = i * cols;
    for (let jb = 0; jb < sc; jb++) {
      const s = scaleInv[srow + jb] as number;
      const end = base + Math.min(cols, (jb + 1) * blockCols);
      for (let k = base + jb * blockCols; k < end; k++) out[k] = (E4M3_TO_F32[codes[k] as number] as number) * s;
    }
  }
  return out;
}

/** A tensor to serialise: raw data whose byte length must equal numel(shape) × dtype size. */
export interface StTensorInput {
  name: string;
  dtype: StDtype;
  shape: number[];
  data: Uint8Array | Float32Array | Uint16Array | Int32Array;
}

/**
 * Serialise tensors to the standard safetensors layout, returned as chunks:
 * [8-byte header length, padded JSON header, tensor data in name order...].
 */
export function serialize(tensors: StTensorInput[], metadata: Record<string, string> = { format: 'pt' }): Uint8Array[] {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const entries: Array<[string, unknown]> = [['__metadata__', metadata]];
  const seen = new Set<string>(['__metadata__']);
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const t of sorted) {
    if (seen.has(t.name)) fail(`tensor "${t.name}": duplicate or reserved name`);
    seen.add(t.name);
    if (!isDtype(t.dtype)) fail(`tensor "${t.name}": unknown dtype ${String(t.dtype)}`);
    const { count } = elementCount(t.name, t.shape);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    if (bytes.length !== count * DTYPE_SIZE[t.dtype]) {
      fail(`tensor "${t.name}": shape [${t.shape.join(', ')}] × ${t.dtype} needs ${count * DTYPE_SIZE[t.dtype]} bytes, data has ${bytes.length}`);
    }
    entries.push([t.name, { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] }]);
    offset += bytes.length;
    chunks.push(bytes);
  }
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
  const raw = new TextEncoder().encode(JSON.stringify(Object.fromEntries(entries)));
  const padded = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20);
  padded.set(raw);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setUint32(0, padded.length, true);
  return [len, padded, ...chunks];
}

/** Concatenate chunks (e.g. `serialize`'s output) into one buffer. */
export function concatBytes(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out;
}

/** Random-access bytes: a file on disk, a fetched buffer, ... `read` may return a view. */
export interface ByteSource {
  size: number;
  read(offset: number, length: number): Promise<Uint8Array> | Uint8Array;
}

/** A ByteSource over an in-memory buffer (reads are zero-copy views). */
export function memorySource(buf: Uint8Array): ByteSource {
  return {
    size: buf.length,
    read(offset, length) {
      if (offset < 0 || length < 0 || offset + length > buf.length) {
        fail(`read of ${length} bytes at ${offset} is outside the ${buf.length}-byte buffer`);
      }
      return buf.subarray(offset, offset + length);
    },
  };
}

/** A safetensors file opened through a ByteSource: header parsed once, tensors read on demand. */
export class SafetensorsFile {
  private constructor(readonly source: ByteSource, readonly header: StHeader) {}

  /** Read and validate the header (reads 8 bytes, then exactly the header). */
  static async open(src: ByteSource, opts: ParseOptions = {}): Promise<SafetensorsFile> {
    if (!Number.isSafeInteger(src.size) || src.size < 8) fail(`file is ${src.size} bytes, shorter than the 8-byte header length`);
    const first8 = await src.read(0, 8);
    const headerLen = readHeaderLength(first8);
    checkHeaderLength(headerLen, src.size);
    const prefix = await src.read(0, 8 + headerLen);
    return new SafetensorsFile(src, parseHeader(prefix, src.size, opts));
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.header.tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  /** Header entry of a tensor; throws naming the tensor when it is absent. */
  info(name: string): StTensorInfo {
    const t = this.header.tensors.get(name);
    if (!t) return fail(`no tensor named "${name}" in this file`);
    return t;
  }

  /** The tensor's raw little-endian bytes. */
  async bytes(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const b = await this.source.read(t.begin, t.end - t.begin);
    if (b.length !== t.end - t.begin) fail(`tensor "${name}": short read (${b.length} of ${t.end - t.begin} bytes; file changed?)`);
    return b;
  }

  /** The tensor converted to float32. */
  async float32(name: string): Promise<Float32Array> {
    return toFloat32(this.info(name), await this.bytes(name));
  }
}
