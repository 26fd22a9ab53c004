/**
 * Keeps the loose refs the supervisor writes few: every `every` branch writes (and once at start
 * when as many loose `issue/*` refs are already there), one `git pack-refs --all` moves them into
 * `packed-refs`. Each runner reads `main`, `issue/*` and tags from git's files before and after
 * every agent (`git/ref-files.ts`: one `lstat` per loose ref, one for `packed-refs`), so
 * without this a runner's cost per job grows with every issue ever finished (~5 µs per ref, twice
 * a job: 1 s a job at 100k issues); with it, it is bounded by `every`.
 *
 * Packing is git's own (`pack-refs` locks each ref it prunes and keeps one that moved meanwhile;
 * a concurrent `update-ref` waits for that lock, `core.filesRefLockTimeout`), one at a time, in
 * the background: a failure is logged and the next write past the count tries again.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { gitAt } from './runner.js';

export const PACK_REFS_EVERY = 256;

export class RefPacker {
  private writes = 0;
  private running: Promise<void> | undefined;
  /** Packs run so far (tests, logs). */
  packs = 0;

  constructor(
    private readonly repo: string,
    private readonly gitCommonDir: string,
    private readonly onError: (err: Error) => void,
    private readonly every = PACK_REFS_EVERY,
  ) {}

  /** At start: the loose `issue/*` refs already there count as writes. */
  start(): void {
    let loose = 0;
    try {
      loose = readdirSync(
        join(this.gitCommonDir, 'refs', 'heads', 'issue'),
      ).length;
    } catch {
      /* none yet */
    }
    this.writes = loose;
    if (this.writes >= this.every) this.pack();
  }

  /** One branch written. */
  wrote(): void {
    if (++this.writes >= this.every && !this.running) this.pack();
  }

  private pack(): void {
    this.writes = 0;
    this.running = gitAt(this.repo, { timeoutMs: 120_000 })
      .raw(['pack-refs', '--all'])
      .then(
        () => void this.packs++,
        (err: unknown) =>
          this.onError(err instanceof Error ? err : new Error(String(err))),
      )
      .finally(() => (this.running = undefined));
  }

  /** Waits for a pack that is running. */
  async close(): Promise<void> {
    await this.running;
  }
}
