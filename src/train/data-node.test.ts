import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK_CHARS, loadCorpus } from './data-node.js';

test('loadCorpus: bundled State of the Union corpus by default', async () => {
  const c = await loadCorpus();
  assert.equal(c.name, 'sotu');
  assert.ok(c.documents.length > 200, `${c.documents.length} documents`);
  const chars = c.documents.reduce((n, d) => n + d.length, 0);
  assert.ok(chars > 10e6 && chars < 12e6, `${chars} chars`);
  assert.match(c.documents[0]!, /Fellow-Citizens of the Senate/i); // Washington, 1790
  assert.equal((await loadCorpus('sotu')).documents.length, c.documents.length);
});

test('loadCorpus: txt, folder, jsonl and their errors', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'frugal-corpus-'));
  try {
    const small = join(dir, 'small.txt');
    await writeFile(small, 'one small document\n');
    assert.deepEqual(await loadCorpus(small), { name: 'small.txt', documents: ['one small document\n'] });

    // A large file is cut on paragraph boundaries and reassembles exactly.
    const para = 'A paragraph of plain text that goes on for a while. '.repeat(20) + '\n\n';
    const big = para.repeat(Math.ceil((600 * 1024) / para.length));
    await writeFile(join(dir, 'big.txt'), big);
    const chunks = (await loadCorpus(join(dir, 'big.txt'))).documents;
    assert.ok(chunks.length >= 5 && chunks.length <= 10, `${chunks.length} chunks`);
    assert.equal(chunks.join(''), big);
    assert.ok(chunks.slice(0, -1).every((c) => c.endsWith('\n\n') && c.length >= CHUNK_CHARS));

    const folder = join(dir, 'folder');
    await mkdir(join(folder, 'sub'), { recursive: true });
    await writeFile(join(folder, 'b.txt'), 'bee');
    await writeFile(join(folder, 'sub', 'a.txt'), 'ay');
    await writeFile(join(folder, 'skip.md'), 'not read');
    await writeFile(join(folder, '.hidden.txt'), 'not read');
    assert.deepEqual((await loadCorpus(folder)).documents, ['bee', 'ay']);
    await assert.rejects(loadCorpus(join(dir, 'folder', 'sub', 'none')), /not found/);

    const jsonl = join(dir, 'data.jsonl');
    await writeFile(jsonl, '{"text": "first"}\n\n{"text": "second", "id": 2}\n');
    assert.deepEqual((await loadCorpus(jsonl)).documents, ['first', 'second']);
    await writeFile(jsonl, '{"text": "first"}\n{"text": oops}\n');
    await assert.rejects(loadCorpus(jsonl), /data\.jsonl line 2 is not valid JSON/);
    await writeFile(jsonl, '{"text": "first"}\n{"body": "x"}\n');
    await assert.rejects(loadCorpus(jsonl), /line 2 has no string "text" field/);

    await writeFile(join(dir, 'bin.dat'), Buffer.from([1, 0, 2, 3]));
    await assert.rejects(loadCorpus(join(dir, 'bin.dat')), /binary/);
    await mkdir(join(dir, 'empty'));
    await assert.rejects(loadCorpus(join(dir, 'empty')), /no \.txt files/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
