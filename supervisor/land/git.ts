import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GitError, runGit } from '../../git/runner.js';

/** A finished git: its exit code and output (landing reads exit codes: 1 = conflicts). */
export interface GitOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LandGit {
  readonly dir: string;
  /** Runs git; resolves with any exit code (a timeout or a missing git rejects). */
  run(
    args: readonly string[],
    opts?: { env?: Record<string, string> },
  ): Promise<GitOutcome>;
  /** Runs git; rejects unless it exits 0; resolves with its trimmed output. */
  ok(
    args: readonly string[],
    opts?: { env?: Record<string, string> },
  ): Promise<string>;
}

const IDENTITY = {
  GIT_COMMITTER_NAME: 'agent-supervisor',
  GIT_COMMITTER_EMAIL: 'supervisor@localhost',
  GIT_EDITOR: 'true',
};

/**
 * The landing's git, through the project's one git runner (timeouts, no hooks, no programs an
 * agent could plant), reporting exit codes instead of throwing on them, with an identity of its
 * own for the commits it makes.
 */
export function landGit(dir: string, timeoutMs = 600_000): LandGit {
  const config = ['rebase.autoStash=false', 'advice.detachedHead=false'];
  const run: LandGit['run'] = async (args, opts = {}) => {
    try {
      const r = await runGit(args, {
        cwd: dir,
        timeoutMs,
        env: { ...IDENTITY, ...opts.env },
        config,
        maxBuffer: 256 * 1024 * 1024,
      });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      if (err instanceof GitError && err.exitCode !== null && !err.timedOut)
        return { code: err.exitCode, stdout: err.stdout, stderr: err.stderr };
      throw err;
    }
  };
  return {
    dir,
    run,
    ok: async (args, opts) => {
      const r = await run(args, opts);
      if (r.code !== 0)
        throw new Error(
          `git ${args.slice(0, 2).join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
        );
      return r.stdout.trim();
    },
  };
}

/**
 * The ref a base branch names: a local branch (`main` → refs/heads/main), or a remote-tracking
 * one (`origin/main` → refs/remotes/origin/main) when no local branch has that name.
 */
export async function baseRef(git: LandGit, base: string): Promise<string> {
  const local = `refs/heads/${base}`;
  if ((await git.run(['show-ref', '--verify', '--quiet', local])).code === 0)
    return local;
  const remote = `refs/remotes/${base}`;
  if ((await git.run(['show-ref', '--verify', '--quiet', remote])).code === 0)
    return remote;
  return local;
}

export async function revParse(
  git: LandGit,
  rev: string,
): Promise<string | undefined> {
  const r = await git.run([
    'rev-parse',
    '--verify',
    '--quiet',
    `${rev}^{commit}`,
  ]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/**
 * What a ref's storage says now, without running git: the loose ref file's content, or the
 * identity of `packed-refs` (inode, size, mtime) when there is no loose file. Undefined when it
 * cannot tell (a symbolic ref, another ref backend, an unreadable file): ask git.
 */
function storedRef(commonDir: string, ref: string): string | undefined {
  try {
    const loose = readFileSync(join(commonDir, ref), 'utf8').trim();
    return /^[0-9a-f]{40,64}$/.test(loose) ? loose : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
  }
  try {
    const s = statSync(join(commonDir, 'packed-refs'), { bigint: true });
    // Racily clean, as git says: a file rewritten within the clock's granularity of the last
    // look (same inode reused, same size) looks unchanged, so a young file is never trusted.
    if (BigInt(Date.now()) * 1_000_000n - s.mtimeNs < 2_000_000_000n)
      return undefined;
    return `packed ${s.ino} ${s.size} ${s.mtimeNs}`;
  } catch {
    return 'none';
  }
}

/**
 * The commit a ref points at, asking git only when the ref's storage changed since the last
 * answer: the running supervisor's once-a-second look at the base tip costs a file read instead
 * of a git process while nothing moves. git writes refs by renaming a lock file into place, so
 * a read sees the old or the new value, never half of one.
 */
export class RefTip {
  private last:
    { ref: string; stored: string; tip: string | undefined } | undefined;

  constructor(
    private readonly git: LandGit,
    private readonly commonDir: string,
  ) {}

  async get(ref: string): Promise<string | undefined> {
    const stored = storedRef(this.commonDir, ref);
    const last = this.last;
    if (stored !== undefined && last?.ref === ref && last.stored === stored)
      return last.tip;
    const tip = await revParse(this.git, ref);
    this.last = stored === undefined ? undefined : { ref, stored, tip };
    return tip;
  }
}
