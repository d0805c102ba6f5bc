// Fault injection: proves the test suite fails when the product breaks. Each fault is a small edit
// to a scratch copy of the code (a git worktree of HEAD beside this checkout, so ../shared is the
// same); the tests named for it must then FAIL. Opt-in (minutes, not part of `npm test`):
//
//   node scripts/check-faults.mjs            # every fault
//   node scripts/check-faults.mjs nan-grad   # faults whose id contains the filter
//
// Exit 0 when every fault was caught, 1 when one passed the suite (a hole in the tests), 2 when a
// fault no longer applies (its target text moved: update the fault, not the tests).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, rmSync, symlinkSync, cpSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const scratch = path.join(root, '..', `.frugal-faults-${process.pid}`);
const filter = process.argv[2] ?? '';
const ALL = 'FRUGAL_EXPECT_BACKENDS=ts,wasm,native FRUGAL_EXPECT_DEFAULT=native';

/** id, what it breaks, edits [file, find, replace], test files, extra env (`env`), native rebuild. */
const FAULTS = [
  { id: 'server-garbage-text', what: 'every generated token\'s text replaced by "garbage" in the server',
    edits: [['src/serve/server.ts', 'const emit = (s: string): void => { if (!s) return;', "const emit = (s: string): void => { if (!s) return; s = 'garbage';"]],
    tests: ['test/serve.test.ts', 'test/serve-openai.test.ts'] },
  { id: 'server-prompt-tokens', what: 'usage.prompt_tokens off by one',
    edits: [['src/serve/server.ts', 'const u = usage(ids.length,', 'const u = usage(ids.length + 1,']],
    tests: ['test/serve.test.ts', 'test/serve-openai.test.ts'] },
  { id: 'server-no-cancel', what: 'a client that disconnects no longer cancels its generation',
    edits: [['src/serve/server.ts', "res.on('close', () => { if (!res.writableFinished) { job.cancelled = true; sched.cancel(seq); } });", "res.on('close', () => {});"]],
    tests: ['test/serve.test.ts', 'test/serve-batch.test.ts'] },
  { id: 'server-no-queue-limit', what: 'the queue limit is never enforced (no 429)',
    edits: [['src/serve/server.ts', 'if (maxQueue > 0 && queued >= maxQueue) {', 'if (maxQueue > 0 && queued < 0) {']],
    tests: ['test/serve.test.ts'] },
  { id: 'batch-not-row-exact', what: 'native decode passes carry 64 rows (past the few-row kernels: rows no longer computed as alone)',
    edits: [['src/infer/scheduler.ts', "backend === 'native' ? 8 : 1", "backend === 'native' ? 64 : 1"]],
    tests: ['src/infer/scheduler.test.ts'] },
  { id: 'batch-logits-offset', what: 'every row of a batched decode pass samples from the first row\'s logits',
    edits: [['src/infer/scheduler.ts', 'decoding[i]!.gen!.takeLogits(logits, i * V)', 'decoding[i]!.gen!.takeLogits(logits, 0)']],
    tests: ['src/infer/scheduler.test.ts', 'test/serve-batch.test.ts'] },
  { id: 'prefill-logits-row', what: 'a prompt that ends in a mixed pass samples its first token from the pass\'s first logits row (a decode row\'s)',
    edits: [['src/infer/scheduler.ts', 'p.at >= 0 ? logits : null, Math.max(0, p.at) * V', 'p.at >= 0 ? logits : null, 0']],
    tests: ['src/infer/row-prefill.test.ts', 'src/infer/scheduler.test.ts'] },
  { id: 'prefill-chunk-position', what: 'engine prompt rows after the first chunk are written one position late',
    edits: [['src/infer/generate.ts', "return { tokens: this.prompt.slice(s, e), seg: { cache: this.cache, start: s, rows: e - s }, last: e === P };", "return { tokens: this.prompt.slice(s, e), seg: { cache: this.cache, start: s > this.prefillFrom ? s + 1 : s, rows: e - s }, last: e === P };"]],
    tests: ['src/infer/row-prefill.test.ts'] },
  { id: 'cancel-keeps-blocks', what: 'a finished or cancelled sequence keeps its KV blocks',
    edits: [['src/infer/scheduler.ts', '    this.lease?.release();\n', '']],
    tests: ['src/infer/scheduler.test.ts', 'test/serve-batch.test.ts'] },
  { id: 'kv-overcommit', what: 'the KV pool admits past its reservations (memory no longer bounded)',
    edits: [['src/infer/kv-blocks.ts', 'if (!this.fits(tokens) || this.reserved + need > this.totalBlocks) return null;', 'if (!this.fits(tokens)) return null;']],
    tests: ['src/infer/scheduler.test.ts', 'test/serve-batch.test.ts'] },
  { id: 'nan-grad', what: 'sqrt backward returns NaN for inputs above 1.2',
    edits: [['src/ops/elementwise.ts', "unary('Sqrt', x, Math.sqrt, (_v, y) => 0.5 / y)", "unary('Sqrt', x, Math.sqrt, (_v, y) => (y > 1.2 ? NaN : 0.5 / y))"]],
    tests: ['src/ops/ops.test.ts'] },
  { id: 'duplicate-expert', what: 'top-k routing picks its first expert twice',
    edits: [['src/model/deepseek.ts', '      ids[n * k + r] = best;\n      b[best] = -Infinity;', '      ids[n * k + r] = best;\n      if (r > 0) b[best] = -Infinity;']],
    tests: ['test/reference.test.ts', 'test/model-v2.test.ts'] },
  { id: 'v2-group-score', what: 'V2 groups ranked by top-2 sums instead of their max',
    edits: [['src/model/deepseek.ts', 'gs[g] = bias ? m1 + m2 : m1;', 'gs[g] = m1 + m2;']],
    tests: ['test/model-v2.test.ts'] },
  { id: 'dropped-gradient-name', what: 'the shared experts vanish from the parameter names',
    edits: [['src/model/deepseek.ts', '      if (l.moe.shared) mlp(`${pre}.mlp.shared_experts`, l.moe.shared);', '']],
    tests: ['test/reference.test.ts'] },
  { id: 'native-only-attention', what: 'the native backend\'s fused attention scale off by 0.1% (ts/wasm untouched)',
    edits: [['src/backend/native-node.ts', 'lib.attentionForward!(q, k, v, out, g.B, g.T, g.S, g.H, g.KH, g.Dk, g.Dv, g.ldk, g.ldv, g.scale)', 'lib.attentionForward!(q, k, v, out, g.B, g.T, g.S, g.H, g.KH, g.Dk, g.Dv, g.ldk, g.ldv, g.scale * 1.001)']],
    tests: ['test/reference.test.ts'] },
  { id: 'recycle-live-gradient', what: 'the tape recycles a gradient its backward passed on to an input (a live array reused)',
    edits: [['src/autograd/tape.ts', '    if (own && !passedOn) recycleF32(g);', '    if (own) recycleF32(g);']],
    tests: ['test/train-backends.test.ts'] },
  { id: 'native-moe-gate-grad', what: 'the grouped MoE kernel drops the gate-weight gradient of every second slot (native only)',
    edits: [['native/src/moe_ffn.cc', '        d.gradW[s] = dot(go, a.y + (t.r0 + i) * H, H);', '        d.gradW[s] = (s % 2) ? 0.f : dot(go, a.y + (t.r0 + i) * H, H);']],
    tests: ['src/ops/moe.test.ts', 'test/train-backends.test.ts'], rebuild: true },
  { id: 'native-gemm-pack-bt', what: 'the f32 GEMM\'s transposed-B packing drops the last column of every 32-wide panel\'s second half (native, AVX-512)',
    edits: [['native/src/gemm_f32.cc', 'const int rows = (int)std::max<long>(0, std::min<long>(16, nc - jr - 16 * h));', 'const int rows = (int)std::max<long>(0, std::min<long>(h ? 15 : 16, nc - jr - 16 * h));']],
    tests: ['src/backend/native.test.ts'], rebuild: true },
  { id: 'native-gemm-pack-tail', what: 'the f32 GEMM\'s transposing packer (A panels and Bᵀ panels) leaves the last k of a tail shorter than 16 unpacked (native, AVX-512)',
    edits: [['native/src/gemm_f32.cc', 'const int w = (int)std::min<long>(16, kc - p0);', 'const int w = (int)std::min<long>(16, kc - p0 - (kc - p0 < 16));']],
    tests: ['src/backend/native.test.ts'], rebuild: true },
  { id: 'native-attention-softmax-grad', what: 'the attention backward\'s softmax-gradient row sums P·dP over whole 16-lane chunks only (tail dropped; native, AVX-512)',
    edits: [['native/src/attention.cc', 'acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, p + j), _mm512_maskz_loadu_ps(mk, d + j), acc);', 'if (mk == 0xFFFF) acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, p + j), _mm512_maskz_loadu_ps(mk, d + j), acc);']],
    tests: ['src/ops/attention.test.ts'], rebuild: true },
  { id: 'native-moe-fused-h', what: 'the grouped MoE backward\'s fused SwiGLU pass hands the down projection silu(g) without ·u (native, AVX-512)',
    edits: [['native/src/moe_ffn.cc', 'if (h) _mm512_mask_storeu_ps(h + i, mk, _mm512_mul_ps(_mm512_mul_ps(z, s), _mm512_maskz_loadu_ps(mk, u + i)));', 'if (h) _mm512_mask_storeu_ps(h + i, mk, _mm512_mul_ps(z, s));']],
    tests: ['src/ops/moe.test.ts'], rebuild: true },
  { id: 'inference-recycles-stream', what: 'an inference forward hands its live residual stream back to the allocation pool (dense and DeepSeek)',
    edits: [['src/model/dense.ts', '    op.addInPlace(h, y);\n    dead(y);', '    op.addInPlace(h, y);\n    dead(y, h);'],
      ['src/model/deepseek.ts', '    recycleF32(y.f32); recycleF32(x.f32);', '    recycleF32(y.f32); recycleF32(x.f32); recycleF32(h.f32);']],
    tests: ['test/inference-reuse.test.ts'] },
  { id: 'native-attention-mask-tail', what: 'the native attention softmax leaves the first 16 masked keys of a row unzeroed (future tokens leak)',
    edits: [['native/src/attention.cc', '  for (long j = L; j < ld; j += 16) _mm512_mask_storeu_ps(p + j, tailMask(ld - j), _mm512_setzero_ps());', '  for (long j = L + 16; j < ld; j += 16) _mm512_mask_storeu_ps(p + j, tailMask(ld - j), _mm512_setzero_ps());']],
    tests: ['test/backends.test.ts'], rebuild: true },
  { id: 'ue8m0-ignored', what: 'ue8m0 scales no longer rounded up to powers of two',
    edits: [['src/fp8/quant.ts', "if (scaleFmt === 'ue8m0') return pow2Ceil(s);", "if (scaleFmt === 'ue8m0') return s;"]],
    tests: ['test/reference.test.ts'] },
  { id: 'wasm-fails', what: 'the wasm backend cannot start (backends.test would have compared nothing)',
    edits: [['src/backend/setup.ts', '  const b = await createWasmBackend(threads === undefined ? {} : { threads });', "  throw new Error('injected');\n  const b = await createWasmBackend(threads === undefined ? {} : { threads });"]],
    tests: ['test/backends.test.ts'] },
  { id: 'upward-import', what: 'the server imports from the CLI layer again',
    edits: [['src/serve/model-node.ts', "import { UsageError } from '../errors.js';", "import { UsageError } from '../cli/main.js';"]],
    tests: ['test/layers.test.ts'] },
  { id: 'native-build-fails', what: 'the native addon does not compile (npm install still succeeds)',
    edits: [['native/src/addon.cc', '#include <malloc.h>', '#include <malloc.h>\n#error injected build failure']],
    tests: ['test/backends.test.ts'], rebuild: true },
  { id: 'native-leak', what: 'the native AddInto kernel leaks 256 KB per call',
    edits: [['native/src/addon.cc', '#include <malloc.h>', '#include <malloc.h>\n#include <cstring>\nstatic void leak() { static void* volatile sink; sink = std::malloc(262144); std::memset(sink, 1, 262144); }'],
      ['native/src/addon.cc', 'napi_value AddInto(napi_env env, napi_callback_info info) {', 'napi_value AddInto(napi_env env, napi_callback_info info) {\n  leak();']],
    tests: ['test/memory.test.ts'], rebuild: true },
  { id: 'engine-query-rope', what: 'the decode engine ropes every query at the first row\'s position',
    edits: [['native/src/decode_engine.cc', 'rotate(qh + dn, dst + rkv, cs + (from + r2) * half, sn + (from + r2) * half, half);', 'rotate(qh + dn, dst + rkv, cs + from * half, sn + from * half, half);']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'engine-row-coupling', what: 'the decode engine\'s 2-row products read the first row\'s input for both rows',
    edits: [['native/src/decode_gemv.cc', 'for (int r = 0; r < R; r++) xv[r] = _mm512_maskz_loadu_ps(mk, x.x + r * x.ldx + p);', 'for (int r = 0; r < R; r++) xv[r] = _mm512_maskz_loadu_ps(mk, x.x + (R == 2 ? 0 : r) * x.ldx + p);']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'spec-chain-rope', what: 'every chained draft after the first ropes its MTP row at the first chained position',
    edits: [['native/src/decode_engine.cc', 'chainCs + (k - 1) * half, chainSn + (k - 1) * half', 'chainCs, chainSn']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'spec-loop-reject', what: 'the engine\'s speculative loop keeps the rejected drafts\' cache rows (advances K + 1 positions after any rejection)',
    edits: [['native/src/decode_engine.cc', 'st[0] = picks[K + j]; st[1] = n + j + 1;', 'st[0] = picks[K + j]; st[1] = n + K + 1;']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'draft-window-ignored', what: 'the speculative loop\'s drafts attend over the whole context whatever the draft window',
    edits: [['native/src/decode_engine.cc', '    wd.window = draftWindow;\n', '    wd.window = 0;\n']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'team-share', what: 'in a team pass, every member after the first leaves the last 16 columns of its share unwritten',
    edits: [['native/src/decode_engine.cc', 'j1 = std::min(n, units * (tid + 1) / nt * 16);', 'j1 = std::min(n, units * (tid + 1) / nt * 16 - (tid > 0 ? 16 : 0));']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'attn-query-length', what: 'queries sharing a key sweep also sum the values of keys past their own length',
    edits: [['native/src/decode_attn.cc', '        if (j >= qs[i].L) continue;\n', '']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'draft-head-offset', what: 'the int8 draft head forgets the uint8 input\'s offset correction (−128·Σw)',
    edits: [['native/src/draft_head.cc', '    acc = _mm512_sub_epi32(acc, _mm512_mullo_epi32(off, _mm512_loadu_si512((const void*)(h.sum.data() + b * 16))));\n', '']],
    tests: ['src/model/decode-engine.test.ts'], rebuild: true },
  { id: 'sampler-signed-zero', what: 'the sampler\'s radix sort orders −0 below +0 (the comparator sort ties them by id)',
    edits: [['src/infer/sampling.ts', 'if (u === 0x80000000) u = 0;  // −0 ties with +0', '']],
    tests: ['src/infer/sampling.test.ts'] },
  { id: 'dashboard-no-live-rows', what: 'the dashboard sends rows only on (re)connect, never as they are appended',
    edits: [['src/serve/dashboard-node.ts', "if (r.rows.length || r.reset) broadcast(event('rows'", "if (r.reset) broadcast(event('rows'"]],
    tests: ['test/dashboard.test.ts', 'test/dashboard-browser.test.ts'], env: { FRUGAL_EXPECT_BROWSER: '1' } },
  { id: 'dashboard-drops-moe-layer', what: 'the trainer leaves the first MoE layer out of its expert statistics',
    edits: [['src/train/trainer.ts', 'const layers = [...loads.keys()].sort((a, b) => a - b);', 'const layers = [...loads.keys()].sort((a, b) => a - b).slice(1);']],
    tests: ['test/dashboard.test.ts', 'test/dashboard-browser.test.ts'], env: { FRUGAL_EXPECT_BROWSER: '1' } },
  { id: 'dashboard-data-without-key', what: "the dashboard's data routes answer without the API key",
    edits: [['src/serve/access.ts', 'if (this.o.apiKey && !this.open.has(pathname) &&', "if (this.o.apiKey && !this.open.has(pathname) && !pathname.startsWith('/api/') &&"]],
    tests: ['test/dashboard.test.ts'] },
  { id: 'dashboard-never-stopped', what: 'a run whose training process vanished still shows as running',
    edits: [['src/train/run-info-node.ts', 'if (info.host === hostname() && !alive(info.pid))', 'if (info.host === hostname() && !alive(info.pid) && false)']],
    tests: ['test/dashboard.test.ts'] },
  { id: 'playground-hit-shows-miss', what: 'the playground shows prompt_cache_miss_tokens as the cache hit',
    edits: [['src/web/playground.js', "['cache hit', u.prompt_cache_hit_tokens,", "['cache hit', u.prompt_cache_miss_tokens,"]],
    tests: ['test/playground-browser.test.ts'], env: { FRUGAL_EXPECT_BROWSER: '1' } },
  { id: 'playground-not-streaming', what: 'the playground shows a reply only once it is complete',
    edits: [['src/web/playground.js', '        body.textContent = reply;\n', ''], ['src/web/playground.js', "  body.classList.remove('streaming');", "  body.classList.remove('streaming');\n  body.textContent = reply;"]],
    tests: ['test/playground-browser.test.ts'], env: { FRUGAL_EXPECT_BROWSER: '1' } },
  { id: 'browser-node-import', what: 'the wasm backend reaches a node:* module again (dynamic import)',
    edits: [['src/backend/wasm/index.ts', '  const plat = platform();', "  const plat = platform();\n  if (plat.name === 'node') await import('node:os');"]],
    tests: ['test/browser-entry.test.ts'] },
  { id: 'webgpu-gemm-k', what: 'the WGSL GEMM reads A one column of K too far',
    edits: [['src/backend/webgpu/wgsl-gemm.ts', '      let gk = k0 + kk;', '      let gk = k0 + kk + 1u;']],
    tests: ['test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-attention-dk', what: 'the WGSL attention backward forgets the softmax scale in dK',
    edits: [['src/backend/webgpu/wgsl-attention.ts', '    GK[idx * p.Dk + e] = p.scale * acc;', '    GK[idx * p.Dk + e] = acc;']],
    tests: ['test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-fp8-bias', what: 'the WGSL FP8 kernels decode E4M3 with exponent bias 6 instead of 7',
    edits: [['src/backend/webgpu/wgsl-fp8.ts', '  return s | ((e + 120u) << 23u) | (m << 20u);', '  return s | ((e + 121u) << 23u) | (m << 20u);']],
    tests: ['test/fp8-webgpu.test.ts', 'test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-fp8-ue8m0', what: 'the WGSL quantisers round ue8m0 scales down to a power of two instead of up',
    edits: [['src/backend/webgpu/wgsl-fp8.ts', 's = ((s >> 23u) + 1u) << 23u;', 's = (s >> 23u) << 23u;']],
    tests: ['test/fp8-webgpu.test.ts', 'test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-moe-gate-grad', what: 'the webgpu MoE backward drops the gate-projection weight gradient of expert 1',
    edits: [['src/backend/webgpu/moe.ts', "        if (gG) gemm(j, 'mb.dg', 'mb.x', gG,", "        if (gG && e !== 1) gemm(j, 'mb.dg', 'mb.x', gG,"]],
    tests: ['src/ops/moe.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-moe-gather', what: 'the WGSL MoE GEMM gathers x by slot instead of by token (forgets the division by k)',
    edits: [['src/backend/webgpu/wgsl-moe.ts', '  return u32(IDX[p.gOff + rho]) / p.kdiv;', '  return u32(IDX[p.gOff + rho]);']],
    tests: ['src/ops/moe.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-head-dw-overwrite', what: 'the webgpu fused output head overwrites dW with each chunk instead of adding the later chunks',
    edits: [['src/backend/webgpu/head.ts', "        mm(j, 'ce.p', 'ce.x', 'ce.dw', V, H, rows, true, false, accumulateDW);", "        mm(j, 'ce.p', 'ce.x', 'ce.dw', V, H, rows, true, false, false);"]],
    tests: ['test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-matmulbatch-dependent', what: 'webgpu MatMulBatch puts items that read another item\'s output into the same job (they read the stale host copy)',
    edits: [['src/backend/webgpu/gemm-batch.ts', '    const independent = items.every(', '    const independent = true || items.every(']],
    tests: ['test/backends.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-resident-version', what: 'webgpu residency ignores the write version: a parameter written on the host is read from its stale device copy',
    edits: [['src/backend/webgpu/index.ts', '    if (e.version === version) {', '    if (e.version !== -1) {']],
    tests: ['test/webgpu-residency.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu', FRUGAL_WEBGPU_VERIFY: '0' } },
  { id: 'tensor-version-silent', what: 'a tensor\'s version bump no longer announces the write to device copies (residency.ts hostWrote)',
    edits: [['src/autograd/tensor.ts', 'set version(v: number) { this.writes = v; if (this.data instanceof Float32Array) hostWrote(this.data, null); }', 'set version(v: number) { this.writes = v; }']],
    tests: ['test/webgpu-residency.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu', FRUGAL_WEBGPU_VERIFY: '0' } },
  { id: 'webgpu-moments-unsynced', what: 'AdamW on webgpu leaves m, v on the device without marking them device-newer (state() and other backends read stale moments)',
    edits: [['src/backend/webgpu/index.ts', "else markDeviceNewer(arr, 'webgpu', () => download(arr, e));", 'else void download;']],
    tests: ['test/webgpu-residency.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-loadstate-silent', what: 'AdamW.loadState overwrites the moments without announcing it (a resume on webgpu keeps the device\'s stale moments)',
    edits: [['src/train/optim.ts', '      for (const a of [this.m[i]!, this.v[i]!]) if (a instanceof Float32Array) hostWrote(a);', '      void 0;']],
    tests: ['test/webgpu-residency.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu', FRUGAL_WEBGPU_VERIFY: '0' } },
  { id: 'webgpu-engine-bias', what: 'the webgpu decode engine\'s WGSL router ignores e_score_correction_bias when choosing experts',
    edits: [['src/backend/webgpu/wgsl-decode.ts', 'if (p.hasBias != 0u) { v = twoSum(PR[o + e], BIAS[e]); }', 'if (p.hasBias != 0u) { v = twoSum(PR[o + e], 0.0 * BIAS[e]); }']],
    tests: ['test/webgpu-decode-engine.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-engine-tie', what: 'the webgpu decode engine\'s WGSL top-k breaks exact score ties toward the higher expert id',
    edits: [['src/backend/webgpu/wgsl-decode.ts', 'fn gt(a: vec2f, b: vec2f) -> bool { return a.x > b.x || (a.x == b.x && a.y > b.y); }', 'fn gt(a: vec2f, b: vec2f) -> bool { return a.x > b.x || (a.x == b.x && a.y >= b.y); }']],
    tests: ['test/webgpu-decode-engine.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-engine-cache-row', what: 'the webgpu decode engine writes each latent cache row one position late',
    edits: [['src/backend/webgpu/decode-engine.ts', "P.norm('de.kv', s.r0 * D, D, s.rows, rkv, ly.kvANorm, key, s.start * D, D);", "P.norm('de.kv', s.r0 * D, D, s.rows, rkv, ly.kvANorm, key, (s.start + 1) * D, D);"]],
    tests: ['test/webgpu-decode-engine.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-engine-stale-cache', what: 'the webgpu decode engine uploads host cache rows only when it first sees a cache (later host writes: restores, other backends, are missed)',
    edits: [['src/backend/webgpu/decode-engine.ts', '      if (lo >= 0) {', '      if (lo >= 0 && first) {']],
    tests: ['test/webgpu-decode-engine.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'webgpu-engine-spec-draft', what: 'the webgpu fused speculative step verifies token 0 instead of the draft it computed on the device',
    edits: [['src/backend/webgpu/decode-engine.ts', "P.p('decArgmax', ['de.mlg', 'de.picks', 'de.tok2'], [vocab, 0, 0, 1], [1, 1, 1]);", "P.p('decArgmax', ['de.mlg', 'de.picks', 'de.tok2'], [vocab, 0, 0, 0], [1, 1, 1]);"]],
    tests: ['test/webgpu-decode-engine.test.ts'], env: { FRUGAL_EXPECT_BACKENDS: 'ts,wasm,native,webgpu' } },
  { id: 'web-no-coep', what: '`frugal web` stops sending Cross-Origin-Embedder-Policy (no SharedArrayBuffer in the page)',
    edits: [['src/serve/web-node.ts', "'Cross-Origin-Embedder-Policy': 'require-corp', ", '']],
    tests: ['test/browser-gpu.test.ts'], env: { FRUGAL_EXPECT_BROWSER: '1' } },
];

function sh(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20, ...opts });
}

function prepare() {
  rmSync(scratch, { recursive: true, force: true });
  sh('git', ['worktree', 'prune'], { cwd: root });
  const r = sh('git', ['worktree', 'add', '--detach', scratch, 'HEAD'], { cwd: root });
  if (r.status !== 0) throw new Error(`git worktree add failed: ${r.stderr}`);
  symlinkSync(path.join(root, 'node_modules'), path.join(scratch, 'node_modules'));
}

function reset() {
  sh('git', ['checkout', '--', '.'], { cwd: scratch });
  rmSync(path.join(scratch, 'build'), { recursive: true, force: true });
  if (existsSync(path.join(root, 'build'))) cpSync(path.join(root, 'build'), path.join(scratch, 'build'), { recursive: true });
}

const rows = [];
let stale = false, holes = 0;
prepare();
try {
  for (const f of FAULTS.filter((x) => x.id.includes(filter))) {
    reset();
    let applies = true;
    for (const [file, find, replace] of f.edits) {
      const p = path.join(scratch, file);
      const text = readFileSync(p, 'utf8');
      if (text.split(find).length !== 2) { applies = false; console.error(`fault ${f.id}: target text not found exactly once in ${file}`); break; }
      writeFileSync(p, text.replace(find, replace));
    }
    if (!applies) { stale = true; rows.push([f.id, f.what, 'STALE', '']); continue; }
    if (f.rebuild) {
      rmSync(path.join(scratch, 'build'), { recursive: true, force: true });
      sh(process.execPath, ['scripts/build-native.mjs'], { cwd: scratch });
    }
    const t0 = Date.now();
    const env = { ...process.env, FRUGAL_QUIET: '1' };
    for (const kv of ALL.split(' ')) { const [k, v] = kv.split('='); env[k] = v; }
    Object.assign(env, f.env ?? {});
    const r = sh(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', ...f.tests], { cwd: scratch, env, timeout: 600_000 });
    const failed = [...(r.stdout ?? '').matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1]).filter((n) => !/\.test\.ts$/.test(n));
    const caught = r.status !== 0;
    if (!caught) holes++;
    rows.push([f.id, f.what, caught ? `caught (${((Date.now() - t0) / 1000).toFixed(0)} s)` : 'MISSED', failed.slice(0, 3).join('; ') + (failed.length > 3 ? ` (+${failed.length - 3})` : '')]);
    console.log(`${caught ? 'caught' : 'MISSED'}  ${f.id}: ${failed.length} failing tests`);
  }
} finally {
  sh('git', ['worktree', 'remove', '--force', scratch], { cwd: root });
  rmSync(scratch, { recursive: true, force: true });
}
console.log('\n| fault | what it breaks | result | tests that fail |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
process.exit(stale ? 2 : holes ? 1 : 0);
