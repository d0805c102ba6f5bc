/**
 * The webgpu backend's MatMulBatch (registry.ts): several independent GEMMs — a linear layer's dX
 * and dW products — in ONE job instead of one each, with an operand the items share (the upstream
 * gradient) uploaded once.
 *
 * Contract:
 * - Equal to MatMul on each item in order when no item writes memory another item reads or writes
 *   (c arrays disjoint from every other item's a, b and c, compared by buffer and byte range);
 *   otherwise, and for items MatMul handles specially (k = 0, empty, past the binding or dispatch
 *   limits), the items run one MatMul call each.
 * - Operands go through `operand` (parameters from their resident copies); c comes back whole
 *   (uploaded first when accumulating or when batches leave gaps), as in MatMul.
 */
import type { MatMulArgs } from '../registry.js';
import type { Job } from './job.js';
import type { MoeEnv } from './moe.js';

/** Byte range [start, end) of an array view inside its buffer. */
const range = (a: ArrayBufferView): [ArrayBufferLike, number, number] => [a.buffer, a.byteOffset, a.byteOffset + a.byteLength];
const overlap = (p: ArrayBufferView, q: ArrayBufferView): boolean => {
  const [b1, s1, e1] = range(p), [b2, s2, e2] = range(q);
  return b1 === b2 && s1 < e2 && s2 < e1;
};

/** The MatMulBatch kernel over a backend's job machinery; `single` is its MatMul. */
export function matmulBatch(env: MoeEnv & { single(x: MatMulArgs): void; maxGroups: number }): (items: MatMulArgs[]) => void {
  return (items) => {
    const independent = items.every((x, i) => items.every((y, j) => i === j || (!overlap(x.c, y.a) && !overlap(x.c, y.b) && !overlap(x.c, y.c))));
    const j: Job = env.newJob();
    const names = new Map<Float32Array, { name: string; len: number }>();
    let roles = 0;
    const bind = (arr: Float32Array, len: number): string => {
      const hit = names.get(arr);
      if (hit && hit.len >= len) return hit.name;
      const name = `mb${roles++}.in`;
      env.operand(j, name, arr, len);
      names.set(arr, { name, len });
      return name;
    };
    const reads: Array<[string, Float32Array]> = [];
    for (const [i, x] of items.entries()) {
      const { batch, m, n, k } = x;
      const extA = m * k + (batch - 1) * x.strideA, extB = k * n + (batch - 1) * x.strideB, extC = m * n + (batch - 1) * x.strideC;
      const plain = batch > 0 && m > 0 && n > 0 && k > 0 && x.a.length >= extA && x.b.length >= extB && x.c.length >= extC;
      if (!independent || !plain || batch > env.maxGroups || Math.ceil(m / 64) > env.maxGroups || Math.ceil(n / 64) > env.maxGroups || env.tooBig(extA, extB, extC)) {
        env.single(x); // its own job (or ts, or its error message), like any MatMul call
        continue;
      }
      const a = bind(x.a, extA), b = bind(x.b, extB), c = `mb${i}.c`;
      if (x.accumulate || (batch > 1 && x.strideC !== m * n)) j.inout(c, x.c, extC); else j.output(c, extC);
      j.pass('matmul', [a, b, c], [m, n, k, x.transA ? 1 : 0, x.transB ? 1 : 0, x.strideA, x.strideB, x.strideC, x.accumulate ? 1 : 0], [Math.ceil(n / 64), Math.ceil(m / 64), batch]);
      reads.push([c, x.c]);
    }
    if (!reads.length) return;
    env.run(j);
    for (const [c, dst] of reads) j.read(c, dst);
  };
}
