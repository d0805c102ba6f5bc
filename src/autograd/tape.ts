/**
 * Reverse-mode autograd. Ops call `record()` with their inputs and a backward closure; the
 * node hangs off the output tensor. `backward(loss)` walks the graph in reverse topological order,
 * accumulates gradients of leaves into `tensor.grad` (so calling it once per micro-batch
 * accumulates), and releases every node (freeing saved activations). `noGrad(fn)` turns
 * recording off; `recompute(fn, inputs)` stores only the inputs and re-runs `fn` in backward
 * ("recompute instead of store", used for RMSNorm and MLA up-projections).
 */
import { Tensor, type Node } from './tensor.js';
import { kernel } from '../backend/registry.js';
import { recycleF32, allocUninitF32 } from '../backend/alloc.js';

let gradEnabled = true;

export function isGradEnabled(): boolean { return gradEnabled; }

/** Runs fn with gradient recording off. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

/** Runs fn with gradient recording on (inside a noGrad scope too). */
export function withGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try { return fn(); } finally { gradEnabled = prev; }
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/** Attaches a backward node to `out` if any input requires grad. Returns out. */
export function record(out: Tensor, op: string, inputs: Tensor[], backward: Node['backward'], release?: () => void): Tensor {
  if (!needsGrad(...inputs)) return out;
  out.requiresGrad = true;
  const node: Node = { op, inputs, backward };
  if (release) node.release = release;
  out.node = node;
  return out;
}

/** Options of `backward`. */
export interface BackwardOptions {
  /**
   * Hand each activation's array back to the allocator (src/backend/alloc.ts) once every op that
   * saved it has run its backward — for a training step whose caller keeps no activation of the
   * graph (only the loss value). Arrays of leaves (parameters) and of tensors outside the graph
   * are never touched.
   */
  freeActivations?: boolean;
}

/**
 * Backpropagates from `loss` (a scalar, or any tensor with an explicit seed gradient).
 * Leaf gradients are added to `.grad`; intermediate gradients are dropped as soon as used (and
 * their arrays reused by later allocations).
 */
export function backward(loss: Tensor, seed?: Float32Array, opts: BackwardOptions = {}): void {
  if (!loss.requiresGrad) throw new Error('backward: the loss does not depend on any parameter (all inputs detached or under noGrad?)');
  // Topological order by iterative DFS.
  const order: Tensor[] = [];
  const visited = new Set<number>();
  const stack: Array<[Tensor, boolean]> = [[loss, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) { order.push(t); continue; }
    if (visited.has(t.id)) continue;
    visited.add(t.id);
    stack.push([t, true]);
    if (t.node) for (const i of t.node.inputs) if (i.requiresGrad && !visited.has(i.id)) stack.push([i, false]);
  }
  // Activation arrays by buffer: how many graph tensors still hold each (a buffer is free once the
  // last of them has run its backward: by then every op that saved it has too). Leaves' are pinned.
  const holders = opts.freeActivations ? new Map<ArrayBufferLike, number>() : null;
  if (holders) {
    for (const t of order) if (t.data instanceof Float32Array) holders.set(t.data.buffer, (holders.get(t.data.buffer) ?? 0) + (t.node ? 1 : Infinity));
  }
  const grads = new Map<number, Float32Array>();
  // Arrays stored for more than one tensor (pass-through gradients such as reshape's or add's):
  // never accumulated into in place; a sum into one of them allocates a fresh array.
  const shared = new Set<Float32Array>();
  grads.set(loss.id, seed ?? new Float32Array(loss.size).fill(1));
  const freed: Float32Array[] = [];
  const flushFreed = (): void => { for (const a of freed) recycleF32(a); freed.length = 0; };
  for (let idx = order.length - 1; idx >= 0; idx--) {
    const t = order[idx]!;
    const g = grads.get(t.id);
    grads.delete(t.id);
    if (holders && t.node && t.data instanceof Float32Array) {
      const left = holders.get(t.data.buffer)! - 1;
      holders.set(t.data.buffer, left);
      // Freed after this tensor's own backward (below), which may still read its output.
      if (left === 0) freed.push(t.data);
    }
    if (!g) { flushFreed(); continue; }
    // g is dead after this tensor is done when it is this tensor's alone: not the caller's seed,
    // not handed to another tensor too (shared), and not passed on (or a view of it) by the backward.
    const own = g !== seed && !shared.has(g);
    if (!t.node) {
      if (!t.grad) t.grad = shared.has(g) || g === seed ? g.slice() : g;
      else { kernel('AddInto')(t.grad, g); if (own) recycleF32(g); }
      continue;
    }
    const node = t.node;
    const ins = node.backward(g);
    node.release?.();
    t.node = null;
    let passedOn = false;
    for (const x of ins) if (x instanceof Float32Array && x.buffer === g.buffer) passedOn = true;
    for (let i = 0; i < node.inputs.length; i++) {
      const inp = node.inputs[i]!;
      const gi0 = ins[i];
      if (!gi0 || !inp.requiresGrad) continue;
      if (!(gi0 instanceof Float32Array)) {
        // Sparse gradient: add into the leaf's .grad or the pending accumulator directly.
        if (!inp.node) { inp.grad ??= new Float32Array(inp.size); gi0.addInto(inp.grad); continue; }
        const prev = grads.get(inp.id);
        if (prev && !shared.has(prev)) gi0.addInto(prev);
        else { const acc = prev ? prev.slice() : new Float32Array(inp.size); gi0.addInto(acc); grads.set(inp.id, acc); }
        continue;
      }
      const gi = gi0;
      if (gi.length !== inp.size) throw new Error(`backward: op ${node.op} returned a gradient of ${gi.length} elements for an input of ${inp.size}`);
      const prev = grads.get(inp.id);
      if (!prev) {
        // The same array may go to several inputs (or be the incoming g): mark it shared.
        if (gi === g || ins.indexOf(gi) !== i) shared.add(gi);
        grads.set(inp.id, gi);
      } else if (shared.has(prev)) {
        // A fresh sum (prev stays intact for its other holders): copy, then the backend's add.
        const sum = allocUninitF32(prev.length);
        sum.set(prev);
        kernel('AddInto')(sum, gi);
        grads.set(inp.id, sum);
      } else kernel('AddInto')(prev, gi);
    }
    if (own && !passedOn) recycleF32(g);
    flushFreed();
  }
}

/** Zeroes (drops) the gradients of the given parameters. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) if (p.grad) p.grad.fill(0);
}

/**
 * Activation checkpointing: runs fn(inputs) without recording, keeps only the inputs, and in
 * backward re-runs fn with recording on to get the input gradients. Parameters used inside fn
 * (closed over) get their gradients accumulated by the inner backward.
 */
export function recompute(fn: (...xs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (!needsGrad(...inputs) && !gradEnabled) return fn(...inputs);
  const out = noGrad(() => fn(...inputs));
  if (!gradEnabled) return out;
  out.requiresGrad = true;
  out.node = {
    op: 'Recompute',
    inputs,
    backward: (g) => {
      const copies = inputs.map((t) => { const c = t.detach(); c.requiresGrad = t.requiresGrad; return c; });
      const again = withGrad(() => fn(...copies));
      if (again.requiresGrad) backward(again, g);
      return copies.map((c) => c.grad);
    },
  };
  return out;
}

const NO_DATA = new Float32Array(0);

/**
 * A stand-in for `t` in the graph (same id, node, shape and requiresGrad) that holds none of its
 * data. An op whose backward does not read an input's values (fp8Linear keeps only the FP8 bytes
 * of x) records the handle instead of the tensor, so the f32 activation can be freed after the
 * forward pass: the memory saving is real, not only counted. Leaves are returned as they are
 * (their gradient must land on the parameter itself).
 */
export function graphHandle(t: Tensor): Tensor {
  if (!t.node) return t;
  const h = Object.create(Tensor.prototype) as Tensor;
  Object.assign(h, { id: t.id, shape: t.shape, strides: t.strides, dtype: t.dtype, data: NO_DATA, requiresGrad: t.requiresGrad, grad: null, node: t.node });
  Object.defineProperty(h, 'size', { value: t.size });
  return h;
}
