/**
 * Node-only safetensors access: lazy file sources, model directories (single file, sharded with
 * `model.safetensors.index.json`, or every `*.safetensors`), and atomic writes.
 *
 * Contract:
 * - `fileSource` reads with positioned `readSync` calls; a multi-GB file is never copied whole.
 * - `SafetensorsModel.open(dir)` picks `model.safetensors`, else the index (its `weight_map` file
 *   names must be plain names inside `dir`: no separators, no `..`, no absolute paths), else all
 *   `*.safetensors` in `dir`. A tensor name present in two shards is an error, as is a
 *   `weight_map` entry that its shard does not hold.
 * - `float32(name)` dequantises an `F8_E4M3` weight that has a sibling `<name>_scale_inv`
 *   (`*.weight_scale_inv`, SPEC §9: a multiplier over 128×128 blocks, or `weight_block_size` from
 *   the directory's config.json `quantization_config`).
 * - `writeSafetensors` writes a temp file in the same directory, fsyncs, then renames: a crash or
 *   error never leaves a partial file at `path` and never harms the previous one.
 * - All failures are `SafetensorsError`s (`safetensors: ...`), naming the file and the problem.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeDataAtomic } from './atomic-node.js';
import {
  type ByteSource, type ParseOptions, type StHeader, type StTensorInfo, type StTensorInput,
  SafetensorsError, SafetensorsFile, dequantizeFp8Weight, serialize, toFloat32,
} from './safetensors.js';

const fail = (msg: string): never => { throw new SafetensorsError(`safetensors: ${msg}`); };
const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** Largest single readSync (Node caps one read below 2 GiB). */
const READ_CHUNK = 1 << 30;

/** A lazy ByteSource over a file on disk; call `close()` when done. */
export function fileSource(file: string): ByteSource & { close(): void } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    return fail(`cannot open ${file}: ${errText(e)}`);
  }
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
  } catch (e) {
    fs.closeSync(fd);
    return fail(`cannot stat ${file}: ${errText(e)}`);
  }
  let open = true;
  return {
    size,
    read(offset: number, length: number): Uint8Array {
      if (!open) fail(`${file} is closed`);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        fail(`read of ${length} bytes at ${offset} is outside ${file} (${size} bytes)`);
      }
      const out = new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const n = fs.readSync(fd, out, done, Math.min(READ_CHUNK, length - done), offset + done);
        if (n === 0) fail(`${file}: unexpected end of file at byte ${offset + done} (file truncated while open?)`);
        done += n;
      }
      return out;
    },
    close() {
      if (open) { open = false; fs.closeSync(fd); }
    },
  };
}

/** Open one safetensors file from disk (header parsed, tensors read lazily). */
export async function openSafetensorsFile(file: string, opts: ParseOptions = {}): Promise<{ file: SafetensorsFile; close(): void }> {
  const src = fileSource(file);
  try {
    return { file: await SafetensorsFile.open(src, opts), close: () => src.close() };
  } catch (e) {
    src.close();
    if (e instanceof SafetensorsError) throw new SafetensorsError(e.message.replace(/^safetensors: /, `safetensors: ${file}: `));
    throw e;
  }
}

/** A plain file name inside a directory: no separators, no `..`, not absolute, no NUL. */
function checkShardName(name: unknown, where: string): string {
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name) ||
      path.isAbsolute(name) || /^[A-Za-z]:/.test(name)) {
    return fail(`${where}: shard file ${JSON.stringify(name)} must be a plain file name inside the model directory`);
  }
  return name;
}

interface Shard { name: string; file: SafetensorsFile; close(): void }

/** A model directory of one or more safetensors shards, read lazily. */
export class SafetensorsModel {
  private constructor(
    readonly dir: string,
    private readonly shards: Shard[],
    private readonly where: Map<string, Shard>,
    /** FP8 block size [rows, cols] used when dequantising `weight_scale_inv` weights. */
    readonly fp8Block: [number, number],
  ) {}

  /** Open `dir` (or a single `.safetensors` file path). */
  static async open(dir: string, opts: ParseOptions = {}): Promise<SafetensorsModel> {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(dir);
    } catch (e) {
      return fail(`cannot open model directory ${dir}: ${errText(e)}`);
    }
    let files: string[];
    let weightMap: Map<string, string> | undefined;
    if (stat.isFile()) {
      files = [path.basename(dir)];
      dir = path.dirname(dir);
    } else if (fs.existsSync(path.join(dir, 'model.safetensors'))) {
      files = ['model.safetensors'];
    } else if (fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
      weightMap = readIndex(path.join(dir, 'model.safetensors.index.json'));
      files = [...new Set(weightMap.values())].sort();
    } else {
      files = fs.readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();
      if (files.length === 0) fail(`no model.safetensors, model.safetensors.index.json or *.safetensors in ${dir}`);
    }

    const fp8Block = readBlockSize(dir);
    const shards: Shard[] = [];
    const where = new Map<string, Shard>();
    try {
      for (const name of files) {
        const { file, close } = await openSafetensorsFile(path.join(dir, name), opts);
        const shard = { name, file, close };
        shards.push(shard);
        for (const t of file.names()) {
          const other = where.get(t);
          if (other) fail(`tensor "${t}" is in both ${other.name} and ${name} (duplicate across shards)`);
          where.set(t, shard);
        }
      }
      for (const [t, f] of weightMap ?? []) {
        if (where.get(t)?.name !== f) fail(`model.safetensors.index.json maps "${t}" to ${f}, but ${f} does not hold it`);
      }
    } catch (e) {
      for (const s of shards) s.close();
      throw e;
    }
    return new SafetensorsModel(dir, shards, where, fp8Block);
  }

  /** All tensor names, sorted. */
  names(): string[] {
    return [...this.where.keys()].sort();
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  /** Header entry of a tensor (offsets are within its own shard). */
  info(name: string): StTensorInfo {
    return this.file(name).info(name);
  }

  /** Which shard holds a tensor, and that shard's header. */
  shardOf(name: string): { name: string; header: StHeader } {
    const s = this.where.get(name);
    if (!s) return fail(`no tensor named "${name}" in ${this.dir}`);
    return { name: s.name, header: s.file.header };
  }

  /** Raw little-endian bytes of a tensor. */
  async bytes(name: string): Promise<Uint8Array> {
    return this.file(name).bytes(name);
  }

  /** A tensor as float32; FP8 weights with a `weight_scale_inv` sibling come back dequantised. */
  async float32(name: string): Promise<Float32Array> {
    const info = this.info(name);
    const scaleName = `${name}_scale_inv`;
    if (info.dtype !== 'F8_E4M3' || !name.endsWith('.weight') || !this.has(scaleName)) {
      return toFloat32(info, await this.bytes(name));
    }
    if (info.shape.length !== 2) fail(`tensor "${name}": FP8 weight with ${scaleName} must be 2-D, shape is [${info.shape.join(', ')}]`);
    const [rows, cols] = info.shape as [number, number];
    const [br, bc] = this.fp8Block;
    const want = [Math.ceil(rows / br), Math.ceil(cols / bc)];
    const sInfo = this.info(scaleName);
    if (sInfo.shape.length !== 2 || sInfo.shape[0] !== want[0] || sInfo.shape[1] !== want[1]) {
      fail(`tensor "${scaleName}": shape [${sInfo.shape.join(', ')}] should be [${want.join(', ')}] for a [${rows}, ${cols}] weight with ${br}×${bc} blocks`);
    }
    const scale = toFloat32(sInfo, await this.bytes(scaleName));
    return dequantizeFp8Weight(await this.bytes(name), scale, rows, cols, br, bc);
  }

  /** Close every shard's file descriptor. */
  close(): void {
    for (const s of this.shards) s.close();
  }

  private file(name: string): SafetensorsFile {
    const s = this.where.get(name);
    if (!s) return fail(`no tensor named "${name}" in ${this.dir}`);
    return s.file;
  }
}

/** Parse `model.safetensors.index.json` → tensor name → shard file name (validated). */
function readIndex(file: string): Map<string, string> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`${file}: cannot read JSON (${errText(e).slice(0, 120)})`);
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) return fail(`${file}: "weight_map" must be an object of tensor name -> file name`);
  const out = new Map<string, string>();
  for (const [t, f] of Object.entries(map as Record<string, unknown>)) out.set(t, checkShardName(f, `${file} weight_map["${t}"]`));
  if (out.size === 0) fail(`${file}: "weight_map" is empty`);
  return out;
}

/** `quantization_config.weight_block_size` from config.json when present, else [128, 128]. */
function readBlockSize(dir: string): [number, number] {
  const cfgPath = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgPath)) return [128, 128];
  let bs: unknown;
  try {
    bs = (JSON.parse(fs.readFileSync(cfgPath, 'utf8')) as { quantization_config?: { weight_block_size?: unknown } })
      ?.quantization_config?.weight_block_size;
  } catch {
    return [128, 128]; // config.json problems are reported by the config loader, not here
  }
  if (bs === undefined || bs === null) return [128, 128];
  if (!Array.isArray(bs) || bs.length !== 2 || !bs.every((x) => Number.isSafeInteger(x) && x > 0)) {
    return fail(`${cfgPath}: quantization_config.weight_block_size must be [rows, cols] positive integers, got ${JSON.stringify(bs)}`);
  }
  return [bs[0], bs[1]];
}

/** Write a safetensors file atomically (temp file in the same dir, fsync, rename). */
export async function writeSafetensors(file: string, tensors: StTensorInput[], metadata?: Record<string, string>): Promise<void> {
  const chunks = serialize(tensors, metadata); // validates before touching the disk
  try {
    await writeDataAtomic(file, chunks);
  } catch (e) {
    return fail(`cannot write ${file}: ${errText(e)}`);
  }
}
