// The FP8 recipe's activation saving is real: after the forward pass, the f32 input of an
// fp8Linear can be garbage-collected (only its FP8 bytes are kept for backward), while the f32
// linear keeps its input alive; gradients are unchanged by the stand-in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import '../src/backend/index.js';
import { backward, graphHandle } from '../src/autograd/tape.js';
import * as op from '../src/ops/index.js';
import { randn } from '../src/ops/gradcheck.js';
import { fp8Linear } from '../src/fp8/linear.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function forwardOnly(lin: typeof op.linear): { loss: ReturnType<typeof op.sum>; ref: WeakRef<Float32Array> } {
  const w0 = randn([256, 256], 1).param(), w = randn([256, 256], 2).param();
  // A non-leaf activation whose producer (add) does not keep its output for backward.
  const h = op.add(op.linear(randn([64, 256], 3), w0), randn([64, 256], 7));
  const ref = new WeakRef(h.f32);
  return { loss: op.sum(lin(h, w)), ref };
}

test('fp8Linear does not keep its f32 input alive; op.linear does', async () => {
  const a = forwardOnly((x, w) => fp8Linear(x, w));
  const b = forwardOnly(op.linear);
  for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); }
  assert.equal(a.ref.deref(), undefined, 'the f32 activation behind fp8Linear is still reachable');
  assert.notEqual(b.ref.deref(), undefined, 'control: op.linear must keep its input');
  backward(a.loss); // backward still works from the FP8 bytes alone
  backward(b.loss);
});

test('graphHandle: same gradients through a data-less stand-in', () => {
  const w = randn([5, 4], 4).param();
  const x = op.mul(randn([3, 4], 5), randn([3, 4], 6).param());
  const h = graphHandle(x);
  assert.equal(h.id, x.id);
  assert.equal(h.size, x.size);
  assert.equal(h.data.length, 0);
  const lf = fp8Linear(x, w);
  assert.ok(lf.node!.inputs[0]!.data.length === 0, 'fp8Linear records the handle');
  backward(op.sum(lf));
  assert.ok(w.grad!.some((v) => v !== 0));
});
