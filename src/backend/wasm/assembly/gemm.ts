// AssemblyScript (compiled by scripts/build-wasm.mjs, not by tsc): fp32 GEMM on WebAssembly SIMD128.
// Contract: every pointer is a byte offset into the shared, imported memory; the JS glue writes a
// job descriptor (layout below) and each thread calls runMatMul(job, tid, nthreads); threads claim
// disjoint chunks of C from an atomic counter. Packed panels (KC x NC of B, MC x KC of A) live in per-thread scratch at
// packBase + tid * packStride. 4x8 register tile: 8 f32x4 accumulators, 2 B vectors, 1 A splat
// stay within V8's 16 vector registers (wider tiles spill; see shared/docs/ANCHORS.md).

const KC: i32 = 256;
const MC: i32 = 120;
const NC: i32 = 2048;
/** Bytes of per-thread scratch: packed A, packed B, one 4x8 tile. */
export const PACK_A_BYTES: i32 = MC * KC * 4;
export const PACK_B_BYTES: i32 = KC * NC * 4;
export const PACK_STRIDE: i32 = PACK_A_BYTES + PACK_B_BYTES + 256;

// Job descriptor: i32 words at `job`.
// 0 a, 1 b, 2 c (byte ptrs) | 3 batch, 4 m, 5 n, 6 k | 7 transA, 8 transB | 9 strideA, 10 strideB,
// 11 strideC (elements) | 12 accumulate | 13 packBase (bytes) | 14 chunk counter (caller zeroes it)

/** Packs rows [i0, i0+mc) x cols [p0, p0+kc) of A into 4-row slivers: sliver s holds kc groups of 4. */
function packA(dst: usize, a: usize, rs: i32, cs: i32, i0: i32, mc: i32, p0: i32, kc: i32): void {
  for (let ir = 0; ir < mc; ir += 4) {
    const rows = min(4, mc - ir);
    let d = dst + <usize>(ir * kc) * 4;
    if (rows == 4 && rs == 1) {
      // transA: the 4 rows of one k index are contiguous.
      let s = a + <usize>((i0 + ir) + p0 * cs) * 4;
      for (let p = 0; p < kc; p++) { v128.store(d, v128.load(s)); d += 16; s += <usize>cs * 4; }
    } else if (rows == 4) {
      let s0 = a + <usize>((i0 + ir) * rs + p0 * cs) * 4;
      const r = <usize>rs * 4;
      for (let p = 0; p < kc; p++) {
        store<f32>(d, load<f32>(s0));
        store<f32>(d, load<f32>(s0 + r), 4);
        store<f32>(d, load<f32>(s0 + 2 * r), 8);
        store<f32>(d, load<f32>(s0 + 3 * r), 12);
        d += 16; s0 += <usize>cs * 4;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        for (let q = 0; q < 4; q++) {
          const v: f32 = q < rows ? load<f32>(a + <usize>((i0 + ir + q) * rs + (p0 + p) * cs) * 4) : 0;
          store<f32>(d + <usize>q * 4, v);
        }
        d += 16;
      }
    }
  }
}

/** Packs rows [p0, p0+kc) x cols [j0, j0+nc) of B into 8-column slivers of kc groups of 8. */
function packB(dst: usize, b: usize, rs: i32, cs: i32, p0: i32, kc: i32, j0: i32, nc: i32): void {
  for (let jr = 0; jr < nc; jr += 8) {
    const cols = min(8, nc - jr);
    let d = dst + <usize>(jr * kc) * 4;
    if (cols == 8 && cs == 1) {
      let s = b + <usize>(p0 * rs + j0 + jr) * 4;
      for (let p = 0; p < kc; p++) {
        v128.store(d, v128.load(s));
        v128.store(d, v128.load(s, 16), 16);
        d += 32; s += <usize>rs * 4;
      }
    } else if (cols == 8) {
      // transB: column j of op(B) is a contiguous row of B; read 8 rows side by side.
      const c = <usize>cs * 4;
      let s = b + <usize>(p0 * rs + (j0 + jr) * cs) * 4;
      for (let p = 0; p < kc; p++) {
        for (let q = 0; q < 8; q++) store<f32>(d + <usize>q * 4, load<f32>(s + <usize>q * c));
        d += 32; s += <usize>rs * 4;
      }
    } else {
      for (let p = 0; p < kc; p++) {
        for (let q = 0; q < 8; q++) {
          const v: f32 = q < cols ? load<f32>(b + <usize>((p0 + p) * rs + (j0 + jr + q) * cs) * 4) : 0;
          store<f32>(d + <usize>q * 4, v);
        }
        d += 32;
      }
    }
  }
}

/** C[4x8] (= or +=) packed A sliver x packed B sliver; partial tiles go through `tile`. */
function micro(kc: i32, pa: usize, pb: usize, c: usize, ldc: usize, mr: i32, nr: i32, first: bool, tile: usize): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(pb), b1 = v128.load(pb, 16);
    let a = v128.load32_splat(pa);
    c00 = f32x4.add(c00, f32x4.mul(a, b0)); c01 = f32x4.add(c01, f32x4.mul(a, b1));
    a = v128.load32_splat(pa, 4);
    c10 = f32x4.add(c10, f32x4.mul(a, b0)); c11 = f32x4.add(c11, f32x4.mul(a, b1));
    a = v128.load32_splat(pa, 8);
    c20 = f32x4.add(c20, f32x4.mul(a, b0)); c21 = f32x4.add(c21, f32x4.mul(a, b1));
    a = v128.load32_splat(pa, 12);
    c30 = f32x4.add(c30, f32x4.mul(a, b0)); c31 = f32x4.add(c31, f32x4.mul(a, b1));
    pa += 16; pb += 32;
  }
  if (mr == 4 && nr == 8) {
    if (first) {
      v128.store(c, c00); v128.store(c, c01, 16); c += ldc;
      v128.store(c, c10); v128.store(c, c11, 16); c += ldc;
      v128.store(c, c20); v128.store(c, c21, 16); c += ldc;
      v128.store(c, c30); v128.store(c, c31, 16);
    } else {
      v128.store(c, f32x4.add(v128.load(c), c00)); v128.store(c, f32x4.add(v128.load(c, 16), c01), 16); c += ldc;
      v128.store(c, f32x4.add(v128.load(c), c10)); v128.store(c, f32x4.add(v128.load(c, 16), c11), 16); c += ldc;
      v128.store(c, f32x4.add(v128.load(c), c20)); v128.store(c, f32x4.add(v128.load(c, 16), c21), 16); c += ldc;
      v128.store(c, f32x4.add(v128.load(c), c30)); v128.store(c, f32x4.add(v128.load(c, 16), c31), 16);
    }
    return;
  }
  v128.store(tile, c00); v128.store(tile, c01, 16); v128.store(tile, c10, 32); v128.store(tile, c11, 48);
  v128.store(tile, c20, 64); v128.store(tile, c21, 80); v128.store(tile, c30, 96); v128.store(tile, c31, 112);
  for (let i = 0; i < mr; i++) {
    for (let j = 0; j < nr; j++) {
      const v = load<f32>(tile + <usize>(i * 8 + j) * 4);
      const d = c + <usize>i * ldc + <usize>j * 4;
      store<f32>(d, first ? v : load<f32>(d) + v);
    }
  }
}

/** C[i0:i1, j0:j1] of one matrix; rs/cs are the row/column element strides of op(A) and op(B). */
function gemmBlock(a: usize, ars: i32, acs: i32, b: usize, brs: i32, bcs: i32, c: usize, n: i32, k: i32,
  i0: i32, i1: i32, j0: i32, j1: i32, accumulate: bool, scratch: usize): void {
  const pA = scratch, pB = scratch + <usize>PACK_A_BYTES, tile = pB + <usize>PACK_B_BYTES;
  const ldc = <usize>n * 4;
  if (k == 0) {
    if (!accumulate) for (let i = i0; i < i1; i++) memory.fill(c + <usize>i * ldc + <usize>j0 * 4, 0, <usize>(j1 - j0) * 4);
    return;
  }
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min(NC, j1 - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      packB(pB, b, brs, bcs, pc, kc, jc, nc);
      const first = pc == 0 && !accumulate;
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = min(MC, i1 - ic);
        packA(pA, a, ars, acs, ic, mc, pc, kc);
        for (let jr = 0; jr < nc; jr += 8) {
          const pb = pB + <usize>(jr * kc) * 4;
          const nr = min(8, nc - jr);
          for (let ir = 0; ir < mc; ir += 4) {
            micro(kc, pA + <usize>(ir * kc) * 4, pb, c + <usize>(ic + ir) * ldc + <usize>(jc + jr) * 4, ldc,
              min(4, mc - ir), nr, first, tile);
          }
        }
      }
    }
  }
}

/** M = 1, B not transposed: stream rows of B into the output slice c[j0:j1] (4 rows per pass). */
function gemvRows(a: usize, b: usize, c: usize, n: i32, k: i32, j0: i32, j1: i32, accumulate: bool): void {
  const ldb = <usize>n * 4;
  if (!accumulate) memory.fill(c + <usize>j0 * 4, 0, <usize>(j1 - j0) * 4);
  const j4 = j0 + ((j1 - j0) & ~3);
  for (let jb = j0; jb < j4; jb += 1024) {
    const je = min(jb + 1024, j4);
    let p = 0;
    for (; p + 4 <= k; p += 4) {
      const a0 = v128.load32_splat(a + <usize>p * 4), a1 = v128.load32_splat(a + <usize>p * 4, 4);
      const a2 = v128.load32_splat(a + <usize>p * 4, 8), a3 = v128.load32_splat(a + <usize>p * 4, 12);
      let r = b + <usize>p * ldb;
      for (let j = jb; j < je; j += 4) {
        const o = <usize>j * 4;
        const s = f32x4.add(f32x4.add(f32x4.mul(a0, v128.load(r + o)), f32x4.mul(a1, v128.load(r + ldb + o))),
          f32x4.add(f32x4.mul(a2, v128.load(r + 2 * ldb + o)), f32x4.mul(a3, v128.load(r + 3 * ldb + o))));
        v128.store(c + o, f32x4.add(v128.load(c + o), s));
      }
    }
    for (; p < k; p++) {
      const ap = v128.load32_splat(a + <usize>p * 4);
      const r = b + <usize>p * ldb;
      for (let j = jb; j < je; j += 4) {
        const o = <usize>j * 4;
        v128.store(c + o, f32x4.add(v128.load(c + o), f32x4.mul(ap, v128.load(r + o))));
      }
    }
  }
  for (let j = j4; j < j1; j++) {
    let s: f32 = 0;
    for (let p = 0; p < k; p++) s += load<f32>(a + <usize>p * 4) * load<f32>(b + <usize>p * ldb + <usize>j * 4);
    store<f32>(c + <usize>j * 4, load<f32>(c + <usize>j * 4) + s);
  }
}

/** Horizontal sum of a f32x4. */
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** M = 1, B transposed ([N,K]): c[j] = dot(a, B[j,:]) for j in [j0, j1), 4 rows of B at a time. */
function gemvDots(a: usize, b: usize, c: usize, k: i32, j0: i32, j1: i32, accumulate: bool): void {
  const k4 = k & ~3, ldb = <usize>k * 4;
  let j = j0;
  for (; j < j1; j += 4) {
    const rows = min(4, j1 - j);
    const r0 = b + <usize>j * ldb;
    const r1 = rows > 1 ? r0 + ldb : r0, r2 = rows > 2 ? r0 + 2 * ldb : r0, r3 = rows > 3 ? r0 + 3 * ldb : r0;
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    for (let p = 0; p < k4; p += 4) {
      const o = <usize>p * 4;
      const av = v128.load(a + o);
      s0 = f32x4.add(s0, f32x4.mul(av, v128.load(r0 + o)));
      s1 = f32x4.add(s1, f32x4.mul(av, v128.load(r1 + o)));
      s2 = f32x4.add(s2, f32x4.mul(av, v128.load(r2 + o)));
      s3 = f32x4.add(s3, f32x4.mul(av, v128.load(r3 + o)));
    }
    let t0 = hsum(s0), t1 = hsum(s1), t2 = hsum(s2), t3 = hsum(s3);
    for (let p = k4; p < k; p++) {
      const o = <usize>p * 4, av = load<f32>(a + o);
      t0 += av * load<f32>(r0 + o); t1 += av * load<f32>(r1 + o); t2 += av * load<f32>(r2 + o); t3 += av * load<f32>(r3 + o);
    }
    const d = c + <usize>j * 4;
    store<f32>(d, accumulate ? load<f32>(d) + t0 : t0);
    if (rows > 1) store<f32>(d, accumulate ? load<f32>(d, 4) + t1 : t1, 4);
    if (rows > 2) store<f32>(d, accumulate ? load<f32>(d, 8) + t2 : t2, 8);
    if (rows > 3) store<f32>(d, accumulate ? load<f32>(d, 12) + t3 : t3, 12);
  }
}

/** Computes thread `tid`'s part of the MatMul job described at `job`. Work is split into chunks
 *  (column or row ranges, or whole batch entries) that threads claim from an atomic counter, so a
 *  thread that the OS preempts does not hold up the others. */
export function runMatMul(job: usize, tid: i32, nth: i32): void {
  const a = <usize>load<i32>(job), b = <usize>load<i32>(job, 4), c = <usize>load<i32>(job, 8);
  const batch = load<i32>(job, 12), m = load<i32>(job, 16), n = load<i32>(job, 20), k = load<i32>(job, 24);
  const transA = load<i32>(job, 28) != 0, transB = load<i32>(job, 32) != 0;
  const sA = load<i32>(job, 36), sB = load<i32>(job, 40), sC = load<i32>(job, 44);
  const accumulate = load<i32>(job, 48) != 0;
  const scratch = <usize>load<i32>(job, 52) + <usize>tid * <usize>PACK_STRIDE;
  const counter = job + 56; // word 14: next chunk to claim, zeroed by the caller
  const ars = transA ? 1 : k, acs = transA ? m : 1;
  const brs = transB ? 1 : n, bcs = transB ? k : 1;
  const splitN = m == 1 || n >= m;
  // Chunk size along the split dimension: the whole range on one thread, else ~4 chunks per thread.
  const dim = splitN ? n : m, unit = m == 1 ? 16 : splitN ? 8 : 4;
  let width = dim;
  if (nth > 1) {
    const want = m == 1 ? max(512, dim / (2 * nth)) : dim / (4 * nth);
    width = min(dim, max(unit * 8, (want + unit - 1) / unit * unit));
  }
  const perMatrix = (dim + width - 1) / width;
  // With C shared by every batch entry (stride 0) a chunk covers its range in all entries, in order.
  const sharedC = sC == 0 && batch > 1;
  const total = sharedC ? perMatrix : perMatrix * batch;
  for (;;) {
    const t = nth > 1 ? atomic.add<i32>(counter, 1) : load<i32>(counter);
    if (nth == 1) store<i32>(counter, t + 1);
    if (t >= total) break;
    const ci = t % perMatrix;
    const lo = ci * width, hi = min(dim, lo + width);
    const bFirst = sharedC ? 0 : t / perMatrix, bEnd = sharedC ? batch : bFirst + 1;
    for (let bi = bFirst; bi < bEnd; bi++) {
      const pa = a + <usize>bi * <usize>sA * 4, pb = b + <usize>bi * <usize>sB * 4, pc = c + <usize>bi * <usize>sC * 4;
      if (m == 1) {
        if (transB) gemvDots(pa, pb, pc, k, lo, hi, accumulate);
        else gemvRows(pa, pb, pc, n, k, lo, hi, accumulate);
      } else if (splitN) gemmBlock(pa, ars, acs, pb, brs, bcs, pc, n, k, 0, m, lo, hi, accumulate, scratch);
      else gemmBlock(pa, ars, acs, pb, brs, bcs, pc, n, k, lo, hi, 0, n, accumulate, scratch);
    }
  }
}

/** First free byte after the module's static data (the JS glue lays out its regions from here). */
export function heapBase(): usize { return __heap_base; }
