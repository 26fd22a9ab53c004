import { execFile } from 'node:child_process';
import { lstat, readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Bytes a tree takes on disk (allocated blocks, so sparse files count as what they hold), never
 * following symbolic links nor leaving the tree's filesystem (a mount below it is not the agent's).
 */
export async function diskUsage(root: string): Promise<number> {
  let top;
  try {
    top = await lstat(root);
  } catch {
    return 0;
  }
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(dir, name);
      let st;
      try {
        st = await lstat(p);
      } catch {
        continue;
      }
      if (st.dev !== top.dev) continue;
      total += st.blocks * 512;
      if (st.isDirectory()) await walk(p);
    }
  };
  total += top.blocks * 512;
  if (top.isDirectory()) await walk(root);
  return total;
}

/**
 * Where an agent's files go: its worktree; with a uid of its own in a container, also the places
 * that user can write there outside the mounts (HOME, /var/tmp — /tmp is a size-capped tmpfs).
 */
export function agentDiskPaths(worktree: string, ownUid: boolean): string[] {
  return ownUid ? [worktree, homedir(), '/var/tmp'] : [worktree];
}

/**
 * Measures the agent's files every `intervalMs` while it runs and calls `over` once they pass
 * `budget` bytes. `stop()` ends the watch.
 */
export function watchDisk(o: {
  paths: readonly string[];
  budget: number;
  intervalMs: number;
  over: (bytes: number) => void;
}): { stop(): void } {
  let busy = false;
  let done = false;
  const timer = setInterval(() => {
    if (busy || done) return;
    busy = true;
    void Promise.all(o.paths.map(diskUsage))
      .then((sizes) => {
        const bytes = sizes.reduce((a, b) => a + b, 0);
        if (!done && bytes > o.budget) {
          done = true;
          o.over(bytes);
        }
      })
      .finally(() => (busy = false));
  }, o.intervalMs);
  timer.unref();
  return {
    stop: () => {
      done = true;
      clearInterval(timer);
    },
  };
}

/**
 * After an agent was stopped for disk: what it left in HOME and /var/tmp of its container goes
 * (mounts below them, e.g. read-only credentials, stay), so the slot's next job starts within
 * its budget. Removed as the agent's user: those directories are sticky, and its files are its
 * own. The worktree is reset by the next job's prepare.
 */
export async function clearAgentScratch(user: {
  uid: number;
  gid: number;
}): Promise<void> {
  const doomed: string[] = [];
  for (const dir of [homedir(), '/var/tmp']) {
    let top;
    try {
      top = await lstat(dir);
    } catch {
      continue;
    }
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const p = join(dir, name);
      const st = await lstat(p).catch(() => undefined);
      if (st && st.dev === top.dev && st.uid === user.uid) doomed.push(p);
    }
  }
  if (!doomed.length) return;
  await new Promise<void>((resolve) =>
    execFile(
      'rm',
      ['-rf', '--one-file-system', '--', ...doomed],
      { uid: user.uid, gid: user.gid, timeout: 60_000 },
      () => resolve(),
    ),
  );
}
