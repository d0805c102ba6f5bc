// Golden tests against DeepSeek's official inference code (../shared/reference): full-forward and
// incremental logits (naive and absorb), routing, greedy continuation, RoPE, MTP logits, the FP8
// checkpoint, and the training loss and every gradient of the main set — on every backend this
// process can start (ts, wasm, native; FRUGAL_EXPECT_BACKENDS makes a missing one an error).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import '../src/backend/index.js';
import { backendsUnderTest, withBackend } from '../src/backend/testing-node.js';
import { disposeBackends } from '../src/backend/setup.js';
import { maxAbsDiff, worstError } from '../src/ops/compare.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad } from '../src/autograd/tape.js';
import { forward, KVCache, greedyGenerate, mtpForward, lossFn, paramEntries, ropeTables, type AttnImpl } from '../src/model/deepseek.js';
import { loadModel } from '../src/model/load-node.js';
import { SafetensorsModel } from '../src/io/safetensors-node.js';
import { softmaxScale } from '../src/model/config.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const SETS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8'];
interface Tj { shape: number[]; data: number[] }

const maxDiff = maxAbsDiff;
const BACKENDS = await backendsUnderTest();
after(() => disposeBackends());

/** Sorted copy, for comparing expert-id sets. */
const sorted = (xs: ArrayLike<number>): number[] => Array.from(xs).sort((a, b) => a - b);

for (const be of BACKENDS) for (const set of SETS) {
  const dir = path.join(REF, set);
  test(`reference ${set} [${be}]: logits, routing, greedy`, { skip: !existsSync(dir) }, () => withBackend(be, async () => {
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
            assert.equal(f.routing.length, s.routing.length, `${set} ${s.name}: routed layers`);
            for (const r of s.routing) {
              const rec = f.routing.find((x) => x.layer === r.layer);
              assert.ok(rec, `${set} ${s.name}: no routing recorded for layer ${r.layer}`);
              const k: number = r.expert_ids.shape[1];
              assert.equal(rec.k, k, `${set} layer ${r.layer}: experts per token`);
              assert.equal(rec.ids.length, n * k, `${set} layer ${r.layer}: n·k expert ids`);
              for (let t = 0; t < n; t++) {
                const got: Int32Array = rec.ids.slice(t * k, (t + 1) * k), want: number[] = r.expert_ids.data.slice(t * k, (t + 1) * k) as number[];
                assert.equal(new Set(got).size, k, `${set} ${s.name} layer ${r.layer} token ${t}: ${k} distinct experts, got [${got}]`);
                assert.deepEqual(sorted(got), sorted(want), `${set} ${s.name} layer ${r.layer} token ${t}: experts`);
                for (let j = 0; j < k; j++) {
                  const w = r.weights.data[want.indexOf(got[j]!) + t * k] as number;
                  const d = Math.abs(w - rec.weights[t * k + j]!);
                  assert.ok(d < 1e-5, `${set} ${s.name} layer ${r.layer} token ${t} expert ${got[j]}: routing weight off by ${d}`);
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
  }));
}

for (const be of BACKENDS) test(`reference tiny-dsv3 [${be}]: training loss and every gradient`, () => withBackend(be, async () => {
  const dir = path.join(REF, 'tiny-dsv3');
  const v = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8'));
  const { cfg, params } = await loadModel(dir);
  const seq: number[] = v.training.sequence;
  const n = seq.length - 1;
  const r = lossFn(params, cfg, Tensor.ints(seq.slice(0, n), [1, n]), Tensor.ints(seq.slice(1), [n]), { attn: 'absorb' });
  assert.ok(Math.abs(r.loss.item() - v.training.loss) < 1e-4, `loss ${r.loss.item()} vs ${v.training.loss}`);
  backward(r.loss);
  const grads = await SafetensorsModel.open(path.join(dir, 'grads.safetensors'));
  const withoutGrad = new Set<string>(v.training.params_without_grad);
  const mtpPrefix = `model.layers.${cfg.numHiddenLayers}.`; // the MTP module: not part of this loss
  const checked: string[] = [];
  try {
    for (const [name, t] of paramEntries(params, cfg)) {
      if (!grads.has(name)) {
        assert.ok(withoutGrad.has(name) || name.startsWith(mtpPrefix), `parameter ${name} has no reference gradient and is not listed as gradient-free`);
        continue;
      }
      const want = await grads.float32(name);
      assert.ok(t.grad, `parameter ${name} got no gradient`);
      assert.equal(t.grad.length, want.length, `gradient ${name}: size`);
      const { worst, index } = worstError(t.grad, want, 1e-6, 1e-3);
      assert.ok(worst <= 1, `gradient ${name}: element ${index} off by ${worst.toFixed(2)}× tolerance (${t.grad[index]} vs ${want[index]})`);
      checked.push(name);
    }
    assert.deepEqual(checked.slice().sort(), grads.names().sort(), 'every reference gradient is matched by name and checked');
  } finally { grads.close(); }
}));
