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
import { disposeBackends } from '../src/backend/setup-node.js';
import { maxAbsDiff, worstError } from '../src/ops/compare.js';
import { Tensor } from '../src/autograd/tensor.js';
import { backward, noGrad } from '../src/autograd/tape.js';
import { forward, KVCache, greedyGenerate, mtpForward, lossFn, paramEntries, ropeTables, type AttnImpl } from '../src/model/deepseek.js';
import { loadModel } from '../src/model/load-node.js';
import { SafetensorsModel } from '../src/io/safetensors-node.js';
import { softmaxScale } from '../src/model/config.js';
import { fp8Linear } from '../src/fp8/linear.js';
import { fp8Gemm, quantizeBlocks, quantizeTiles } from '../src/fp8/quant.js';

const REF = path.resolve(process.cwd(), '../shared/reference');
const SETS = ['tiny-dsv3', 'tiny-dsv3-noqlora', 'tiny-dsv3-yarn', 'tiny-dsv3-fp8'];
interface Tj { shape: number[]; data: number[] }

const maxDiff = maxAbsDiff;
const BACKENDS = await backendsUnderTest();
// WebGPU (software Vulkan without a GPU: milliseconds per kernel call) takes the training test here;
// the browser tests (test/browser-gpu.test.ts) run the logits, routing and greedy sets on it in a page.
const WITH_GPU = await backendsUnderTest({ webgpu: true });
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

for (const be of WITH_GPU) test(`reference tiny-dsv3 [${be}]: training loss and every gradient`, () => withBackend(be, async () => {
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

// DeepSeek's model.py run on the FP8 checkpoint with its own FP8 kernels (1x128 activation
// quantisation + block-scaled FP8 GEMM), with fp32 scales and with V3.1's `scale_fmt: "ue8m0"`,
// which model.py passes only to its plain `Linear` layers (wq_a, wkv_a and the routed experts'
// w1/w2/w3); the parallel linears (wq_b, wo, dense MLP, shared experts) keep amax/448 scales.
for (const be of BACKENDS) test(`reference tiny-dsv3-fp8 [${be}]: the official FP8 GEMM path, fp32 and ue8m0 activation scales`, { skip: !existsSync(path.join(REF, 'tiny-dsv3-fp8')) }, () => withBackend(be, async () => {
  const dir = path.join(REF, 'tiny-dsv3-fp8');
  const v = JSON.parse(readFileSync(path.join(dir, 'vectors.json'), 'utf8')).fp8_gemm_path;
  const { cfg, params } = await loadModel(dir);
  const plainLinear = new Set<Tensor>();
  for (const l of params.layers) {
    if (l.attn.qAProj) plainLinear.add(l.attn.qAProj);
    plainLinear.add(l.attn.kvAProj);
    for (const e of l.moe?.experts ?? []) plainLinear.add(e.gate).add(e.up).add(e.down);
  }
  const seq: number[] = v.sequence;
  const flat = (t: Tj): Float32Array => Float32Array.from((t.data as unknown as number[][]).flat(3) as number[]);
  for (const [fmt, want] of [['fp32', flat(v.logits_gemm_fp8_path)], ['ue8m0', flat(v.logits_gemm_fp8_path_scale_fmt_ue8m0)]] as const) {
    let plainCalls = 0;
    const lin = (x: Tensor, w: Tensor): Tensor => {
      const ue8m0 = fmt === 'ue8m0' && plainLinear.has(w);
      if (ue8m0) plainCalls++;
      return ue8m0 ? inferenceFp8Linear(x, w, 'ue8m0') : fp8Linear(x, w);
    };
    const got = noGrad(() => forward(params, cfg, Tensor.ints(seq, [1, seq.length]), { attn: 'absorb', projLinear: lin })).logits.f32;
    const d = maxDiff(got, want);
    assert.ok(d < 1e-4, `FP8 path (${fmt} activation scales): max |Δ| ${d}`);
    if (fmt === 'ue8m0') assert.ok(plainCalls > 0, 'the ue8m0 layers ran');
  }
}));

/** x·Wᵀ the way model.py's `linear()` runs an FP8 weight: act_quant(x, scaleFmt) + fp8_gemm, with
 *  the weight's own amax/448 block scales (scale_fmt never touches the stored weights). */
function inferenceFp8Linear(x: Tensor, w: Tensor, scaleFmt: 'fp32' | 'ue8m0'): Tensor {
  const [N, K] = w.shape as [number, number];
  const M = x.size / K;
  const y = fp8Gemm(quantizeTiles(x.f32, M, K, { scaleFmt }), quantizeBlocks(w.f32, N, K), M, N, K);
  return new Tensor(y, [...x.shape.slice(0, -1), N]);
}
