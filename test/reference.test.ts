// Golden tests against DeepSeek's official inference code (../shared/reference): full-forward and
// incremental logits (naive and absorb), routing, greedy continuation, RoPE, MTP logits, the FP8
// checkpoint, and the training loss and every gradient of the main set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import '../src/backend/index.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad } from '../src/autograd/tape.js';
import { forward, KVCache, greedyGenerate, mtpForward, lossFn, paramEntries, ropeTables, type AttnImpl } from '../src/model/deepseek.js';
import { loadModel } from '../src/model/load-node.js';
import { SafetensorsModel } from '../src/io/safetensors-node.js';
import { softmaxScale } from '../src/model/config.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const SETS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8'];
interface Tj { shape: number[]; data: number[] }

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

for (const set of SETS) {
  const dir = path.join(REF, set);
  test(`reference ${set}: logits, routing, greedy`, { skip: !existsSync(dir) }, async () => {
    const v = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8'));
    const { cfg, params } = await loadModel(dir);
    assert.ok(Math.abs(softmaxScale(cfg) - v.softmax_scale) < 1e-9, 'softmax scale');
    noGrad(() => {
      for (const s of v.sequences) {
        const toks: number[] = s.tokens;
        const n = toks.length;
        for (const impl of ['absorb', 'naive'] as AttnImpl[]) {
          const f = forward(params, cfg, Tensor.ints(toks, [1, n]), { attn: impl, collectRouting: impl === 'absorb' });
          const d = maxDiff(f.logits.f32, (s[`logits_full_${impl}`] as Tj).data);
          assert.ok(d < 1e-4, `${set} ${s.name} full ${impl}: max |Δ| ${d}`);
          // Incremental: one token at a time through the cache.
          const cache = new KVCache(cfg, 1, n, impl);
          const rows: number[] = [];
          for (let i = 0; i < n; i++) rows.push(...forward(params, cfg, Tensor.ints([toks[i]!], [1, 1]), { attn: impl, cache, startPos: i }).logits.f32);
          const di = maxDiff(rows, (s[`logits_decode_${impl}`] as Tj).data);
          assert.ok(di < 1e-4, `${set} ${s.name} decode ${impl}: max |Δ| ${di}`);
          if (impl === 'absorb') {
            for (const r of s.routing) {
              const rec = f.routing.find((x) => x.layer === r.layer)!;
              const k = r.expert_ids.shape[1];
              for (let t = 0; t < n; t++) {
                const want = new Map<number, number>();
                for (let j = 0; j < k; j++) want.set(r.expert_ids.data[t * k + j], r.weights.data[t * k + j]);
                for (let j = 0; j < k; j++) {
                  const id = rec.ids[t * k + j]!;
                  assert.ok(want.has(id), `${set} ${s.name} layer ${r.layer} token ${t}: expert ${id} not in [${[...want.keys()]}]`);
                  assert.ok(Math.abs(want.get(id)! - rec.weights[t * k + j]!) < 1e-5, 'routing weight');
                }
              }
            }
          }
        }
      }
    });
    const g = v.greedy;
    assert.deepEqual(greedyGenerate(params, cfg, g.prompt, g.max_new_tokens), g.new_tokens, `${set} greedy absorb`);
    assert.deepEqual(greedyGenerate(params, cfg, g.prompt, g.max_new_tokens, { attn: 'naive' }), g.new_tokens, `${set} greedy naive`);
    if (v.rope) {
      const { cos, sin } = ropeTables(cfg, 0, v.rope.sequence.length);
      assert.ok(maxDiff(cos, v.rope.cos.data) < 1e-5 && maxDiff(sin, v.rope.sin.data) < 1e-5, 'rope tables');
    }
    if (v.mtp && cfg.numNextnPredictLayers > 0) {
      noGrad(() => {
        for (const s of v.mtp.sequences) {
          const toks: number[] = s.tokens;
          const n = toks.length;
          if (n < 2) continue;
          const f = forward(params, cfg, Tensor.ints(toks, [1, n]));
          const h = f.hidden.f32.slice(0, (n - 1) * cfg.hiddenSize);
          const r = mtpForward(params, cfg, 0, new Tensor(h, [1, n - 1, cfg.hiddenSize]), Tensor.ints(toks.slice(1), [1, n - 1]));
          const d = maxDiff(r.logits.f32, s.logits_h_after_final_norm.data);
          assert.ok(d < 1e-4, `${set} MTP ${s.name ?? n}: max |Δ| ${d}`);
        }
      });
    }
  });
}

test('reference tiny-dsv3: training loss and every gradient', async () => {
  const dir = path.join(REF, 'tiny-dsv3');
  const v = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8'));
  const { cfg, params } = await loadModel(dir);
  const seq: number[] = v.training.sequence;
  const n = seq.length - 1;
  const r = lossFn(params, cfg, Tensor.ints(seq.slice(0, n), [1, n]), Tensor.ints(seq.slice(1), [n]), { attn: 'absorb' });
  assert.ok(Math.abs(r.loss.item() - v.training.loss) < 1e-4, `loss ${r.loss.item()} vs ${v.training.loss}`);
  backward(r.loss);
  const grads = await SafetensorsModel.open(path.join(dir, 'grads.safetensors'));
  let checked = 0;
  for (const [name, t] of paramEntries(params, cfg)) {
    if (!grads.has(name)) continue;
    const want = await grads.float32(name);
    const got = t.grad ?? new Float32Array(t.size);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1e-6 / 1e-3 + Math.abs(want[i]!)));
    assert.ok(worst < 1e-3, `gradient ${name}: worst relative error ${worst}`);
    checked++;
  }
  grads.close();
  assert.ok(checked >= 80, `checked ${checked} gradients`);
});
