// Disk context cache: reuse across a "restart" (a new DiskCache on the same folder), corrupt and
// truncated files are logged misses, other models never share files, the size bound evicts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync, readFileSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DiskCache } from './disk-cache-node.js';

const W = 4, U = 8;
const rowsOf = (tokens: number[]) => (a: number, b: number): Float32Array => {
  const out = new Float32Array((b - a) * W);
  for (let t = a; t < b; t++) for (let j = 0; j < W; j++) out[(t - a) * W + j] = t * 100 + tokens[t]! + j / 8;
  return out;
};
const toks = Array.from({ length: 30 }, (_, i) => (i * 7) % 50);

test('disk cache: units persist across restarts; lookups return rows from `have`', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-dc-'));
  try {
    const logs: string[] = [];
    const a = new DiskCache({ dir, modelId: 'm1', rowWidth: W, unit: U, log: (m) => logs.push(m) });
    a.save(toks, rowsOf(toks));
    assert.equal(readdirSync(dir).length, 3, 'three full 8-token units of 30 tokens');
    const b = new DiskCache({ dir, modelId: 'm1', rowWidth: W, unit: U, log: (m) => logs.push(m) });
    const r = b.lookup(toks, 29, 0)!;
    assert.equal(r.length, 24);
    assert.deepEqual(Array.from(r.rows), Array.from(rowsOf(toks)(0, 24)));
    const r2 = b.lookup(toks, 29, 10)!;
    assert.equal(r2.length, 24);
    assert.deepEqual(Array.from(r2.rows), Array.from(rowsOf(toks)(10, 24)));
    assert.equal(b.lookup(toks, 20, 16), null, 'nothing past have within maxLen');
    const other = [...toks.slice(0, 12), 49, ...toks.slice(13)];
    assert.equal(b.lookup(other, 29, 0)!.length, 8, 'diverging in unit 1 hits only unit 0');
    const c = new DiskCache({ dir, modelId: 'm2', rowWidth: W, unit: U, log: (m) => logs.push(m) });
    assert.equal(c.lookup(toks, 29, 0), null, 'another model id never hits');
    assert.deepEqual(logs, []);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('disk cache: a corrupted or truncated file is a logged miss and is removed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-dc-'));
  try {
    const logs: string[] = [];
    const a = new DiskCache({ dir, modelId: 'm', rowWidth: W, unit: U, log: (m) => logs.push(m) });
    a.save(toks, rowsOf(toks));
    // Find unit 1's file: the one whose header index is 1.
    const files = readdirSync(dir).map((f) => path.join(dir, f));
    const unit = (f: string): number => readFileSync(f).readUInt32LE(16);
    const f1 = files.find((f) => unit(f) === 1)!, f2 = files.find((f) => unit(f) === 2)!;
    const bytes = readFileSync(f1);
    bytes[bytes.length - 3]! ^= 0xff; // flip payload bits
    writeFileSync(f1, bytes);
    truncateSync(f2, 50);
    const b = new DiskCache({ dir, modelId: 'm', rowWidth: W, unit: U, log: (m) => logs.push(m) });
    const r = b.lookup(toks, 29, 0)!;
    assert.equal(r.length, 8, 'stops at the corrupt unit');
    assert.deepEqual(Array.from(r.rows), Array.from(rowsOf(toks)(0, 8)));
    assert.equal(logs.length, 1);
    assert.match(logs[0]!, /checksum mismatch/);
    assert.equal(b.lookup(toks, 29, 8), null);
    // Rewrite, then truncated unit 2 is found and reported.
    b.save(toks, rowsOf(toks));
    assert.equal(b.lookup(toks, 29, 0)!.length, 16);
    assert.match(logs[logs.length - 1]!, /truncated/);
    assert.equal(b.stats().corrupt, 2);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('disk cache: bounded size evicts least recently used files', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-dc-'));
  try {
    const fileBytes = 88 + U * W * 4;
    const a = new DiskCache({ dir, modelId: 'm', rowWidth: W, unit: U, maxBytes: 4 * fileBytes });
    a.save(toks, rowsOf(toks)); // 3 files
    const t2 = toks.map((x) => x + 1);
    a.save(t2, rowsOf(t2)); // 3 more: 6 > 4
    assert.equal(a.stats().files, 4);
    assert.ok(a.stats().bytes <= 4 * fileBytes);
    assert.equal(a.stats().evictions, 2);
    assert.equal(a.lookup(t2, 29, 0)!.length, 24, 'the newest prompt is intact');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
