/**
 * Deterministic input mutation for the loader fuzz tests (test/loaders-fuzz.test.ts): byte-level
 * mutations (bit flips, interesting bytes and integers, truncation, extension, splices) and
 * JSON-structure mutations (a value anywhere replaced by an extreme one, a key dropped or renamed).
 * Seeded: the same seed gives the same inputs, so a failure names a reproducible case.
 */

/** mulberry32: a small seeded PRNG. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING_U32 = [0, 1, 2, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

/** One to four byte-level mutations of `input` (never in place). */
export function mutateBytes(input: Uint8Array, r: () => number): Uint8Array {
  let b: Uint8Array = input.slice();
  const n = 1 + Math.floor(r() * 4);
  const at = (): number => Math.floor(r() * Math.max(1, b.length));
  for (let k = 0; k < n; k++) {
    switch (Math.floor(r() * 8)) {
      case 0: if (b.length) b[at()]! ^= 1 << Math.floor(r() * 8); break;
      case 1: if (b.length) b[at()] = [0, 0xff, 0x7f, 0x80, 0x22, 0x7b, 0x5d][Math.floor(r() * 7)]!; break;
      case 2: { // an interesting little-endian u32 (or u64 with a high word)
        if (b.length < 8) break;
        const p = Math.floor(r() * (b.length - 7));
        const dv = new DataView(b.buffer, b.byteOffset);
        dv.setUint32(p, INTERESTING_U32[Math.floor(r() * INTERESTING_U32.length)]!, true);
        if (r() < 0.3) dv.setUint32(p + 4, INTERESTING_U32[Math.floor(r() * INTERESTING_U32.length)]!, true);
        break;
      }
      case 3: b = b.slice(0, at()); break;
      case 4: { const extra = new Uint8Array(1 + Math.floor(r() * 64)); for (let i = 0; i < extra.length; i++) extra[i] = Math.floor(r() * 256); b = concat(b, extra); break; }
      case 5: { const s = at(), e = Math.min(b.length, s + 1 + Math.floor(r() * 32)); b = concat(concat(b.slice(0, e), b.slice(s, e)), b.slice(e)); break; }
      case 6: { const s = at(), e = Math.min(b.length, s + 1 + Math.floor(r() * 16)); b = concat(b.slice(0, s), b.slice(e)); break; }
      default: if (b.length) { const p = at(); b[p] = (b[p]! + 1 + Math.floor(r() * 3)) & 0xff; }
    }
  }
  return b;
}

function concat(a: Uint8Array, c: Uint8Array): Uint8Array {
  const o = new Uint8Array(a.length + c.length);
  o.set(a, 0);
  o.set(c, a.length);
  return o;
}

/** Values that break naive loaders: huge, negative, fractional, wrong type, deep, long. */
function extreme(r: () => number): unknown {
  const pick = [1e9, -1, 0, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 0.5, 3.5, '', 'x'.repeat(2000), '1e9', '../../../etc/passwd',
    [], {}, null, true, false, [1e9, 1e9], [2 ** 31, 2, 3], [-1, 4], { content: 1e9 }, JSON.parse('['.repeat(200) + ']'.repeat(200))];
  return structuredClone(pick[Math.floor(r() * pick.length)]);
}

/** Every [container, key] pair in a JSON value (bounded walk). */
function slots(v: unknown, out: Array<[Record<string, unknown> | unknown[], string | number]>, depth = 0): void {
  if (depth > 12 || out.length > 20000) return;
  if (Array.isArray(v)) v.forEach((x, i) => { out.push([v, i]); slots(x, out, depth + 1); });
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) { out.push([v as Record<string, unknown>, k]); slots(x, out, depth + 1); }
}

/** One to three structure-level mutations of a JSON value (a deep copy is mutated). */
export function mutateJson(value: unknown, r: () => number): unknown {
  const v = structuredClone(value);
  const n = 1 + Math.floor(r() * 3);
  for (let k = 0; k < n; k++) {
    const all: Array<[Record<string, unknown> | unknown[], string | number]> = [];
    slots(v, all);
    if (all.length === 0) break;
    // Favour shallow slots (config keys, header entries) over the bulk of a vocabulary.
    const i = r() < 0.5 ? Math.floor(r() * Math.min(all.length, 64)) : Math.floor(r() * all.length);
    const [c, key] = all[i]!;
    const op = r();
    if (op < 0.7) (c as Record<string | number, unknown>)[key] = extreme(r);
    else if (op < 0.85 && !Array.isArray(c)) delete (c as Record<string, unknown>)[key as string];
    else if (!Array.isArray(c)) { (c as Record<string, unknown>)[`${String(key)}_x`] = c[key as string]; delete (c as Record<string, unknown>)[key as string]; }
    else c.splice(key as number, 1);
  }
  return v;
}
