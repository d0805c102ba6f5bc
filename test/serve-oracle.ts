// What the server must answer, computed without the server: the engine's own `generate` (no
// prefix cache, no store) and the tokenizer's `decode`, with stop strings applied the way the
// OpenAI API defines them (the text ends before the first stop string; generation ends at the
// token whose text completed it, as the tokenizer's StreamDecoder releases text). Shared by the
// server tests, which compare every response with it.
import assert from 'node:assert/strict';
import { generate, type Model } from '../src/infer/generate.js';
import type { SamplingOptions } from '../src/infer/sampling.js';
import { StreamDecoder, type Tokenizer } from '../src/io/tokenizer.js';

export interface Expected { text: string; promptTokens: number; completionTokens: number; finish: 'stop' | 'length' }

/** The default chat template rendered by hand (not by the server's Jinja path). */
export function chatPrompt(messages: Array<{ role: string; content: string }>): string {
  return messages.map((m) => `<|${m.role}|>\n${m.content}\n`).join('') + '<|assistant|>\n';
}
/** Stop strings the server adds for its default chat template. */
export const CHAT_STOPS = ['<|user|>', '<|system|>'];

/** The completion the server must produce for prompt ids under these sampling options. */
export function expected(model: Model, tok: Tokenizer, ids: number[], maxTokens: number, sampling: SamplingOptions, stops: string[] = []): Expected {
  const g = generate(model, ids, { ...sampling, maxTokens, vocabLimit: tok.vocabSize, stopTokenIds: tok.eosId !== null ? [tok.eosId] : [] });
  const stream = new StreamDecoder(tok, { skipSpecialTokens: true });
  let text = '';
  for (let k = 1; k <= g.tokens.length && stops.length; k++) {
    text += stream.push(g.tokens[k - 1]!);
    const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    if (cuts.length) return { text: text.slice(0, Math.min(...cuts)), promptTokens: ids.length, completionTokens: k, finish: 'stop' };
  }
  return { text: tok.decode(g.tokens, { skipSpecialTokens: true }), promptTokens: ids.length, completionTokens: g.tokens.length, finish: g.finishReason === 'stop' ? 'stop' : 'length' };
}

/** Asserts that a response's text, finish reason and token counts are the expected ones. */
export function assertAnswer(what: string, got: { text: string; finish: string | null; usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null }, want: Expected): void {
  assert.equal(got.text, want.text, `${what}: text`);
  assert.equal(got.finish, want.finish, `${what}: finish_reason`);
  if (got.usage) {
    assert.equal(got.usage.prompt_tokens, want.promptTokens, `${what}: prompt_tokens`);
    assert.equal(got.usage.completion_tokens, want.completionTokens, `${what}: completion_tokens`);
    assert.equal(got.usage.total_tokens, want.promptTokens + want.completionTokens, `${what}: total_tokens`);
  }
}
