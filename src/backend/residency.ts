/**
 * Device residency of host arrays: the contract that lets a device backend (webgpu) keep its copy
 * of an array across kernel calls — weights uploaded once, optimizer moments updated on the
 * device — without ever computing on a stale copy. Browser-safe.
 *
 * Contract:
 * - Only *declared* arrays may be kept on a device: `declareResident` (Tensor.param() declares a
 *   parameter's f32 data; AdamW declares its f32 moments), and views into a declared array that owns
 *   its buffer (`residentParent`: read through the parent's copy). Every other array is uploaded
 *   with each call that reads it, as before.
 * - Every host write to a declared array is announced with `hostWrote(arr, writer)` — after the
 *   write, before any kernel reads it. `tensor.version++` does it for a tensor's data (optimizer
 *   step, loaders, gradient-check perturbations, tests). Each announcement bumps the array's
 *   `residentVersion`; a device copy records the version it holds and is used only while they are
 *   equal, so a missed announcement is the one way to read a stale copy (the webgpu backend's
 *   verify mode, on in tests, turns that into an error).
 * - `writer` names the backend whose kernel made the write when that backend's device copy already
 *   holds the written values (AdamW on webgpu updates w, m, v on the device): its listener may then
 *   advance its copy to the new version; every other backend's copy goes stale. Host code passes null.
 * - A backend may keep the newest values of a declared array on its device only (webgpu's AdamW
 *   moments): it registers `markDeviceNewer(arr, holder, sync)`. Host code that reads such an array
 *   calls `syncHost(arr)` first (optim.ts does, in `state()` and before another backend's AdamW);
 *   a host write (writer ≠ holder) drops the mark — the host's values are the newest then.
 */

type Listener = (arr: Float32Array, version: number, writer: string | null) => void;

const versions = new WeakMap<Float32Array, number>();
/** Declared arrays that own their whole ArrayBuffer, by buffer: the parents of views (residentParent). */
const owners = new WeakMap<ArrayBufferLike, Float32Array>();
const newer = new WeakMap<Float32Array, { holder: string; sync: () => void }>();
const listeners = new Set<Listener>();

/** Declares `arr` resident-capable: from now on every host write to it is announced (hostWrote). */
export function declareResident(arr: Float32Array): void {
  if (!versions.has(arr)) versions.set(arr, 0);
  if (arr.byteOffset === 0 && arr.byteLength === arr.buffer.byteLength) owners.set(arr.buffer, arr);
}

/**
 * For a view into a declared array that owns its buffer (a weight block read in place, e.g. W_UV
 * inside kv_b_proj): that array and the view's offset in elements; undefined otherwise. The view is
 * covered by its parent's announcements (a write through any view must announce the parent).
 */
export function residentParent(view: Float32Array): { parent: Float32Array; offset: number } | undefined {
  const parent = owners.get(view.buffer);
  if (!parent || parent === view) return undefined;
  return { parent, offset: view.byteOffset / 4 };
}

/** The array's write version, or undefined when it is not declared (then it must not be kept on a device). */
export function residentVersion(arr: Float32Array): number | undefined { return versions.get(arr); }

/** Announces a write to `arr` (see the contract); a no-op for undeclared arrays. */
export function hostWrote(arr: Float32Array, writer: string | null = null): void {
  const v = versions.get(arr);
  if (v === undefined) return;
  versions.set(arr, v + 1);
  const n = newer.get(arr);
  if (n && n.holder !== writer) newer.delete(arr);
  for (const l of listeners) l(arr, v + 1, writer);
}

/** Subscribes a backend to write announcements; returns the unsubscribe function. */
export function onHostWrite(l: Listener): () => void {
  listeners.add(l);
  return () => { listeners.delete(l); };
}

/** Records that `holder`'s device has newer values of `arr` than the host; `sync` copies them back. */
export function markDeviceNewer(arr: Float32Array, holder: string, sync: () => void): void {
  newer.set(arr, { holder, sync });
}

/** Whether `arr`'s newest values live on a device (its host copy is stale until syncHost). */
export function isDeviceNewer(arr: Float32Array): boolean { return newer.has(arr); }

/**
 * Brings `arr`'s host copy up to date when a device holds newer values — unless that device's
 * backend is `unless` (the backend about to run a kernel on it, which reads its own copy).
 */
export function syncHost(arr: Float32Array, unless: string | null = null): void {
  const n = newer.get(arr);
  if (!n || n.holder === unless) return;
  n.sync();
  newer.delete(arr);
}
