import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from './tokenizer.js';
import { UsageError } from './main.js';

/** Runs the verb, returning its exit code and what it printed with console.log. */
async function capture(argv: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => { lines.push(a.join(' ')); };
  try {
    return { code: await run(argv), out: lines.join('\n') };
  } finally {
    console.log = log;
  }
}

test('frugal tokenizer train / encode / decode', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'frugal-tokcli-'));
  try {
    const data = join(dir, 'data.jsonl');
    const docs = Array.from({ length: 20 }, (_, i) => ({ text: `Document ${i}: the union is strong and the people are free. `.repeat(5) }));
    await writeFile(data, docs.map((d) => JSON.stringify(d)).join('\n'));
    const out = join(dir, 'tok');
    const r = await capture(['train', '--data', data, '--vocab', '300', '--out', out]);
    assert.equal(r.code, 0);
    assert.match(r.out, /20 documents; training on 18 .* 2 held out/);
    const bpt = Number(/compression on validation text: ([\d.]+) bytes\/token/.exec(r.out)?.[1]);
    assert.ok(bpt > 2, `bytes/token ${bpt}`);
    const config = JSON.parse(await readFile(join(out, 'tokenizer_config.json'), 'utf8'));
    assert.equal(config.eos_token, '<|endoftext|>');
    const json = JSON.parse(await readFile(join(out, 'tokenizer.json'), 'utf8'));
    assert.equal(Object.keys(json.model.vocab).length, 300);

    const enc = await capture(['encode', '--tokenizer', out, '--text', 'the union 🤗']);
    const ids = enc.out.split(',').map(Number);
    assert.ok(ids.length >= 3 && ids.every((id) => Number.isInteger(id) && id < 300), enc.out);
    let written = '';
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => { written += s; return true; }) as typeof process.stdout.write;
    try {
      assert.equal(await run(['decode', '--tokenizer', out, '--ids', ids.join(',')]), 0);
    } finally {
      process.stdout.write = write;
    }
    assert.equal(written, 'the union 🤗\n');

    await assert.rejects(run(['train', '--data', data, '--vocab', '10', '--out', out]), UsageError);
    await assert.rejects(run(['decode', '--tokenizer', out, '--ids', '1,-2']), /not a non-negative integer/);
    await assert.rejects(run(['frobnicate']), /unknown subcommand/);
    assert.match((await capture(['train', '--help'])).out, /usage: frugal tokenizer train/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
