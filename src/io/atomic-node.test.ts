// Atomic writes: the new file appears whole; a write that fails half-way leaves the old file and
// no temp file; an existing temp-like name or a symlink at the target is never written through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { writeDataAtomic, writeFileAtomic } from './atomic-node.js';

test('writeFileAtomic: whole new file, or the old file and no leftovers after a failure', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'frugal-atomic-'));
  try {
    const f = path.join(dir, 'a.bin');
    writeFileSync(f, 'old');
    assert.equal(await writeDataAtomic(f, [Buffer.from('ne'), Buffer.from('w!')]), 4);
    assert.equal(readFileSync(f, 'utf8'), 'new!');
    await assert.rejects(writeFileAtomic(f, async (put) => { await put(Buffer.from('partial')); throw new Error('disk full (injected)'); }), /disk full/);
    assert.equal(readFileSync(f, 'utf8'), 'new!', 'a failed write keeps the previous file');
    assert.deepEqual(readdirSync(dir), ['a.bin'], 'no temp file is left behind');
    // A symlink at the target is replaced, not written through.
    const other = path.join(dir, 'other.txt');
    writeFileSync(other, 'keep');
    const link = path.join(dir, 'link');
    symlinkSync(other, link);
    await writeDataAtomic(link, 'replaced');
    assert.equal(readFileSync(other, 'utf8'), 'keep');
    assert.equal(readFileSync(link, 'utf8'), 'replaced');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
