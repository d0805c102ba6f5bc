// llama.cpp as a test peer, through node-llama-cpp (devDependency; prebuilt CPU binary, never
// built or downloaded). Runs at 1 thread (node-llama-cpp starts a thread per decode call, which
// is fine for correctness and fast at 1 thread), KV cache f32 and flash attention off so logits
// are comparable to 1e-4 (llama.cpp's defaults add ~1e-2 of their own).
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

/** The llama.cpp runtime, or why it cannot load here (the tests then skip, printing this). */
export async function loadLlamaCpp(): Promise<{ llama: Llama; why: null } | { llama: null; why: string }> {
  try {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false, skipDownload: true });
    return { llama, why: null };
  } catch (e) {
    return { llama: null, why: `node-llama-cpp's prebuilt llama.cpp does not load here: ${(e as Error).message.split('\n')[0]}` };
  }
}

/** A loaded GGUF model in llama.cpp with one f32-KV context. */
export class LlamaCppRun {
  private readonly seq: LlamaContextSequence;
  private constructor(private readonly model: LlamaModel, private readonly ctx: LlamaContext) { this.seq = ctx.getSequence(); }

  static async open(llama: Llama, file: string, contextSize = 256): Promise<LlamaCppRun> {
    const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    const ctx = await model.createContext({
      contextSize, batchSize: contextSize, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
    });
    return new LlamaCppRun(model, ctx);
  }

  /** Logits of every position (one prefill), as Float32Arrays of the vocabulary size. */
  async logits(ids: readonly number[]): Promise<Float32Array[]> {
    const seq = this.seq;
    await seq.clearHistory();
    {
      const out = await seq.controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { logits: true } }]));
      return out.map((o) => {
        const m = o!.next!.logits!;
        const a = new Float32Array(m.size);
        for (const [tok, l] of m) a[tok] = l;
        return a;
      });
    }
  }

  /** Logits with one token per evaluation (llama.cpp's single-token decode path). */
  async stepLogits(ids: readonly number[]): Promise<Float32Array[]> {
    await this.seq.clearHistory();
    const rows: Float32Array[] = [];
    for (const t of ids) {
      const [o] = await this.seq.controlledEvaluate([[t as Token, { generateNext: { logits: true } }]]);
      const m = o!.next!.logits!;
      const a = new Float32Array(m.size);
      for (const [tok, l] of m) a[tok] = l;
      rows.push(a);
    }
    return rows;
  }

  /** Greedy continuation (temperature 0 = argmax), `n` tokens. */
  async greedy(ids: readonly number[], n: number): Promise<number[]> {
    const seq = this.seq;
    await seq.clearHistory();
    const out: number[] = [];
    for await (const t of seq.evaluate(ids as Token[], { temperature: 0 })) { out.push(t); if (out.length >= n) break; }
    return out;
  }

  /** llama.cpp's own tokenization of text (no BOS added). */
  tokenize(text: string): number[] { return Array.from(this.model.tokenize(text, false)); }
  detokenize(ids: readonly number[]): string { return this.model.detokenize(ids as Token[]); }

  async dispose(): Promise<void> { await this.ctx.dispose(); await this.model.dispose(); }
}

/** max |a − b| over rows. */
export function maxAbsDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let m = 0;
  a.forEach((r, i) => { const s = b[i]!; for (let j = 0; j < r.length; j++) m = Math.max(m, Math.abs(r[j]! - s[j]!)); });
  return m;
}

