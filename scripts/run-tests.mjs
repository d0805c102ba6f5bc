// Finds every *.test.ts under src/ and test/ and runs them with node's test runner (through tsx).
// `node scripts/run-tests.mjs [filter]` runs only files whose path contains filter.
import { readdirSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const filter = process.argv[2] ?? '';
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) { if (name !== 'node_modules') walk(p); }
    else if (name.endsWith('.test.ts') && p.includes(filter)) files.push(path.relative(root, p));
  }
}
for (const d of ['src', 'test']) walk(path.join(root, d));
files.sort();
if (files.length === 0) { console.error('no test files matched'); process.exit(1); }
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...files], {
  cwd: root, stdio: 'inherit', env: { ...process.env, FRUGAL_QUIET: '1' },
});
process.exit(r.status ?? 1);
