/**
 * The webgpu backend's fused output head (registry.ts LinearCrossEntropy): one chunk of rows of
 * `linearCrossEntropy` — logits GEMM, cross-entropy rows, and the dX and dW GEMMs — as ONE job, so
 * the [rows, V] logits and their gradient live only on the device (before: three jobs, the logits
 * read back once and uploaded twice).
 *
 * Contract:
 * - Same values as MatMul + CrossEntropyRows + MatMul + MatMul on ts within float summation order
 *   (row losses in f32 on the device, summed in double on the host).
 * - w (the head, a parameter) is read through residency; x, the targets, dX and dW (when
 *   accumulating) travel. A target outside [0, V) that is not ignoreIndex is a RangeError before
 *   anything runs. Operands over the binding limit: the composed path on this backend's MatMul
 *   (itself falling back to ts per call) and the ts cross-entropy rows.
 */
import type { Kernels, MatMulArgs } from '../registry.js';
import { tsCrossEntropyRows } from '../ts-train.js';
import type { Job } from './job.js';
import type { MoeEnv } from './moe.js';

/** The kernel, bound to a backend's job machinery and its MatMul (for the oversize path). */
export function headKernels(env: MoeEnv & { matmul(x: MatMulArgs): void }): Pick<Kernels, 'LinearCrossEntropy'> {
  const mm = (j: Job, a: string, b: string, c: string, m: number, n: number, k: number, tA: boolean, tB: boolean, acc: boolean): void => {
    j.pass('matmul', [a, b, c], [m, n, k, tA ? 1 : 0, tB ? 1 : 0, 0, 0, 0, acc ? 1 : 0], [Math.ceil(n / 64), Math.ceil(m / 64), 1]);
  };
  return {
    LinearCrossEntropy(x, w, rows, V, H, targets, ignoreIndex, inv, dX, dW, accumulateDW): number {
      const need = (what: string, len: number, n: number): void => { if (len < n) throw new RangeError(`LinearCrossEntropy: ${what} has ${len} elements, needs ${n}`); };
      need('x', x.length, rows * H); need('w', w.length, V * H); need('targets', targets.length, rows);
      if (dX) need('dX', dX.length, rows * H);
      if (dW) need('dW', dW.length, V * H);
      for (let r = 0; r < rows; r++) {
        const y = targets[r]!;
        if (y !== ignoreIndex && !(y >= 0 && y < V)) throw new RangeError(`CrossEntropyRows: target ${y} out of range [0, ${V})`);
      }
      if (rows === 0 || H === 0 || V === 0) {
        if (dX) dX.fill(0, 0, rows * H);
        if (dW && !accumulateDW) dW.fill(0, 0, V * H);
        return 0;
      }
      const grad = dX !== null || dW !== null;
      if (env.tooBig(rows * V, V * H, rows * H) || Math.ceil(V / 64) > 65535 || Math.ceil(rows / 64) > 65535) {
        const p = new Float32Array(rows * V);
        const args = (a: Float32Array, b: Float32Array, c: Float32Array, m: number, n: number, k: number, tA: boolean, tB: boolean, acc: boolean): MatMulArgs =>
          ({ a, b, c, batch: 1, m, n, k, transA: tA, transB: tB, strideA: 0, strideB: 0, strideC: 0, accumulate: acc });
        env.matmul(args(x, w, p, rows, V, H, false, true, false));
        const loss = tsCrossEntropyRows(p, rows, V, targets, ignoreIndex, inv, grad);
        if (dX) env.matmul(args(p, w, dX, rows, H, V, false, false, false));
        if (dW) env.matmul(args(p, x, dW, V, H, rows, true, false, accumulateDW));
        return loss;
      }
      const j = env.newJob();
      env.operand(j, 'ce.x', x, rows * H); env.operand(j, 'ce.w', w, V * H); env.operand(j, 'ce.t', targets, rows);
      j.scratch('ce.p', rows * V); j.output('ce.l', rows);
      mm(j, 'ce.x', 'ce.w', 'ce.p', rows, V, H, false, true, false);
      j.pass('ceRows', ['ce.p', 'ce.t', 'ce.l'], [rows, V, ignoreIndex >>> 0, f32bits(inv), grad ? 1 : 0], env.rowGrid(rows));
      if (dX) { j.output('ce.dx', rows * H); mm(j, 'ce.p', 'ce.w', 'ce.dx', rows, H, V, false, false, false); }
      if (dW) {
        if (accumulateDW) j.inout('ce.dw', dW, V * H); else j.output('ce.dw', V * H);
        mm(j, 'ce.p', 'ce.x', 'ce.dw', V, H, rows, true, false, accumulateDW);
      }
      env.run(j);
      const l = j.view('ce.l');
      let total = 0;
      for (let r = 0; r < rows; r++) total += l[r]!;
      if (dX) j.read('ce.dx', dX);
      if (dW) j.read('ce.dw', dW);
      return total;
    },
  };
}

const f32buf = new Float32Array(1), u32buf = new Uint32Array(f32buf.buffer);
/** The bits of an f32 uniform field. */
function f32bits(x: number): number { f32buf[0] = x; return u32buf[0]!; }
