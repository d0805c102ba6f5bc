/**
 * `frugal tokenizer train|encode|decode`: train a byte-level BPE tokenizer on a corpus and write
 * DIR/tokenizer.json + DIR/tokenizer_config.json (Hugging Face layout), or encode/decode with any
 * tokenizer folder (or `deepseek-v3`, DeepSeek-V3's own tokenizer).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { trainBpe } from '../io/bpe.js';
import { Tokenizer } from '../io/tokenizer.js';
import { deepseekV3Tokenizer, loadTokenizer } from '../io/tokenizer-node.js';
import { writeDataAtomic } from '../io/atomic-node.js';
import { loadCorpus } from '../train/data-node.js';
import { splitDocuments } from '../train/data.js';
import { parseArgs, usage, type OptionSpec } from './args.js';
import { UsageError } from '../errors.js';

/** One line for `frugal --help`. */
export const summary = 'train a byte-level BPE tokenizer (tokenizer.json); encode / decode with one';

const trainSpec: OptionSpec = {
  data: { type: 'string', help: "corpus: 'sotu', a .txt file, a folder of .txt, or .jsonl with a text field", default: 'sotu' },
  vocab: { type: 'number', help: 'vocabulary size, including 256 bytes and special tokens', default: 2048 },
  out: { type: 'string', help: 'output folder for tokenizer.json and tokenizer_config.json' },
  'min-frequency': { type: 'number', help: 'least pair count to merge', default: 2 },
  'val-fraction': { type: 'number', help: 'documents held out to measure compression', default: 0.1 },
  seed: { type: 'number', help: 'seed of the train/validation split', default: 1234 },
};
const encodeSpec: OptionSpec = {
  tokenizer: { type: 'string', help: "tokenizer folder (holding tokenizer.json) or 'deepseek-v3'" },
  text: { type: 'string', help: 'text to encode' },
  special: { type: 'boolean', help: 'add the special tokens the tokenizer config asks for (e.g. BOS)' },
};
const decodeSpec: OptionSpec = {
  tokenizer: { type: 'string', help: "tokenizer folder (holding tokenizer.json) or 'deepseek-v3'" },
  ids: { type: 'string', help: 'comma-separated token ids, e.g. 1,2,3' },
  'skip-special': { type: 'boolean', help: 'drop special tokens from the output' },
};

const SUBCOMMANDS = 'train | encode | decode';
const topUsage = `usage: frugal tokenizer <${SUBCOMMANDS}> [options]   (frugal tokenizer <sub> --help)\n\n` +
  '  train   train a byte-level BPE on a corpus; writes DIR/tokenizer.json and DIR/tokenizer_config.json\n' +
  '  encode  print the ids of --text\n' +
  '  decode  print the text of --ids';

/** Entry point of the verb. */
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    console.log(topUsage);
    return 0;
  }
  if (sub === 'train') return train(rest);
  if (sub === 'encode') return encode(rest);
  if (sub === 'decode') return decode(rest);
  throw new UsageError(`unknown subcommand '${sub}' (expected ${SUBCOMMANDS})`);
}

async function openTokenizer(spec: unknown): Promise<Tokenizer> {
  if (typeof spec !== 'string' || spec === '') throw new UsageError("--tokenizer is required (a folder holding tokenizer.json, or 'deepseek-v3')");
  return spec === 'deepseek-v3' ? deepseekV3Tokenizer() : loadTokenizer(spec);
}

async function encode(argv: string[]): Promise<number> {
  const a = parseArgs(argv, encodeSpec);
  if (a.help) { console.log(usage('tokenizer encode', '--tokenizer DIR --text "..."', encodeSpec)); return 0; }
  if (typeof a.text !== 'string') throw new UsageError('--text is required');
  const tok = await openTokenizer(a.tokenizer);
  console.log(tok.encode(a.text, { addSpecialTokens: a.special === true }).join(','));
  return 0;
}

async function decode(argv: string[]): Promise<number> {
  const a = parseArgs(argv, decodeSpec);
  if (a.help) { console.log(usage('tokenizer decode', '--tokenizer DIR --ids 1,2,3', decodeSpec)); return 0; }
  if (typeof a.ids !== 'string') throw new UsageError('--ids is required (comma-separated integers)');
  const ids = a.ids.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => {
    if (!/^\d+$/.test(s)) throw new UsageError(`--ids: '${s}' is not a non-negative integer`);
    return Number(s);
  });
  const tok = await openTokenizer(a.tokenizer);
  for (const id of ids) if (id >= tok.vocabSize) throw new UsageError(`--ids: ${id} is outside this tokenizer's vocabulary [0, ${tok.vocabSize})`);
  process.stdout.write(tok.decode(ids, { skipSpecialTokens: a['skip-special'] === true }) + '\n');
  return 0;
}

async function train(argv: string[]): Promise<number> {
  const a = parseArgs(argv, trainSpec);
  if (a.help) { console.log(usage('tokenizer train', '--data PATH|sotu --vocab N --out DIR', trainSpec)); return 0; }
  if (typeof a.out !== 'string' || a.out === '') throw new UsageError('--out DIR is required (where tokenizer.json is written)');
  const vocab = a.vocab as number;
  if (!Number.isInteger(vocab) || vocab < 257 || vocab > 1_000_000) throw new UsageError(`--vocab must be an integer in [257, 1000000], got ${vocab}`);
  const valFraction = a['val-fraction'] as number;
  if (!(valFraction >= 0 && valFraction < 1)) throw new UsageError(`--val-fraction must be in [0, 1), got ${valFraction}`);

  const t0 = performance.now();
  const corpus = await loadCorpus(a.data as string);
  const { train: trainDocs, val } = splitDocuments(corpus.documents, valFraction, a.seed as number);
  const mb = (docs: string[]): string => (docs.reduce((n, d) => n + d.length, 0) / 1e6).toFixed(2);
  console.log(`corpus ${corpus.name}: ${corpus.documents.length} documents; training on ${trainDocs.length} (${mb(trainDocs)} M chars), ${val.length} held out`);

  const tty = process.stdout.isTTY === true;
  let lastShown = -1;
  const json = trainBpe(trainDocs, {
    vocabSize: vocab,
    minFrequency: a['min-frequency'] as number,
    onProgress: (m, total) => {
      const pct = total === 0 ? 100 : Math.floor((100 * m) / total);
      if (tty) process.stdout.write(`\rmerges ${m}/${total} (${pct}%)`);
      else if (pct >= lastShown + 25 || m === total) { console.log(`merges ${m}/${total}`); lastShown = pct - (pct % 25); }
    },
  });
  if (tty) process.stdout.write('\n');
  const tok = Tokenizer.fromJSON(json);
  const config = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    eos_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
    bos_token: null,
    unk_token: null,
    add_bos_token: false,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: 1_000_000,
  };
  await mkdir(a.out, { recursive: true });
  await writeDataAtomic(join(a.out, 'tokenizer.json'), JSON.stringify(json));
  await writeDataAtomic(join(a.out, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`wrote ${join(a.out, 'tokenizer.json')} (vocab ${tok.vocabSize}) in ${secs} s`);

  const evalDocs = val.length > 0 ? val : trainDocs;
  let bytes = 0, tokens = 0;
  for (const d of evalDocs) {
    bytes += new TextEncoder().encode(d).length;
    tokens += tok.encode(d, { addSpecialTokens: false }).length;
  }
  const where = val.length > 0 ? 'validation' : 'training (no documents held out)';
  console.log(`compression on ${where} text: ${(bytes / Math.max(1, tokens)).toFixed(3)} bytes/token (${tokens} tokens)`);
  return 0;
}

