import { readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { driverOverrides, safeGitEnv } from './runner.js';

/**
 * `driverOverrides` without a git process when nothing it read has changed. A runner asks before
 * every checkout and every commit of its worktree (twice per job), and the answer changes only
 * when a configuration file does. The files are the ones git reads there: the repository's
 * `config`, the worktree's `config.worktree`, and the user's `~/.gitconfig` and
 * `$XDG_CONFIG_HOME/git/config` (the system file is off: `GIT_CONFIG_NOSYSTEM`), found through
 * the same `.git` pointer and `commondir` files git follows — an agent that points its worktree
 * at another repository changes the paths, and with them the key. Every file is compared by
 * inode, size, modification and change time (ns); the answer is kept only when each file's
 * change time is over a second older than the question, so a write in the same clock tick as
 * git's read cannot go unnoticed (the kernel stamps files with a coarse clock; a change time
 * cannot be set back). A configuration with includes is never kept: its files are not all known.
 */
const cache = new Map<string, { key: string; overrides: string[] }>();

/** Change times closer than this to the question are too fresh to trust (the clock's tick). */
const SETTLED_NS = 1_000_000_000n;

const INCLUDE_KEY = /^include(if\..*)?\.path$/i;

interface Signature {
  key: string;
  /** The newest change time among the files, ns since the epoch. */
  newestChangeNs: bigint;
}

/** The configuration files git reads in `dir` (a worktree's top), or undefined if not plain. */
function configFiles(dir: string): string[] | undefined {
  let gitDir = join(dir, '.git');
  let commonDir = gitDir;
  try {
    const st = statSync(gitDir);
    if (st.isFile()) {
      const m = /^gitdir: (.+)$/m.exec(readFileSync(gitDir, 'utf8'));
      if (!m?.[1]) return undefined;
      gitDir = resolve(dir, m[1].trim());
      commonDir = resolve(
        gitDir,
        readFileSync(join(gitDir, 'commondir'), 'utf8').trim(),
      );
    } else if (!st.isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  const env = safeGitEnv();
  const home = env.HOME;
  const xdg = env.XDG_CONFIG_HOME || (home ? join(home, '.config') : undefined);
  return [
    join(commonDir, 'config'),
    join(gitDir, 'config.worktree'),
    ...(home ? [join(home, '.gitconfig')] : []),
    ...(xdg ? [join(xdg, 'git', 'config')] : []),
  ];
}

function signature(dir: string): Signature | undefined {
  const files = configFiles(dir);
  if (!files) return undefined;
  let newestChangeNs = 0n;
  const parts: string[] = [];
  for (const f of files) {
    let st;
    try {
      st = statSync(f, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
      parts.push(`${f}:-`);
      continue;
    }
    if (st.ctimeNs > newestChangeNs) newestChangeNs = st.ctimeNs;
    parts.push(`${f}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`);
  }
  return { key: parts.join('\n'), newestChangeNs };
}

/** `driverOverrides(dir)`, from the last answer when no configuration file changed since. */
export async function cachedDriverOverrides(
  dir: string,
  timeoutMs?: number,
): Promise<string[]> {
  const askedNs = BigInt(Date.now()) * 1_000_000n;
  const before = signature(dir);
  const hit = cache.get(dir);
  if (before && hit && hit.key === before.key) return [...hit.overrides];
  cache.delete(dir);
  const out: string[] = [];
  const overrides = await driverOverrides(dir, timeoutMs, (keys) =>
    out.push(...keys),
  );
  const after = signature(dir);
  if (
    before &&
    after &&
    after.key === before.key &&
    before.newestChangeNs < askedNs - SETTLED_NS &&
    !out.some((k) => INCLUDE_KEY.test(k))
  )
    cache.set(dir, { key: before.key, overrides: [...overrides] });
  return overrides;
}
