import { execFile } from 'node:child_process';
import { lstat, readdir, rmdir, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, sep } from 'node:path';
import { runGit } from '../git/runner.js';

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
 * The object store the workspace's git writes into, with its size now: what it grows past
 * that while the agent runs counts against the agent's budget. The store is shared with the
 * other slots (and the supervisor), so objects they add meanwhile count too: the measure errs
 * on the high side, never below what the agent wrote.
 */
export async function objectStoreBaseline(workspace: {
  objectStore?(): Promise<string>;
}): Promise<{ dir: string; before: number }[]> {
  const dir = await workspace.objectStore?.().catch(() => undefined);
  return dir === undefined ? [] : [{ dir, before: await diskUsage(dir) }];
}

/**
 * Measures the agent's files every `intervalMs` while it runs and calls `over` once they pass
 * `budget` bytes: everything under `paths`, plus what each of `growth` (a shared git object
 * store the agent's git writes into) grew past its size when the agent started. `stop()` ends
 * the watch.
 */
export function watchDisk(o: {
  paths: readonly string[];
  growth?: readonly { dir: string; before: number }[];
  budget: number;
  intervalMs: number;
  over: (bytes: number) => void;
}): { stop(): void } {
  let busy = false;
  let done = false;
  const growth = o.growth ?? [];
  const timer = setInterval(() => {
    if (busy || done) return;
    busy = true;
    void Promise.all([
      ...o.paths.map(diskUsage),
      ...growth.map(async (g) =>
        Math.max(0, (await diskUsage(g.dir)) - g.before),
      ),
    ])
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
 * After an agent was stopped for disk: the git-ignored files of its worktree that it wrote or
 * changed (status change since `sinceMs`) go, with the directories it made that end up empty.
 * The next job's reset (`git clean -fd`) keeps ignored files — a dependency cache, build
 * output — so without this a `node_modules/` filled past the budget would stop every later job
 * on the slot at once. Ignored files from earlier jobs stay. The agent and everything it
 * started are gone by now: nothing can swap a directory for a symbolic link under the walk,
 * which never follows one nor leaves the worktree's filesystem.
 */
export async function removeIgnoredSince(
  worktree: string,
  sinceMs: number,
  keep: readonly string[] = [],
): Promise<number> {
  const listed = await runGit(
    [
      'ls-files',
      '-z',
      '--others',
      '--ignored',
      '--exclude-standard',
      '--directory',
    ],
    { cwd: worktree },
  );
  let top;
  try {
    top = await lstat(worktree);
  } catch {
    return 0;
  }
  let removed = 0;
  // Ext4 and overlayfs stamp files from a coarse clock that may lag Date.now() by a tick.
  const since = sinceMs - 20;
  const sweep = async (p: string): Promise<void> => {
    const st = await lstat(p).catch(() => undefined);
    if (!st || st.dev !== top.dev) return;
    if (st.isDirectory()) {
      for (const name of await readdir(p).catch(() => [] as string[]))
        await sweep(join(p, name));
      if (st.ctimeMs >= since) await rmdir(p).catch(() => undefined); // refused while not empty
    } else if (st.ctimeMs >= since) {
      await unlink(p).catch(() => undefined);
      removed++;
    }
  };
  for (const rel of listed.stdout.split('\0')) {
    const entry = rel.replace(/\/$/, '');
    if (!entry || keep.includes(entry) || entry.startsWith('.git/')) continue;
    const abs = join(worktree, entry);
    if (!abs.startsWith(worktree + sep)) continue;
    await sweep(abs);
  }
  return removed;
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
