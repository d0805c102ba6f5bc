// The browser entry (src/index.ts → `frugal-lm`) must not reach any `node:*` module through its
// static imports; dynamic `import()` is allowed only for Node-only helpers loaded behind a check.
// Also checks the package's public surface loads and names what the README promises.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

const STATIC = /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g;

function staticImports(file: string): string[] {
  const src = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of src.matchAll(STATIC)) {
    const spec = m[1] ?? m[2];
    if (spec && !/^\s*(?:import|export)\s+type\s/.test(m[0].trimStart())) out.push(spec);
  }
  return out;
}

test('browser entry reaches no node:* module through static imports', () => {
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
