/**
 * The GPU thread of the `webgpu` backend, as plain JavaScript source (it runs in a Worker: a Blob
 * Worker in browsers, a worker_threads eval in Node with Dawn from the `webgpu` package; see
 * platform.ts). It owns the GPUDevice and executes *jobs* the engine thread describes, while the
 * engine thread blocks in Atomics.wait — that is how synchronous kernels run on an asynchronous API.
 *
 * Contract (the protocol index.ts speaks):
 * - Shared memory: `ctrl` (Int32Array over a SharedArrayBuffer: [0] status 0 busy / 1 ok / 2 error,
 *   [1] byte length of the reply text), `msg` (Uint8Array, the reply text: info JSON or the error),
 *   `arena` (the data area jobs read inputs from and write outputs into, 4-byte words).
 * - Messages: {op:'init', shaders:{name: wgsl}} compiles every pipeline and replies with the
 *   adapter's info, limits and features; {op:'arena', arena} replaces the data area;
 *   {op:'run', roles, passes} uploads the roles marked `up` from the arena (or clears those marked
 *   `zero`), runs the passes in one submission (one uniform block each, bindings in role order,
 *   the uniform last), copies the roles marked `down` back into the arena, then replies.
 * - Every job runs inside validation and out-of-memory error scopes; a GPU error, a lost device or
 *   an exception becomes status 2 with its message — never a hang.
 * - Buffers are kept per role name and only grow, so steady-state steps allocate nothing.
 *   Roles marked `keep` are resident copies (named `res:<id>`): one not uploaded must already exist
 *   (an error otherwise, never a zero buffer); `free` in a run message lists resident buffers to destroy.
 */
export const GPU_THREAD_SOURCE = String.raw`
function main(init, api) {
  const ctrl = new Int32Array(init.ctrl);
  const msg = new Uint8Array(init.msg);
  let arena = init.arena;
  let device = null, lost = '', disposing = false;
  const pipes = new Map(), buffers = new Map(), uniforms = [];
  let staging = null;
  const enc = new TextEncoder();
  const reply = (status, text) => {
    const bytes = enc.encode(text || '');
    const n = Math.min(bytes.length, msg.length);
    msg.set(bytes.subarray(0, n));
    Atomics.store(ctrl, 1, n);
    Atomics.store(ctrl, 0, status);
    Atomics.notify(ctrl, 0);
  };
  const U = () => globalThis.GPUBufferUsage;

  async function init_(m) {
    const gpu = await api.gpu();
    if (!gpu) throw new Error(api.gpuReason() || 'no WebGPU');
    let adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    let software = false;
    // No hardware adapter: a software one (SwiftShader, lavapipe) is offered only as the fallback.
    if (!adapter) { adapter = await gpu.requestAdapter({ forceFallbackAdapter: true }); software = !!adapter; }
    if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null: no WebGPU adapter (no GPU driver, or WebGPU disabled)');
    const L = adapter.limits;
    const want = ['minStorageBufferOffsetAlignment', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxStorageBuffersPerShaderStage', 'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY'];
    const requiredLimits = {};
    for (const k of want) requiredLimits[k] = L[k];
    const requiredFeatures = [];
    if (adapter.features.has('shader-f16')) requiredFeatures.push('shader-f16');
    if (adapter.features.has('subgroups')) requiredFeatures.push('subgroups');
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    // Not read while disposing: Dawn (node) aborts the process when the lost info is read as the worker ends.
    device.lost.then((info) => { if (!disposing) lost = 'WebGPU device lost: ' + (info.message || info.reason); });
    device.pushErrorScope('validation');
    for (const [name, code] of Object.entries(m.shaders)) {
      const module = device.createShaderModule({ code, label: name });
      const ci = await module.getCompilationInfo();
      const errs = ci.messages.filter((x) => x.type === 'error');
      if (errs.length) throw new Error('WGSL ' + name + ': ' + errs.map((x) => x.lineNum + ':' + x.linePos + ' ' + x.message).join('; '));
      pipes.set(name, await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: name }));
    }
    const err = await device.popErrorScope();
    if (err) throw new Error('pipeline creation: ' + err.message);
    const info = adapter.info || {};
    const limits = {};
    for (const k of want) limits[k] = device.limits[k];
    return JSON.stringify({ vendor: info.vendor || '', architecture: info.architecture || '', description: info.description || '', device: info.device || '',
      features: [...adapter.features], enabled: requiredFeatures, limits, software });
  }

  function buffer(role, bytes) {
    let b = buffers.get(role);
    if (b && b.size >= bytes) return b;
    if (b) b.destroy();
    const size = Math.max(256, Math.ceil(bytes * 1.25 / 256) * 256);
    b = device.createBuffer({ size, usage: U().STORAGE | U().COPY_DST | U().COPY_SRC, label: role });
    buffers.set(role, b);
    return b;
  }

  async function run_(m) {
    if (!device) throw new Error('webgpu thread: run before init');
    if (lost) throw new Error(lost);
    const words = new Uint32Array(arena);
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    const roles = m.roles;
    for (const name of m.free || []) { const b = buffers.get(name); if (b) { b.destroy(); buffers.delete(name); } }
    const encoder = device.createCommandEncoder();
    for (const [name, r] of Object.entries(roles)) {
      const bytes = Math.max(4, r.len * 4);
      if (r.keep && !r.up && !r.zero && !buffers.has(name)) throw new Error('webgpu thread: resident buffer ' + name + ' is missing (its copy was never uploaded)');
      const b = buffer(name, bytes);
      // A copy out of the shared arena: Dawn (node) crashes on SharedArrayBuffer-backed sources.
      if (r.up && r.len > 0) device.queue.writeBuffer(b, 0, words.slice(r.off, r.off + r.len));
      else if (r.zero) encoder.clearBuffer(b, 0, Math.ceil(bytes / 4) * 4);
    }
    const params = new Uint32Array(64);
    for (let i = 0; i < m.passes.length; i++) {
      const p = m.passes[i];
      if (!uniforms[i]) uniforms[i] = device.createBuffer({ size: 256, usage: U().UNIFORM | U().COPY_DST });
      params.fill(0);
      params.set(p.params);
      device.queue.writeBuffer(uniforms[i], 0, params);
      const pipe = pipes.get(p.pipe);
      if (!pipe) throw new Error('webgpu thread: no pipeline ' + p.pipe);
      const entries = p.binds.map((role, j) => {
        const w = p.win && p.win[j];
        return { binding: j, resource: w ? { buffer: buffers.get(role), offset: w[0], size: w[1] } : { buffer: buffers.get(role) } };
      });
      entries.push({ binding: p.binds.length, resource: { buffer: uniforms[i] } });
      const group = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
      const pass = encoder.beginComputePass();
      pass.setPipeline(pipe);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(p.groups[0], p.groups[1] || 1, p.groups[2] || 1);
      pass.end();
    }
    let total = 0;
    const downs = [];
    for (const [name, r] of Object.entries(roles)) if (r.down && r.len > 0) { downs.push([name, r, total]); total += r.len * 4; }
    if (total > 0) {
      if (!staging || staging.size < total) {
        if (staging) staging.destroy();
        staging = device.createBuffer({ size: Math.ceil(total * 1.25 / 256) * 256, usage: U().MAP_READ | U().COPY_DST, label: 'staging' });
      }
      for (const [name, r, at] of downs) encoder.copyBufferToBuffer(buffers.get(name), 0, staging, at, r.len * 4);
    }
    device.queue.submit([encoder.finish()]);
    const verr = await device.popErrorScope();
    const oerr = await device.popErrorScope();
    if (verr) throw new Error('WebGPU validation error: ' + verr.message);
    if (oerr) throw new Error('WebGPU out of memory: ' + oerr.message);
    if (total > 0) {
      await staging.mapAsync(U().MAP_READ, 0, total);
      const got = new Uint32Array(staging.getMappedRange(0, total));
      for (const [, r, at] of downs) words.set(got.subarray(at / 4, at / 4 + r.len), r.off);
      staging.unmap();
    } else {
      await device.queue.onSubmittedWorkDone();
    }
    if (lost) throw new Error(lost);
    return '';
  }

  let chain = Promise.resolve();
  api.onMessage((m) => {
    chain = chain.then(async () => {
      try {
        if (m.op === 'init') reply(1, await init_(m));
        else if (m.op === 'arena') { arena = m.arena; reply(1, ''); }
        else if (m.op === 'run') reply(1, await run_(m));
        else if (m.op === 'dispose') {
          disposing = true;
          for (const b of buffers.values()) b.destroy();
          buffers.clear();
          const d = device;
          device = null;
          // Let the lost promise settle before the engine thread terminates this worker.
          if (d) { d.destroy(); await Promise.race([d.lost, new Promise((r) => setTimeout(r, 1000))]); }
          reply(1, '');
        }
        else reply(2, 'webgpu thread: unknown op ' + m.op);
      } catch (e) {
        reply(2, (e && e.message) || String(e));
      }
    });
  });
  api.ready();
}
`;
