/**
 * Atomic file writes (Node): the bytes go to a fresh temp file beside the target (`.NAME.tmp-PID-RAND`,
 * opened exclusively, never through an existing file or link), are fsynced, then renamed over the
 * target, and the directory is fsynced where the platform allows.
 *
 * Contract:
 * - A crash or a failed write leaves either the old file or the new one, never a mix; on failure
 *   the temp file is removed and the original error is rethrown (callers add their own context).
 * - Writes are looped until every byte is written (short writes happen on full disks and pipes).
 */
import fs from 'node:fs';
import path from 'node:path';

/** Streams chunks through `put` into `file` atomically; returns the bytes written. */
export async function writeFileAtomic(file: string, write: (put: (b: Uint8Array) => Promise<void>) => Promise<void>): Promise<number> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`);
  let fh: fs.promises.FileHandle | undefined;
  let size = 0;
  try {
    fh = await fs.promises.open(tmp, 'wx');
    const handle = fh;
    await write(async (b) => {
      let done = 0;
      while (done < b.length) done += (await handle.write(b, done, b.length - done)).bytesWritten;
      size += b.length;
    });
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fs.promises.rename(tmp, file);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  try { // make the rename durable; not every platform lets a directory be fsynced
    const d = await fs.promises.open(dir, 'r');
    await d.sync().catch(() => undefined);
    await d.close();
  } catch { /* best effort */ }
  return size;
}

/** Writes text or bytes (or a list of byte chunks) to `file` atomically. */
export async function writeDataAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): Promise<number> {
  const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  return writeFileAtomic(file, async (put) => { for (const c of chunks) await put(c); });
}
