// The browser entry (src/index.ts → `frugal-lm`) is browser-safe: its import graph names no
// `node:*` module (static or dynamic: environment services come from src/backend/platform.ts), a
// standard bundler (esbuild, platform browser) bundles it into one ES module with no bare imports,
// and a real browser (Debian chromium) runs that bundle: a tiny model's forward pass on ts and on
// wasm equals Node's. Also checks the package's public surface loads and names what the README promises.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Tensor } from '../src/autograd/tensor.js';
import { noGrad } from '../src/autograd/tape.js';
import { setBackend } from '../src/backend/registry.js';
import { initParams, forward } from '../src/model/deepseek.js';
import { presets } from '../src/model/config.js';
import { browserSkip, openBrowser } from './browser.test-helper.js';
import { bundle, staticServer } from './browser-gpu.test-helper.js';

const STATIC = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function staticImports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(STATIC)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec && !/^\s*(?:import|export)\s+type\s/.test(m[0].trimStart())) out.push(spec);
  }
  return out;
}

test('browser entry reaches no node:* module through its imports (static or dynamic)', () => {
  const root = path.resolve(process.cwd(), 'src/index.ts');
  const seen = new Set<string>();
  const stack: Array<[string, string[]]> = [[root, []]];
  const offenders: string[] = [];
  while (stack.length) {
    const [file, chain] = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    for (const spec of staticImports(file)) {
      if (spec.startsWith('node:') || ['fs', 'path', 'os', 'child_process', 'worker_threads', 'http', 'crypto'].includes(spec)) {
        offenders.push(`${[...chain, path.relative(process.cwd(), file)].join(' → ')} imports ${spec}`);
        continue;
      }
      if (!spec.startsWith('.')) continue; // packages: checked by their own browser builds
      const target = path.resolve(path.dirname(file), spec.replace(/\.js$/, '.ts'));
      if (existsSync(target)) stack.push([target, [...chain, path.relative(process.cwd(), file)]]);
    }
  }
  assert.ok(seen.size > 30, `walked only ${seen.size} files`);
  assert.deepEqual(offenders, []);
});

test('public entries load and export the documented names', async () => {
  const web = await import('../src/index.js');
  for (const name of ['Tensor', 'backward', 'noGrad', 'ops', 'fp8', 'forward', 'initParams', 'parseHFConfig', 'Tokenizer', 'trainBpe', 'train', 'infer', 'cost', 'safetensors', 'useBackend']) {
    assert.ok(name in web, `frugal-lm lacks ${name}`);
  }
  assert.equal(typeof web.fp8.encode, 'function');
  assert.equal(typeof web.fp8.quantizeTiles, 'function');
  const node = await import('../src/node.js');
  for (const name of ['loadModel', 'saveModel', 'SafetensorsModel', 'loadTokenizer', 'loadCorpus', 'startServer', 'runCli']) {
    assert.ok(name in node, `frugal-lm/node lacks ${name}`);
  }
});

const skip = browserSkip();
const work = mkdtempSync(path.join(tmpdir(), 'frugal-bundle-'));
after(() => rmSync(work, { recursive: true, force: true }));
let bundled: Promise<string> | null = null;
/** The browser entry bundled by esbuild for the browser platform (fails on any node:* import). */
const entryBundle = (): Promise<string> => (bundled ??= bundle(path.resolve('src/index.ts'), path.join(work, 'frugal.js')));

test('esbuild bundles the browser entry for browsers: one ES module, no bare imports, no Node platform', async () => {
  const code = await entryBundle();
  const bare = [...code.matchAll(/^\s*(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/gm)]
    .map((m) => m[1] ?? m[2]).filter((sp) => sp && !/^(\.{0,2}\/|https?:|data:|blob:)/.test(sp));
  assert.deepEqual(bare, [], 'bare specifiers left in the bundle');
  for (const nodeOnly of ['worker_threads', 'frugal_native.node', 'createRequire']) assert.ok(!code.includes(nodeOnly), `the bundle contains Node-only code (${nodeOnly})`);
  assert.match(code, /export \{/, 'not an ES module');
});

test('the bundled entry runs in chromium: a tiny forward on ts and wasm equals Node, webgpu refuses the main thread clearly', { skip, timeout: 120_000 }, async () => {
  await entryBundle();
  const tokens = [5, 9, 2, 7, 1, 30, 11];
  const page = `<!doctype html><pre id="result"></pre><script type="module">
import * as F from '/frugal.js';
const out = {};
for (const be of ['ts', 'wasm']) {
  await F.useBackend(be);
  const p = F.initParams(F.presets.tiny, { seed: 3 });
  out[be] = Array.from(F.noGrad(() => F.forward(p, F.presets.tiny, F.Tensor.ints(${JSON.stringify(tokens)}, [1, ${tokens.length}])).logits.f32));
  out[be + 'Backend'] = F.describeBackend();
}
try { await F.useBackend('webgpu'); out.webgpu = 'started'; } catch (e) { out.webgpu = e.message; }
document.getElementById('result').textContent = JSON.stringify(out);
document.getElementById('result').dataset.done = '1';
</script>`;
  const srv = await staticServer({ '/': { body: page, type: 'text/html' }, '/frugal.js': { file: path.join(work, 'frugal.js') } });
  const b = await openBrowser();
  try {
    await b.page.goto(srv.url + '/');
    await b.page.waitForSelector('#result[data-done]', { state: 'attached', timeout: 90_000 });
    const got = JSON.parse((await b.page.textContent('#result')) ?? '{}') as Record<string, number[] | string>;
    setBackend('ts');
    const want = noGrad(() => forward(initParams(presets.tiny!, { seed: 3 }), presets.tiny!, Tensor.ints(tokens, [1, tokens.length])).logits.f32);
    for (const be of ['ts', 'wasm']) {
      const g = got[be] as number[];
      assert.equal(g.length, want.length, `${be}: logits length`);
      const d = Math.max(...g.map((x, i) => Math.abs(x - want[i]!)));
      assert.ok(d <= 1e-4, `${be} in the browser differs from Node ts by ${d}`);
    }
    assert.match(String(got.wasmBackend), /^wasm/);
    assert.match(String(got.webgpu), /main thread .*Worker|not available/, `webgpu on the main thread: ${got.webgpu}`);
  } finally { await b.close(); await srv.close(); }
});
