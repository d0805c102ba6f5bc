/**
 * `frugal bench memory`: peak resident memory (max RSS) of a training job (two steps of
 * fwd+bwd+AdamW at batch × seq) and of a decode job (batch 1, short context), each in a fresh
 * child process — Frugal (bench/memory-child.ts) and the PyTorch peer (model.py memory) — so no
 * job inherits another's heap. Peaks include each runtime's baseline (Node+tsx vs Python+torch).
 * ratio = PyTorch MB / Frugal MB (> 1: Frugal uses less).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODEL_BENCH_CONFIGS, PEER_INSTALL, availablePeers, benchModel, formatRows, peerCommand, repoRoot, stats, tempModelDir, writeResults, type BenchRow, type PeerSpec } from './common.js';
import { parseSuiteArgs } from './harness.js';

function lastJson(out: string, who: string): { maxRssKB: number } {
  const line = out.trim().split('\n').pop() ?? '';
  try { return JSON.parse(line) as { maxRssKB: number }; } catch { throw new Error(`${who} did not report its memory; it said: ${out.slice(-500)}`); }
}

/** Peak RSS in MB of one Frugal job in a child process. */
function frugalPeak(config: string, what: string, threads: number, backend: string): number {
  const self = fileURLToPath(import.meta.url);
  const ts = self.endsWith('.ts');
  const child = path.join(path.dirname(self), ts ? 'memory-child.ts' : 'memory-child.js');
  const args = [...(ts ? ['--import', 'tsx'] : []), child, config, what, String(threads), backend];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: repoRoot(), maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`Frugal memory child failed (${r.status}): ${r.stderr.slice(-800)}`);
  return lastJson(r.stdout, 'Frugal memory child').maxRssKB / 1024;
}

/** Peak RSS in MB of one peer job in a child process. */
function peerPeak(spec: PeerSpec, dir: string, config: string, what: string, threads: number): number {
  const s = MODEL_BENCH_CONFIGS[config]!;
  const extra = what === 'train' ? ['--B', String(s.batch), '--T', String(s.seq), '--mtp', '0'] : ['--prompt', String(s.decodeShort.prompt), '--steps', String(s.decodeShort.steps)];
  const c = peerCommand(spec, dir, threads, ['memory', '--dir', dir, '--threads', String(threads), '--what', what, ...extra]);
  const r = spawnSync(c.cmd, c.argv, { encoding: 'utf8', env: c.env, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`peer memory job failed (${r.status}): ${r.stderr.slice(-800)}`);
  return lastJson(r.stdout, 'peer memory job').maxRssKB / 1024;
}

/** CLI entry: `frugal bench memory [--config small|dense-10m|tiny] [--threads N] [--reps N] [--json] [--no-peer] [--write]`. */
export async function run(argv: string[]): Promise<number> {
  const o = parseSuiteArgs('memory', argv);
  if (!o) return 0;
  const log = (s: string): void => console.error(s);
  // Eager peers only: the current PyTorch (the `pytorch` column) and 1.13 (the second column).
  const found = o.peer ? availablePeers() : { specs: [], notes: ['PyTorch peers skipped: disabled by --no-peer'] };
  for (const n of found.notes) log(n);
  const specs = found.specs.filter((x) => !x.compile && !x.blas1 && (x.id !== 'torch-legacy' || o.legacy !== false));
  if (o.peer && !specs.length) log(`Install a peer with: ${PEER_INSTALL}`);
  const main = specs[0] ?? null, legacySpec = main && main.id === 'torch' ? specs.find((x) => x.id === 'torch-legacy') ?? null : null;
  const s = MODEL_BENCH_CONFIGS[o.config]!;
  const reps = Math.min(o.reps, 3);
  const tmp = tempModelDir();
  const rows: BenchRow[] = [];
  try {
    if (main) await benchModel(s, 1).save(tmp.dir);
    for (const threads of o.threads) {
      for (const what of ['train', 'decode']) {
        const f: number[] = [], p: number[] = [], l: number[] = [];
        for (let r = 0; r < reps; r++) {
          f.push(frugalPeak(o.config, what, threads, o.backend));
          if (main) p.push(peerPeak(main, tmp.dir, o.config, what, threads));
          if (legacySpec) l.push(peerPeak(legacySpec, tmp.dir, o.config, what, threads));
        }
        const fs = stats(f), ps = p.length ? stats(p) : null, ls = l.length ? stats(l) : null;
        const name = what === 'train' ? `peak RSS, 2 training steps ${s.batch}×${s.seq}` : `peak RSS, decode ${s.decodeShort.prompt}→${s.decodeShort.prompt + s.decodeShort.steps}`;
        rows.push({ suite: 'memory', config: o.config, case: name, threads, unit: 'MB', frugal: fs.median, pytorch: ps ? ps.median : null,
          ratio: ps ? ps.median / fs.median : null, frugalRange: [fs.min, fs.max], pytorchRange: ps ? [ps.min, ps.max] : null, reps, backend: o.backend,
          ...(main ? { pytorchPeer: main.id === 'torch' ? 'PyTorch 2.6 eager' : 'PyTorch 1.13' } : {}),
          ...(main?.id === 'torch' ? { legacy: ls ? ls.median : null, legacyRange: ls ? [ls.min, ls.max] as [number, number] : null, legacyRatio: ls ? ls.median / fs.median : null } : {}) });
        log(`  ${name} threads=${threads}: Frugal ${fs.median.toFixed(0)} MB${ps ? `, PyTorch ${ps.median.toFixed(0)} MB` : ''}${ls ? `, PyTorch 1.13 ${ls.median.toFixed(0)} MB` : ''}`);
      }
    }
  } finally {
    tmp.remove();
  }
  if (o.json) console.log(JSON.stringify(rows));
  else console.log(formatRows(rows));
  if (o.write) {
    const cmd = `npx frugal bench memory ${argv.filter((a) => a !== '--write').join(' ')}`.trim();
    log(`wrote ${writeResults('memory', `### memory (ratio = PyTorch MB / Frugal MB)\n\n\`${cmd}\` — ${new Date().toISOString().slice(0, 10)}\n\n${formatRows(rows)}`)}`);
  }
  return 0;
}
