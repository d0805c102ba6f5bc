/**
 * Node-only GGUF file access: opening a file lazily (positioned reads; a multi-GB file is never
 * read whole) and writing one atomically.
 *
 * Contract:
 * - `openGgufFile(file)` validates the header (gguf.ts) and names the file in every error.
 * - `writeGguf` writes the header, then each tensor's bytes (produced one at a time, so only one
 *   encoded tensor is in memory) padded to the alignment, into a temp file in the same directory,
 *   fsyncs, then renames: a crash never leaves a partial file at `file` nor harms a previous one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GgufError, GgufReader, ggufHeaderBytes, type GgufOutKV, type GgufOutTensor } from './gguf.js';
import { fileSource } from './safetensors-node.js';
import { writeFileAtomic } from './atomic-node.js';

/** Opens a GGUF file; call `close()` when done. */
export async function openGgufFile(file: string): Promise<{ reader: GgufReader; close(): void }> {
  let src: ReturnType<typeof fileSource>;
  try { src = fileSource(file); } catch (e) { throw new GgufError(`gguf: cannot open ${file}: ${(e as Error).message.replace(/^safetensors: /, '')}`); }
  try {
    return { reader: await GgufReader.open(src), close: () => src.close() };
  } catch (e) {
    src.close();
    if (e instanceof GgufError) throw new GgufError(e.message.replace(/^gguf: /, `gguf: ${file}: `));
    throw e;
  }
}

/** Writes a GGUF file atomically (see the contract); returns its size in bytes. */
export async function writeGguf(file: string, kvs: readonly GgufOutKV[], tensors: readonly GgufOutTensor[], alignment = 32): Promise<number> {
  const header = ggufHeaderBytes(kvs, tensors, alignment); // validates names and sizes first
  try {
    return await writeFileAtomic(file, async (put) => {
      await put(header);
      const zeros = new Uint8Array(alignment);
      for (const t of tensors) {
        const b = t.bytes();
        if (b.length !== t.nbytes) throw new GgufError(`gguf: tensor ${t.name} produced ${b.length} bytes, expected ${t.nbytes}`);
        await put(b);
        const pad = (alignment - (b.length % alignment)) % alignment;
        if (pad) await put(zeros.subarray(0, pad));
      }
    });
  } catch (e) {
    if (e instanceof GgufError) throw e;
    throw new GgufError(`gguf: cannot write ${file}: ${(e as Error).message}`);
  }
}
