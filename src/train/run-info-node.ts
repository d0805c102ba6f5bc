/**
 * `run.json` in a run folder (Node): what a dashboard needs besides metrics.jsonl — the run's
 * options, model shape, planned tokens, cost settings — and whether the run is still going.
 *
 * Contract:
 * - `writeRunInfo` replaces the file atomically (temp file, fsync, rename): a reader never sees half.
 * - `readRunInfo` never throws: a missing, unreadable or malformed file (or one over
 *   RUN_INFO_MAX_BYTES) is null, so a dashboard shows what it can.
 * - `runState` says `running` only while the training process that wrote `pid` on this host is
 *   alive; a run whose process vanished without writing its end (SIGKILL, power loss) is
 *   `stopped`. A folder without run.json is `finished` when it holds final/, else `unknown`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../io/atomic-node.js';

/** Largest run.json read (a run's options and config are a few KiB). */
export const RUN_INFO_MAX_BYTES = 1 << 20;

/** How a run ended, or that it is going. */
export type RunStatus = 'running' | 'finished' | 'interrupted' | 'failed';

/** The contents of run.json. */
export interface RunInfo {
  format: 1;
  status: RunStatus;
  /** Training process and host (a dashboard checks the process is alive). */
  pid: number;
  host: string;
  startedAt: string;
  endedAt?: string;
  /** Why a run failed or stopped, for people. */
  note?: string;
  steps: number;
  tokensPerStep: number;
  /** Every resolved option of the run (as stored in its checkpoint). */
  options: Record<string, unknown>;
  model: { config: string; layers: number; experts: number; expertsPerToken: number; paramsTotal: number; paramsActive: number; moeLayers: number[] };
  precision: string;
  data: string;
  unigramEntropy: number;
  backend: string;
  cost: { gpu: string; pricePerHour: number; usdPerToken: number; mfuAssumed: number };
}

/** Writes `dir/run.json` atomically (io/atomic-node.ts). */
export async function writeRunInfo(dir: string, info: RunInfo): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(info, null, 1) + '\n');
  await writeFileAtomic(path.join(dir, 'run.json'), (put) => put(bytes));
}

/** Reads `dir/run.json`, or null (see the contract). */
export function readRunInfo(dir: string): RunInfo | null {
  const file = path.join(dir, 'run.json');
  try {
    if (statSync(file).size > RUN_INFO_MAX_BYTES) return null;
    const j = JSON.parse(readFileSync(file, 'utf8')) as RunInfo;
    return j && typeof j === 'object' && j.format === 1 && typeof j.status === 'string' ? j : null;
  } catch {
    return null;
  }
}

/** Is process `pid` alive (on this host)? */
function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** The run's state for a viewer: running / finished / interrupted / failed / stopped / unknown, and a line saying why. */
export function runState(dir: string, info: RunInfo | null = readRunInfo(dir)): { state: RunStatus | 'stopped' | 'unknown'; note: string } {
  if (!info) {
    return existsSync(path.join(dir, 'final')) ? { state: 'finished', note: 'final/ model saved (no run.json: an older run)' } : { state: 'unknown', note: 'no run.json in the folder: cannot tell whether it is still training' };
  }
  if (info.status !== 'running') return { state: info.status, note: info.note ?? '' };
  if (info.host === hostname() && !alive(info.pid)) return { state: 'stopped', note: `the training process (pid ${info.pid}) is gone without saying why (killed?)` };
  return { state: 'running', note: info.host === hostname() ? `pid ${info.pid}` : `on ${info.host}` };
}
