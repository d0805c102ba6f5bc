// Browser bundles (esbuild): dist/browser/frugal.js — the browser entry (src/index.ts) as one ES
// module with no bare imports, for <script type="module"> or `import` from a page — and the
// `frugal web` page's scripts (src/web/lab.ts, src/web/lab-worker.ts). Bundled for the browser
// platform: a `node:*` module reached from these entries fails the build, naming the chain.
// Skipped (with a note) where esbuild is not installed: a registry install ships dist/browser.
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'browser');
let esbuild;
try {
  esbuild = await import(pathToFileURL(createRequire(path.join(root, 'package.json')).resolve('esbuild')).href);
} catch {
  if (existsSync(path.join(out, 'frugal.js'))) process.exit(0);
  console.warn('[build] esbuild is not installed: browser bundles skipped (npm install in the repository builds them)');
  process.exit(0);
}

/** Entries: output name → source. */
const ENTRIES = { frugal: 'src/index.ts', lab: 'src/web/lab.ts', 'lab-worker': 'src/web/lab-worker.ts' };

/** Bare (package) specifiers left in a bundle (import/export statements start a line in esbuild's output). */
function bareImports(code) {
  const found = new Set();
  const re = /^\s*(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm;
  for (const m of code.matchAll(re)) {
    const spec = m[1] ?? m[2];
    if (spec && !/^(\.{0,2}\/|https?:|data:|blob:)/.test(spec)) found.add(spec);
  }
  return [...found];
}

mkdirSync(out, { recursive: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([k, v]) => [k, path.join(root, v)])),
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'error',
  metafile: true,
});
for (const name of Object.keys(ENTRIES)) {
  const code = readFileSync(path.join(out, `${name}.js`), 'utf8');
  const bare = bareImports(code);
  if (bare.length) { console.error(`[build] dist/browser/${name}.js still imports ${bare.join(', ')}: a browser cannot resolve bare specifiers`); process.exit(1); }
}
const size = (n) => (result.metafile.outputs[path.relative(root, path.join(out, `${n}.js`)).split(path.sep).join('/')]?.bytes ?? 0) / 1024;
if (!process.argv.includes('--quiet')) console.log(`[build] browser bundles: ${Object.keys(ENTRIES).map((n) => `dist/browser/${n}.js (${size(n).toFixed(0)} kB)`).join(', ')}`);
