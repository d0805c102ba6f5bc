// Build: TypeScript to dist/, then the optional kernel builds (each step says what it did).
// Runs on `npm install` (prepare) and before `npm test`.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
function run(cmd, args, label, optional = false) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: quiet ? 'pipe' : 'inherit', shell: false });
  if (r.status !== 0) {
    if (optional) { console.warn(`[build] ${label} skipped (exit ${r.status}); falling back.`); return false; }
    if (quiet) process.stderr.write(String(r.stdout ?? '') + String(r.stderr ?? ''));
    console.error(`[build] ${label} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  return true;
}
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(tsc)) {
  // Installed as a dependency without dev tools: dist/ ships prebuilt.
  if (existsSync(path.join(root, 'dist', 'src', 'index.js'))) process.exit(0);
  console.error('[build] typescript is not installed; run `npm install` in the repository.');
  process.exit(1);
}
// Kernel builds first (the TS code embeds or loads their outputs).
for (const step of ['build-wasm.mjs', 'build-native.mjs']) {
  const p = path.join(root, 'scripts', step);
  if (existsSync(p)) run(process.execPath, [p], step, step === 'build-native.mjs');
}
run(process.execPath, [tsc, '-p', '.'], 'tsc');
run(process.execPath, [path.join(root, 'scripts', 'build-browser.mjs'), ...(quiet ? ['--quiet'] : [])], 'build-browser.mjs');
