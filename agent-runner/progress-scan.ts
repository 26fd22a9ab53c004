import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The time of a change in `dir` (a file or directory modified, created, renamed or deleted)
 * after `since`, or undefined when nothing changed since then. `.git` is not looked into.
 *
 * The runner asks only when an agent has been silent for its whole progress timeout, so this
 * walk runs at most once per timeout per silent agent; a watcher set up for every job would
 * cost a full walk, a stat and an inotify watch per file on every job (Node 20's recursive
 * fs.watch on Linux does exactly that, synchronously).
 */
export async function changedSince(
  dir: string,
  since: number,
): Promise<number | undefined> {
  const pending = [dir];
  while (pending.length > 0) {
    const current = pending.pop()!;
    let entries;
    try {
      const st = await lstat(current);
      const t = Math.max(st.mtimeMs, st.ctimeMs);
      // A directory's times move when an entry in it is created, renamed or deleted.
      if (t > since) return t;
      entries = await readdir(current, { withFileTypes: true });
    } catch {
      continue; // Removed while we looked: its parent directory's times tell.
    }
    for (const e of entries) {
      if (e.name === '.git') continue;
      const path = join(current, e.name);
      if (e.isDirectory()) {
        pending.push(path);
        continue;
      }
      try {
        const st = await lstat(path);
        const t = Math.max(st.mtimeMs, st.ctimeMs);
        if (t > since) return t;
      } catch {
        /* removed meanwhile */
      }
    }
  }
  return undefined;
}
