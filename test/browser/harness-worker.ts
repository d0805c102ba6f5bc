// Test harness that runs inside a browser Worker (bundled by test/browser-gpu.test.ts with esbuild):
// it measures, the Node test asserts. Tasks:
// - {task:'kernels', backend}: test/kernel-cases.ts on ts, then on `backend`; the worst error of each
//   output (|Δ| / (1e-4 + 1e-3·|ref|), NaN-safe) and whether `backend`'s own kernels ran.
// - {task:'reference', backend, sets}: the official vectors (../shared/reference, served at
//   /ref/<set>/) — full-forward logits (absorb and naive) of every sequence, the incremental
//   (KV-cache) logits of the 7-token one, the expert ids and weights of every routed layer, and the
//   greedy continuation — loaded through the page's own URL loader (src/web/load-url.ts).
// - {task:'train', backend, docs, options}: src/web/tab-train.ts's losses.
import { useBackend, describeBackend } from '../../src/backend/setup.js';
import { setBackend, kernelCounts, resetKernelCounts } from '../../src/backend/registry.js';
import { worstError, maxAbsDiff } from '../../src/ops/compare.js';
import { Tensor } from '../../src/autograd/tensor.js';
import { noGrad } from '../../src/autograd/tape.js';
import { forward, KVCache, greedyGenerate, type AttnImpl } from '../../src/model/deepseek.js';
import { loadModelFromUrl } from '../../src/web/load-url.js';
import { trainTiny } from '../../src/web/tab-train.js';
import { kernelCases } from '../kernel-cases.js';

interface Tj { shape: number[]; data: number[] }
const post = (m: unknown): void => (self as unknown as { postMessage(m: unknown): void }).postMessage(m);

async function kernels(backend: string): Promise<unknown> {
  setBackend('ts');
  const ref = kernelCases();
  await useBackend(backend as 'webgpu' | 'wasm');
  resetKernelCounts();
  const got = kernelCases();
  const ran = Object.keys(kernelCounts()).filter((k) => k.startsWith(backend + ':'));
  const worst = got.map((g, i) => worstError(g, ref[i]!, 1e-4, 1e-3).worst);
  return { describe: describeBackend(), outputs: got.length, refOutputs: ref.length, worst, ran };
}

async function reference(backend: string, sets: string[]): Promise<unknown> {
  await useBackend(backend as 'webgpu' | 'wasm');
  const out: Record<string, unknown> = {};
  for (const set of sets) {
    const { cfg, params } = await loadModelFromUrl(`/ref/${set}`);
    const v = await (await fetch(`/ref/${set}/vectors.json`)).json();
    const r: Record<string, number | boolean | string[]> = { full: 0, decode: 0, routingWeight: 0 };
    const routingErrors: string[] = [];
    noGrad(() => {
      for (const s of v.sequences) {
        const toks: number[] = s.tokens, n = toks.length;
        for (const impl of ['absorb', 'naive'] as AttnImpl[]) {
          const f = forward(params, cfg, Tensor.ints(toks, [1, n]), { attn: impl, collectRouting: impl === 'absorb' });
          r.full = Math.max(r.full as number, maxAbsDiff(f.logits.f32, (s[`logits_full_${impl}`] as Tj).data));
          if (n === 7) {
            const cache = new KVCache(cfg, 1, n, impl);
            const rows: number[] = [];
            for (let i = 0; i < n; i++) rows.push(...forward(params, cfg, Tensor.ints([toks[i]!], [1, 1]), { attn: impl, cache, startPos: i }).logits.f32);
            r.decode = Math.max(r.decode as number, maxAbsDiff(rows, (s[`logits_decode_${impl}`] as Tj).data));
          }
          if (impl !== 'absorb') continue;
          for (const want of s.routing) {
            const rec = f.routing.find((x) => x.layer === want.layer);
            const k: number = want.expert_ids.shape[1];
            if (!rec || rec.ids.length !== n * k) { routingErrors.push(`${s.name} layer ${want.layer}: no or wrong-sized routing record`); continue; }
            for (let t = 0; t < n; t++) {
              const got = Array.from(rec.ids.slice(t * k, (t + 1) * k)), ids = want.expert_ids.data.slice(t * k, (t + 1) * k) as number[];
              if (new Set(got).size !== k || [...got].sort().join() !== [...ids].sort().join()) { routingErrors.push(`${s.name} layer ${want.layer} token ${t}: [${got}] vs [${ids}]`); continue; }
              for (let j = 0; j < k; j++) {
                const w = want.weights.data[ids.indexOf(got[j]!) + t * k] as number;
                r.routingWeight = Math.max(r.routingWeight as number, Math.abs(w - rec.weights[t * k + j]!));
              }
            }
          }
        }
      }
    });
    const g = v.greedy;
    const tokens = greedyGenerate(params, cfg, g.prompt, g.max_new_tokens);
    r.greedy = tokens.join() === (g.new_tokens as number[]).join();
    r.routingErrors = routingErrors;
    out[set] = r;
  }
  return { describe: describeBackend(), sets: out };
}

self.onmessage = async (e: MessageEvent) => {
  const m = e.data as { task: string; backend: string; sets?: string[]; docs?: string[]; options?: Record<string, number> };
  try {
    if (m.task === 'kernels') post({ ok: await kernels(m.backend) });
    else if (m.task === 'reference') post({ ok: await reference(m.backend, m.sets ?? []) });
    else if (m.task === 'train') {
      await useBackend(m.backend as 'webgpu');
      resetKernelCounts();
      const r = await trainTiny(m.docs ?? [], m.options ?? {});
      post({ ok: { describe: describeBackend(), losses: r.losses, ran: Object.keys(kernelCounts()) } });
    } else post({ error: `unknown task ${m.task}` });
  } catch (err) {
    post({ error: (err as Error).stack ?? String(err) });
  }
};
