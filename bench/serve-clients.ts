/**
 * Load-generating clients for the serving benchmarks, in a process of their own (as vLLM's
 * benchmark_serving is), so the server's event loop never runs client code:
 * `node --import tsx bench/serve-clients.ts URL C REQUESTS PROMPT_TOKENS TOKENS VOCAB SEED STAGGER_MS`.
 * C streaming clients each send REQUESTS greedy completions one after another (distinct token-id
 * prompts); client i starts i/C of STAGGER_MS late. Prints one JSON line: tokens/s over the run,
 * completion tokens, the clients' CPU ms from the first request on, time to first token and
 * latency per request (ms), errors.
 */
import { lcgTokens } from './common.js';

const [url, cs, rs, ps, ts, vs, ss, gs] = process.argv.slice(2);
const c = Number(cs), requests = Number(rs), promptTokens = Number(ps), tokens = Number(ts), vocab = Number(vs), seed = Number(ss), staggerMs = Number(gs);
if (!url || ![c, requests, promptTokens, tokens, vocab, seed, staggerMs].every((x) => Number.isFinite(x) && x >= 0)) {
  console.error('usage: serve-clients.ts URL C REQUESTS PROMPT_TOKENS TOKENS VOCAB SEED STAGGER_MS');
  process.exit(2);
}
const now = (): number => performance.now();
const ttft: number[] = [], latency: number[] = [], errors: string[] = [];
let total = 0;
const t0 = now(), cpu0 = process.cpuUsage();
await Promise.all(Array.from({ length: c }, async (_, i) => {
  if (staggerMs > 0) await new Promise((r) => setTimeout(r, (i * staggerMs) / c));
  for (let r = 0; r < requests; r++) {
    const t1 = now();
    try {
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: AbortSignal.timeout(300_000),
        body: JSON.stringify({ prompt: Array.from(lcgTokens(seed + 1000 * r + i, promptTokens, vocab)), max_tokens: tokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
      });
      if (res.status !== 200) { errors.push(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`); continue; }
      const dec = new TextDecoder();
      let tail = '', first = NaN;
      for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
        if (Number.isNaN(first)) first = now() - t1; // the first token's chunk (headers come at admission, with no data)
        tail = (tail + dec.decode(part, { stream: true })).slice(-600);
      }
      const usage = /"completion_tokens":(\d+)/.exec(tail);
      if (!usage || !tail.endsWith('data: [DONE]\n\n')) { errors.push('stream ended without usage or [DONE]'); continue; }
      total += Number(usage[1]);
      ttft.push(first);
      latency.push(now() - t1);
    } catch (e) { errors.push((e as Error).message); }
  }
}));
const cpu = process.cpuUsage(cpu0); // from t0: the clients' work, not the process start
console.log(JSON.stringify({ tokS: total / ((now() - t0) / 1000), tokens: total, cpuMs: (cpu.user + cpu.system) / 1000, ttft, latency, errors }));
