/** Test helper shared by the safetensors tests: `fn` must reject with a named SafetensorsError. */
import assert from 'node:assert/strict';
import { SafetensorsError } from './safetensors.js';

/** Asserts that `fn` throws (or rejects with) a SafetensorsError whose message matches `re`. */
export async function rejects(fn: () => unknown, re: RegExp): Promise<void> {
  await assert.rejects(async () => fn(), (e: unknown) => {
    assert.ok(e instanceof SafetensorsError, `expected SafetensorsError, got ${String(e)}`);
    assert.match(e.message, /^safetensors: /);
    assert.match(e.message, re);
    return true;
  });
}
