import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { baseRefOf } from '../contract/job.js';
import { gitAt, textArgumentFile } from '../git/runner.js';
import { cachedDriverOverrides } from '../git/driver-cache.js';
import { replaceSlotFile, type FileOwner } from '../contract/slot-files.js';
import { AttemptError } from '../contract/errors.js';

export interface CommitOutcome {
  commitSha: string | null;
  filesChanged: number;
  insertions: number;
  deletions: number;
}

/**
 * The runner's git access. Today: a worktree of the shared local repository. A runner on
 * another host implements the same interface over its own clone and pushes result refs.
 */
export interface Workspace {
  readonly path: string;
  /**
   * Resets the workspace to the tip of `baseBranch`; returns the base commit. Untracked files
   * go; with `keepIgnored` (`git clean -e` patterns), ignored files too, all but those.
   */
  prepare(baseBranch: string, keepIgnored?: readonly string[]): Promise<string>;
  /** Commits what the agent changed (unless it committed itself). */
  commit(
    baseSha: string,
    message: string,
    author: { name: string; email: string },
  ): Promise<CommitOutcome>;
  /** Remote mode: makes the result commit reachable by the supervisor at `ref`; returns the ref. */
  publish?(
    commitSha: string,
    ref: string,
    claim?: { jobId: string; token: string },
  ): Promise<string>;
  /** Remote mode: checks the remote answers and accepts the credentials (before taking jobs). */
  probe?(baseBranch: string): Promise<void>;
  /**
   * Rebuilds what git needs to use the workspace (after `prepare` failed: an agent wrote into
   * its worktree's HEAD or index, a stale lock); `prepare` is tried once more after it.
   */
  repair?(baseBranch: string): Promise<void>;
  /** The git object store the agent's git writes into (shared with the other slots). */
  objectStore?(): Promise<string>;
}

/** @defaultValue 600000 — a local git command of the runner (checkout of a big tree) that takes longer is killed. */
export const LOCAL_GIT_TIMEOUT_MS = 600_000;

interface Git {
  raw(args: readonly string[]): Promise<string>;
}

/**
 * git in `cwd` through the one git runner (`git/runner.ts`): a timeout and SIGKILL, no hooks,
 * no fsmonitor, no configured programs, no inherited GIT_*; `drivers` switches off the diff,
 * merge and filter drivers the configuration defines (`driverOverrides`). Fails on a non-zero
 * exit with git's stderr as the message.
 */
function gitIn(
  cwd: string,
  drivers: readonly string[] = [],
  env: Record<string, string> = {},
): Git {
  return gitAt(cwd, { env, config: drivers, timeoutMs: LOCAL_GIT_TIMEOUT_MS });
}

/**
 * Removes what an agent could have set for this worktree alone: its `config.worktree` (read
 * when `extensions.worktreeConfig` is on). The repository's own config is the user's and stays;
 * what in it could run a program is switched off on every call instead.
 */
function resetWorktreeConfig(dir: string): void {
  try {
    const m = /^gitdir: (.+)$/m.exec(readFileSync(join(dir, '.git'), 'utf8'));
    if (m?.[1])
      rmSync(join(resolve(dir, m[1].trim()), 'config.worktree'), {
        force: true,
      });
  } catch {
    /* no pointer file: the worktree is recreated */
  }
}

/**
 * Whether `dir` is a linked worktree whose `.git` file names an admin directory that points
 * back at it (what `git worktree add` writes), judged from the files alone.
 */
export function linkedWorktreeIntact(dir: string): boolean {
  try {
    const dotGit = join(dir, '.git');
    if (!lstatSync(dotGit).isFile()) return false;
    const m = /^gitdir: (.+)$/m.exec(readFileSync(dotGit, 'utf8'));
    if (!m?.[1]) return false;
    const admin = resolve(dir, m[1].trim());
    const back = readFileSync(join(admin, 'gitdir'), 'utf8').trim();
    return (
      resolve(admin, back) === dotGit &&
      existsSync(join(admin, 'HEAD')) &&
      existsSync(join(admin, 'commondir'))
    );
  } catch {
    return false;
  }
}

const SHA = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/**
 * The commit HEAD of the worktree at `dir` points at, read from git's files: its `.git` file,
 * the admin directory's HEAD and a loose branch ref. Undefined whenever that is not the plain
 * case (packed or reftable refs, anything unexpected): the caller asks git then.
 */
export function headFromFiles(dir: string): string | undefined {
  try {
    const m = /^gitdir: (.+)$/m.exec(readFileSync(join(dir, '.git'), 'utf8'));
    if (!m?.[1]) return undefined;
    const admin = resolve(dir, m[1].trim());
    const head = readFileSync(join(admin, 'HEAD'), 'utf8').trim();
    if (SHA.test(head)) return head;
    const ref = /^ref: (refs\/heads\/\S+)$/.exec(head)?.[1];
    if (!ref) return undefined;
    const common = resolve(
      admin,
      readFileSync(join(admin, 'commondir'), 'utf8').trim(),
    );
    const sha = readFileSync(join(common, ref), 'utf8').trim();
    return SHA.test(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The agent left its worktree unusable: its attempt is refused (it counts, like any failure of
 * the agent's), and the next job's `prepare` repairs the worktree.
 */
function damaged(what: string): AttemptError {
  return new AttemptError(
    'result-refused',
    `the agent damaged its worktree (${what}); nothing was committed, and the worktree is repaired before the next job`,
  );
}

/**
 * Writes a linked worktree's admin files as `git worktree add` does — HEAD (detached at the
 * base), `commondir`, `gitdir` — and drops its index and stale locks: whatever an agent or a
 * killed git left there, git can use the worktree again. Only this slot's runner uses them.
 */
function rewriteAdminDir(
  admin: string,
  dotGit: string,
  baseSha: string,
  owner: FileOwner | undefined,
): void {
  for (const name of readdirSync(admin))
    if (name === 'index' || name.endsWith('.lock'))
      rmSync(join(admin, name), { recursive: true, force: true });
  for (const [name, text] of [
    ['HEAD', `${baseSha}\n`],
    ['commondir', '../..\n'],
    ['gitdir', `${dotGit}\n`],
  ] as const) {
    rmSync(join(admin, name), { recursive: true, force: true });
    replaceSlotFile(join(admin, name), text, owner);
  }
}

/**
 * The reset's `git clean`: untracked files and directories (nested repositories too when ignored
 * files go), and with `keepIgnored` every ignored file but those patterns — one git process
 * where listing the ignored files and removing them took a second (docs/benchmarks.md).
 */
export function cleanArgs(
  keepIgnored: readonly string[] | undefined,
): string[] {
  return keepIgnored
    ? ['clean', '-ffdxq', ...keepIgnored.flatMap((p) => ['-e', p])]
    : ['clean', '-fdq'];
}

export function parseShortstat(s: string): Omit<CommitOutcome, 'commitSha'> {
  const num = (re: RegExp) => Number(re.exec(s)?.[1] ?? 0);
  return {
    filesChanged: num(/(\d+) files? changed/),
    insertions: num(/(\d+) insertions?\(\+\)/),
    deletions: num(/(\d+) deletions?\(-\)/),
  };
}

/** A slot's worktree `<repo>/.worktrees/agent-00N` on branch `agent/00N`, reused across jobs. */
export class LocalWorktree implements Workspace {
  private readonly repo: Git;

  constructor(
    readonly repoPath: string,
    readonly path: string,
    readonly branch: string,
    /** Who the git files it rewrites belong to (the agent's user, whose git uses them). */
    private readonly owner?: FileOwner,
  ) {
    this.repo = gitIn(repoPath);
  }

  private tree(
    drivers: readonly string[] = [],
    env: Record<string, string> = {},
  ): Git {
    return gitIn(this.path, drivers, env);
  }

  /**
   * Before git touches the worktree's files (checkout, add, commit): the agent's worktree config
   * goes, and every driver the configuration git will read there defines is switched off.
   */
  private async disarm(dir: string): Promise<string[]> {
    resetWorktreeConfig(this.path);
    // Asked of git only when a configuration file changed since the last answer.
    return cachedDriverOverrides(dir, LOCAL_GIT_TIMEOUT_MS);
  }

  private async healthy(): Promise<boolean> {
    if (!existsSync(this.path)) return false;
    // Fast path without a git process per job: `.git` is our pointer file and the worktree's
    // admin directory points back at it. Anything else is settled by git itself.
    if (linkedWorktreeIntact(this.path)) return true;
    try {
      const top = (
        await this.tree().raw(['rev-parse', '--show-toplevel'])
      ).trim();
      return top === this.path;
    } catch {
      return false;
    }
  }

  /** The worktree's admin directory in the shared git directory, found by its back pointer. */
  private async adminDir(): Promise<string | undefined> {
    try {
      const common = (
        await this.repo.raw([
          'rev-parse',
          '--path-format=absolute',
          '--git-common-dir',
        ])
      ).trim();
      const dir = join(common, 'worktrees');
      for (const name of readdirSync(dir)) {
        try {
          const back = readFileSync(join(dir, name, 'gitdir'), 'utf8').trim();
          if (back === join(this.path, '.git')) return join(dir, name);
        } catch {
          /* not this one, or its back pointer was damaged */
        }
      }
      // A damaged back pointer: `git worktree add` names the directory after the worktree's.
      const byName = join(dir, basename(this.path));
      if (existsSync(byName) && !this.anotherWorktrees(byName)) return byName;
    } catch {
      /* none */
    }
    return undefined;
  }

  /** Whether an admin directory's back pointer names an existing worktree other than this one. */
  private anotherWorktrees(admin: string): boolean {
    try {
      const back = readFileSync(join(admin, 'gitdir'), 'utf8').trim();
      return back !== join(this.path, '.git') && existsSync(back);
    } catch {
      return false;
    }
  }

  /** Recreates a worktree an agent damaged (deleted `.git`, removed the directory). */
  private async recreate(
    baseSha: string,
    keepIgnored?: readonly string[],
  ): Promise<void> {
    const drivers = await this.disarm(this.repoPath);
    const admin = await this.adminDir();
    if (admin) {
      // Repaired in place: the directory may be a bind mount (Docker runtime), and the git
      // directory may be read-only there, so neither `rm` nor `worktree add` would do.
      mkdirSync(this.path, { recursive: true });
      rmSync(join(this.path, '.git'), { recursive: true, force: true });
      replaceSlotFile(join(this.path, '.git'), `gitdir: ${admin}\n`);
      rewriteAdminDir(admin, join(this.path, '.git'), baseSha, this.owner);
      resetWorktreeConfig(this.path);
      await this.tree(drivers).raw([
        'checkout',
        '--force',
        '-B',
        this.branch,
        baseSha,
      ]);
      await this.tree(drivers).raw(cleanArgs(keepIgnored));
      return;
    }
    rmSync(this.path, { recursive: true, force: true });
    await this.repo.raw(['worktree', 'prune']);
    await gitIn(this.repoPath, drivers).raw([
      'worktree',
      'add',
      '--force',
      '-B',
      this.branch,
      this.path,
      baseSha,
    ]);
  }

  private async baseCommit(baseBranch: string): Promise<string> {
    return (
      await this.repo.raw([
        'rev-parse',
        '--verify',
        `${baseRefOf(baseBranch)}^{commit}`,
      ])
    ).trim();
  }

  private objects: string | undefined;

  /** The repository's own object store (the worktree's pointer may be the agent's). */
  async objectStore(): Promise<string> {
    this.objects ??= join(
      (
        await this.repo.raw([
          'rev-parse',
          '--path-format=absolute',
          '--git-common-dir',
        ])
      ).trim(),
      'objects',
    );
    return this.objects;
  }

  /** Rebuilds the worktree's git files (HEAD, index, pointers) and checks out the base. */
  async repair(baseBranch: string): Promise<void> {
    await this.recreate(await this.baseCommit(baseBranch));
  }

  async prepare(
    baseBranch: string,
    keepIgnored?: readonly string[],
  ): Promise<string> {
    if (!(await this.healthy())) {
      const baseSha = await this.baseCommit(baseBranch);
      // A worktree made anew (`worktree add`) has no ignored files to remove.
      await this.recreate(baseSha, keepIgnored);
      return baseSha;
    }
    const git = this.tree(await this.disarm(this.path));
    // The base is what was checked out: read back from HEAD.
    await git.raw([
      'checkout',
      '--force',
      '-B',
      this.branch,
      baseRefOf(baseBranch),
    ]);
    await git.raw(cleanArgs(keepIgnored));
    return this.head(git);
  }

  /** HEAD's commit: from the ref files when git keeps it there (no process), else from git. */
  private async head(git: Git): Promise<string> {
    return (
      headFromFiles(this.path) ??
      (await git.raw(['rev-parse', '--verify', 'HEAD^{commit}'])).trim()
    );
  }

  async commit(
    baseSha: string,
    message: string,
    author: { name: string; email: string },
  ): Promise<CommitOutcome> {
    // Without its .git file, git in the worktree would find the main repository above it.
    if (!(await this.healthy()))
      throw damaged('.git is missing or points elsewhere');
    // A HEAD git cannot read (the agent wrote into it) is the agent's doing, not the slot's.
    const before = await this.head(this.tree()).catch((err: Error) => {
      throw damaged(err.message.trim().split('\n')[0] ?? 'HEAD is unreadable');
    });
    // What the agent configured while it ran is switched off before `add` runs any filter.
    const git = this.tree(await this.disarm(this.path), {
      GIT_AUTHOR_NAME: author.name,
      GIT_AUTHOR_EMAIL: author.email,
      GIT_COMMITTER_NAME: author.name,
      GIT_COMMITTER_EMAIL: author.email,
    });
    await git.raw(['add', '-A']);
    let summary: string | undefined;
    try {
      // Its summary line is the diff against its parent: base..HEAD when the agent did not commit.
      // From a file when the git helper is on: the title is not plain, and a commit given it as an
      // argument would fork the runner (~6 ms of its CPU per issue in the throughput row).
      const file = textArgumentFile('commit-message', message);
      summary = await git.raw(
        file
          ? ['commit', '--no-verify', '-F', file]
          : ['commit', '--no-verify', '-m', message],
      );
    } catch (err) {
      // Nothing staged (the agent changed nothing, or committed by itself) is not an error.
      const staged = await git
        .raw(['diff', '--cached', '--name-only'])
        .catch(() => 'unknown');
      if (staged.trim().length > 0) throw err;
    }
    const commitSha = await this.head(git);
    if (commitSha === baseSha)
      return { commitSha: null, filesChanged: 0, insertions: 0, deletions: 0 };
    const stat =
      summary !== undefined && before === baseSha
        ? summary
        : await git.raw(['diff', '--shortstat', baseSha, commitSha]);
    return { commitSha, ...parseShortstat(stat) };
  }
}
