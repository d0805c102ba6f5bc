/** Backend registry with the `ts` reference backend registered (browser-safe). */
import { registerBackend, getBackendByName } from './registry.js';
import { tsBackend } from './ts.js';

export * from './registry.js';
export { tsBackend } from './ts.js';

if (!getBackendByName('ts')) registerBackend(tsBackend);
export * from './residency.js';
