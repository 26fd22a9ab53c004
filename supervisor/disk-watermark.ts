import { statfsSync } from 'node:fs';
import type { Pause } from './pause.js';

const MiB = 1024 * 1024;
const mib = (n: number) => `${Math.round(n / MiB)} MiB`;

/** Free bytes (for an unprivileged writer) of the filesystem holding `path`. */
export type FreeBytes = (path: string) => number;

const statfsFree: FreeBytes = (path) => {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
};

/**
 * The host's low-disk watermark: claiming pauses (kind `disk`, until the space is back) while the
 * filesystem of the repository or of `.supervisor/` — git objects and worktrees, SQLite, logs —
 * has less than `minFreeBytes` free, so that running out stops new work before it makes SQLite,
 * git or the logs fail. Claiming resumes once 20 % more than the watermark is free again.
 */
export class DiskWatermark {
  constructor(
    private readonly paths: readonly string[],
    private readonly minFreeBytes: number,
    private readonly free: FreeBytes = statfsFree,
  ) {}

  /** The most pressed of the paths: its free bytes. */
  private lowest(): { path: string; free: number } | undefined {
    let low: { path: string; free: number } | undefined;
    for (const path of this.paths) {
      let free: number;
      try {
        free = this.free(path);
      } catch {
        continue;
      }
      if (!low || free < low.free) low = { path, free };
    }
    return low;
  }

  /** A pause when space is short now; undefined when it is not. */
  check(now: number): Pause | undefined {
    if (this.minFreeBytes <= 0) return undefined;
    const low = this.lowest();
    if (!low || low.free >= this.minFreeBytes) return undefined;
    return {
      kind: 'disk',
      reason: `low disk: ${mib(low.free)} free for ${low.path}, below disk.minFree (${mib(this.minFreeBytes)})`,
      since: now,
      until: null,
    };
  }

  /** Space is back (with a margin): a `disk` pause may end. */
  recovered(): boolean {
    const low = this.lowest();
    return !low || low.free >= this.minFreeBytes * 1.2;
  }
}
