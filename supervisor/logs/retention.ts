import {
  copyFileSync,
  existsSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  truncateSync,
} from 'node:fs';
import { join } from 'node:path';

const RUNNER_LOG = /^agent-\d{3}\.log$/;
const ROTATED = /^agent-\d{3}\.log\.\d+$/;

/**
 * Rotates a runner's log once it passes `maxBytes`: `.1` … `.files` shift up, the log is copied
 * to `.1` and truncated in place. Copy-and-truncate because the runner (or its container)
 * keeps the file open for appending; it goes on writing at the new end. Returns whether it
 * rotated.
 */
export function rotateRunnerLog(
  file: string,
  maxBytes: number,
  files: number,
): boolean {
  if (!existsSync(file) || statSync(file).size <= maxBytes) return false;
  rmSync(`${file}.${files}`, { force: true });
  for (let i = files - 1; i >= 1; i--)
    if (existsSync(`${file}.${i}`))
      renameSync(`${file}.${i}`, `${file}.${i + 1}`);
  copyFileSync(file, `${file}.1`);
  truncateSync(file, 0);
  return true;
}

export interface PruneResult {
  files: number;
  bytes: number;
}

/**
 * Applies `logs.keep`: attempt logs (`<logDir>/agent-NNN/*.log`) and rotated runner logs
 * (`agent-NNN.log.N`) last written before `now - keepMs` are deleted; a runner's current log
 * is rotated, never deleted here.
 */
export function pruneLogs(
  logDir: string,
  keepMs: number,
  now = Date.now(),
): PruneResult {
  const out: PruneResult = { files: 0, bytes: 0 };
  if (!existsSync(logDir)) return out;
  const cutoff = now - keepMs;
  const drop = (file: string) => {
    try {
      const st = statSync(file);
      if (!st.isFile() || st.mtimeMs >= cutoff) return;
      rmSync(file, { force: true });
      out.files += 1;
      out.bytes += st.size;
    } catch {
      /* gone meanwhile */
    }
  };
  for (const name of readdirSync(logDir)) {
    const path = join(logDir, name);
    if (ROTATED.test(name)) drop(path);
    else if (/^agent-\d{3}$/.test(name)) {
      let entries: string[];
      try {
        entries = readdirSync(path);
      } catch {
        continue;
      }
      // Files only: a slot's directory stays even when empty, because a running container has
      // it bind-mounted and a removed directory would fail the runner's next log (ENOENT).
      for (const f of entries) if (f.endsWith('.log')) drop(join(path, f));
    }
  }
  return out;
}

/** Rotates every runner log in `logDir` that passed `maxBytes`; returns the rotated ones. */
export function rotateRunnerLogs(
  logDir: string,
  maxBytes: number,
  files: number,
): string[] {
  if (!existsSync(logDir)) return [];
  return readdirSync(logDir)
    .filter((f) => RUNNER_LOG.test(f))
    .filter((f) => rotateRunnerLog(join(logDir, f), maxBytes, files));
}
