// Builds the optional native CPU backend (native/, N-API C++17) with the node-gyp that npm bundles,
// using local Node headers (npm's nodedir, else the running Node's prefix; no downloads), and copies
// it to build/Release/frugal_native.node. Prints one line saying what it built or why it skipped.
// Exit 0 when skipped on purpose (FRUGAL_NATIVE=0, no compiler, no headers), 1 when a build failed;
// scripts/build.mjs treats both as optional, so `npm install` succeeds and Frugal uses wasm.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync, readdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const out = path.join(root, 'build', 'Release', 'frugal_native.node');
const say = (msg) => console.log(`[build-native] ${msg}`);

function skip(why, code = 0) { say(`skipped: ${why}; Frugal will use the wasm backend.`); process.exit(code); }

if (process.env.FRUGAL_NATIVE === '0') skip('FRUGAL_NATIVE=0');
if (!existsSync(path.join(nativeDir, 'binding.gyp'))) skip('native/binding.gyp not found');

// Up to date? (the addon is newer than every source file)
function newest(dir) {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    const s = statSync(p);
    if (s.isDirectory()) { if (name !== 'build') t = Math.max(t, newest(p)); } else t = Math.max(t, s.mtimeMs);
  }
  return t;
}
if (existsSync(out) && statSync(out).mtimeMs > Math.max(newest(nativeDir), statSync(fileURLToPath(import.meta.url)).mtimeMs) && !process.argv.includes('--force')) {
  say(`up to date: ${path.relative(root, out)}`);
  process.exit(0);
}

const cxx = process.env.CXX || (process.platform === 'win32' ? 'cl' : 'c++');
if (process.platform !== 'win32' && spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status !== 0) skip(`no C++ compiler (${cxx})`);

// node-gyp: the copy bundled with npm (next to the npm that runs us, or beside this node binary).
function findNodeGyp() {
  const cands = [];
  if (process.env.npm_config_node_gyp) cands.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) cands.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  cands.push(path.join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  cands.push(path.join(prefix, 'share', 'nodejs', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  cands.push(path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try { cands.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js')); } catch { /* not installed locally */ }
  return cands.find((p) => existsSync(p));
}
const gyp = findNodeGyp();
if (!gyp) skip('node-gyp not found (it ships with npm)');

// Headers: npm's nodedir, else the prefix of this node (Debian: /usr/include/node).
const prefix = path.resolve(path.dirname(process.execPath), '..');
const nodedir = process.env.npm_config_nodedir || (existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : '');
if (!nodedir) skip('Node headers not found locally (set npm config nodedir)');

const t0 = Date.now();
const r = spawnSync(process.execPath, [gyp, 'rebuild', `--nodedir=${nodedir}`, '--jobs=max'], {
  cwd: nativeDir, encoding: 'utf8', env: { ...process.env, npm_config_nodedir: nodedir },
});
const built = path.join(nativeDir, 'build', 'Release', 'frugal_native.node');
if (r.status !== 0 || !existsSync(built)) {
  const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => /error|Error/.test(l)).slice(0, 5).join('\n  ');
  say(`failed (node-gyp exit ${r.status}); Frugal will use the wasm backend.${tail ? '\n  ' + tail : ''}`);
  process.exit(1);
}
mkdirSync(path.dirname(out), { recursive: true });
// Copy then rename: a running process that has the old addon mapped keeps its (unlinked) file;
// overwriting it in place would crash that process.
const tmp = `${out}.${process.pid}.tmp`;
copyFileSync(built, tmp);
renameSync(tmp, out);
say(`built ${path.relative(root, out)} in ${((Date.now() - t0) / 1000).toFixed(1)} s (C++17, runtime dispatch avx512/avx2/portable)`);
