// The layering of docs/ARCHITECTURE.md, enforced: every import in src/ points to its own folder or
// to a lower layer (backend < autograd < ops < fp8 < io < model < cost/infer/train < serve < cli;
// src/errors.ts is importable from anywhere, the two entries import anything, the CLI may run
// bench/). Siblings of one
// layer (cost, infer, train) do not import each other. Tests are exempt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const RANK: Record<string, number> = { backend: 0, autograd: 1, ops: 2, fp8: 3, io: 4, model: 5, cost: 6, infer: 6, train: 6, serve: 7, web: 7, cli: 8 };
const src = path.resolve(process.cwd(), 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? files(p) : /\.ts$/.test(n) && !/\.test\.ts$/.test(n) ? [p] : [];
  });
}
/** The top-level folder of a path under src/ ('' for files directly in src/). */
const layerOf = (p: string): string => { const rel = path.relative(src, p).split(path.sep); return rel.length > 1 ? rel[0]! : ''; };

test('imports in src/ point to the same folder or a lower layer', () => {
  const bad: string[] = [];
  let checked = 0;
  for (const f of files(src)) {
    const from = layerOf(f);
    if (from === '') continue; // src/index.ts, src/node.ts, src/errors.ts
    for (const m of readFileSync(f, 'utf8').matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = path.resolve(path.dirname(f), m[1]!);
      const to = layerOf(target);
      checked++;
      if (to === from || (to === '' && path.basename(target) === 'errors.js')) continue;
      if (path.relative(src, target).startsWith('..') && from === 'cli') continue; // the bench verb runs bench/

      if (!(to in RANK) || !(RANK[to]! < RANK[from]!)) bad.push(`${path.relative(src, f)} imports ${m[1]} (${from} -> ${to || path.basename(target)})`);
    }
  }
  assert.ok(checked > 200, `only ${checked} imports found: the scan is broken`);
  assert.deepEqual(bad, [], `upward or sideways imports:\n${bad.join('\n')}`);
});
