/**
 * Training the `tiny` model in a browser tab (the `frugal web` page's engine worker runs this; the
 * browser tests run the same function in Node on `native` to compare losses): documents → byte-level
 * BPE → packed tokens → Trainer, exactly as `frugal train` does, with browser-safe code only.
 *
 * Contract:
 * - Deterministic for (documents, options): the same seed gives the same tokenizer, data order,
 *   initialisation and — up to float rounding of the backend — the same losses.
 * - `onStep` gets every step's main loss; `onSample` the trainer's eval samples; `shouldStop` is
 *   polled after every step (the page's Stop button).
 * - Bad options throw a RangeError naming the option before any work starts.
 */
import { presets, type DeepSeekConfig } from '../model/config.js';
import { initParams, type ModelParams } from '../model/deepseek.js';
import { trainBpe } from '../io/bpe.js';
import { Tokenizer } from '../io/tokenizer.js';
import { packDocuments, splitDocuments } from '../train/data.js';
import { Trainer, defaultTrainerOptions, type TrainerOptions } from '../train/trainer.js';

/** What the page lets a user choose. */
export interface TabTrainOptions { steps: number; batch: number; seq: number; lr: number; warmup: number; seed: number; evalEvery: number }
/** Sized for a minute or two on a laptop GPU, or wasm on a few cores. */
export const TAB_TRAIN_DEFAULTS: Readonly<TabTrainOptions> = Object.freeze({ steps: 200, batch: 4, seq: 64, lr: 3e-3, warmup: 20, seed: 1234, evalEvery: 25 });

/** Hooks of a run. */
export interface TabTrainHooks {
  onStep?(step: number, loss: number): void;
  onSample?(step: number, text: string, valLoss: number): void;
  shouldStop?(): boolean;
  onTokenizer?(vocab: number, trainTokens: number): void;
}

/** The trained model and its tokenizer (the page chats with them). */
export interface TabModel { cfg: DeepSeekConfig; params: ModelParams; tokenizer: Tokenizer; losses: number[] }

/** Trains `tiny` on the documents (see the contract). */
export async function trainTiny(docs: string[], o: Partial<TabTrainOptions> = {}, hooks: TabTrainHooks = {}): Promise<TabModel> {
  const opt = { ...TAB_TRAIN_DEFAULTS, ...o };
  for (const k of ['steps', 'batch', 'seq', 'warmup', 'evalEvery'] as const) {
    if (!(Number.isInteger(opt[k]) && opt[k] >= (k === 'warmup' ? 0 : 1) && opt[k] <= 100_000)) throw new RangeError(`train: ${k} must be an integer in 1..100000, got ${opt[k]}`);
  }
  if (!(opt.lr > 0 && opt.lr < 1)) throw new RangeError(`train: lr must be in (0, 1), got ${opt.lr}`);
  if (docs.length < 2) throw new RangeError(`train: need at least 2 documents (one is held out), got ${docs.length}`);
  const cfg: DeepSeekConfig = structuredClone(presets.tiny!);
  if (opt.seq > cfg.maxPositionEmbeddings) throw new RangeError(`train: seq ${opt.seq} exceeds the model's ${cfg.maxPositionEmbeddings} positions`);
  const split = splitDocuments(docs, 0.05, opt.seed);
  const tok = Tokenizer.fromJSON(trainBpe(split.train, { vocabSize: cfg.vocabSize }));
  const eos = tok.eosId;
  if (eos === null) throw new Error('train: the trained tokenizer has no end-of-text token');
  cfg.eosTokenId = eos;
  cfg.bosTokenId = tok.bosId;
  const encode = (d: string[]): Int32Array => packDocuments(d.map((x) => tok.encode(x, { addSpecialTokens: false })), eos);
  const train = encode(split.train), val = encode(split.val);
  if (val.length < opt.seq + 1 || train.length < opt.batch * (opt.seq + 1)) throw new RangeError(`train: too little text (${train.length} training, ${val.length} validation tokens) for batch ${opt.batch} × seq ${opt.seq}`);
  hooks.onTokenizer?.(tok.vocabSize, train.length);
  const params = initParams(cfg, { seed: opt.seed });
  const options: TrainerOptions = {
    ...defaultTrainerOptions, steps: opt.steps, batch: opt.batch, seq: opt.seq, lr: opt.lr, warmup: opt.warmup, seed: opt.seed,
    evalEvery: opt.evalEvery, evalBatches: 1, logEvery: opt.steps + 1, saveEvery: 0, routerLrScale: 0.03, sampleTokens: 24,
  };
  const losses: number[] = [];
  const trainer = new Trainer({
    cfg, params, train, val, options, meter: { flopsPerToken: 0, peakFlops: 1, usdPerToken: 0 },
    promptIds: tok.encode('The', { addSpecialTokens: false }), eosId: eos, sampleVocab: tok.vocabSize,
  }, {
    onStep: (s, loss) => { losses.push(loss); hooks.onStep?.(s, loss); },
    onEval: (e) => hooks.onSample?.(e.step, e.sample, e.valLoss),
    decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }),
    ...(hooks.shouldStop ? { shouldStop: hooks.shouldStop } : {}),
  });
  await trainer.run();
  return { cfg, params, tokenizer: tok, losses };
}
