import {
  CLAIM_HEADER,
  encodeClaim,
  type ResultClaim,
} from '../contract/result-claim.js';
import { randomBytes } from 'node:crypto';
import { existsSync, lchownSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { replaceSlotFile, type FileOwner } from '../contract/slot-files.js';
import { join } from 'node:path';
import { gitEnv, redact, type GitCredentials } from './git-auth.js';
import { baseRefOf } from '../contract/job.js';
import { runGit, type GitError } from '../git/runner.js';
import {
  LOCAL_GIT_TIMEOUT_MS,
  LocalWorktree,
  cleanArgs,
  type CommitOutcome,
  type Workspace,
} from './workspace.js';

/**
 * Why a remote git operation failed. `unreachable` and `auth` are the remote's fault: the
 * runner hands the job back (no attempt spent) and backs off. `rejected`: the remote refused
 * the push itself (the result ref exists, or is not one runners may write).
 */
export type GitRemoteErrorKind = 'unreachable' | 'auth' | 'rejected';

export class GitRemoteError extends Error {
  constructor(
    readonly kind: GitRemoteErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'GitRemoteError';
  }
}

export interface RemoteCloneOptions {
  url: string;
  pushUrl?: string | undefined;
  /** The runner-local cache: a bare repository `repo.git` shared by the slots of this host. */
  cacheDir: string;
  /** This slot's worktree of the cache. */
  path: string;
  branch: string;
  agentId: string;
  credentials: GitCredentials;
  timeoutMs: number;
  /**
   * The agent's user, when the runner is root and runs its git as that user (runGitAs): the
   * clone and the worktree are made for it; the cache directory above them stays the runner's.
   */
  owner?: FileOwner;
}

interface GitRun {
  stdout: string;
  stderr: string;
}

/**
 * The whole configuration of the runner's cache: a bare repository, and (slots share it) no
 * automatic gc or ref packing under their feet.
 */
function cacheConfig(format: 'sha1' | 'sha256'): string {
  return [
    '[core]',
    `\trepositoryformatversion = ${format === 'sha256' ? 1 : 0}`,
    '\tfilemode = true',
    '\tbare = true',
    ...(format === 'sha256' ? ['[extensions]', '\tobjectformat = sha256'] : []),
    '[gc]',
    '\tauto = 0',
    '[maintenance]',
    '\tauto = false',
    '',
  ].join('\n');
}

function classify(stderr: string, timedOut: boolean): GitRemoteErrorKind {
  if (timedOut) return 'unreachable';
  if (
    /Authentication failed|returned error: 40[17]|could not read Username|terminal prompts disabled|Permission denied \(publickey/i.test(
      stderr,
    )
  )
    return 'auth';
  if (
    /\[rejected\]|\[remote rejected\]|returned error: 403|failed to push some refs/i.test(
      stderr,
    )
  )
    return 'rejected';
  return 'unreachable';
}

/**
 * A runner's git access when it cannot see the supervisor's repository: its own bare clone
 * under `cacheDir`, a worktree per slot, fetched from `url` before each job, and the result
 * commit pushed to `refs/supervisor/results/<issue>/<attempt>` (never a branch).
 */
export class RemoteClone implements Workspace {
  readonly path: string;
  private readonly cache: string;
  private readonly baseRef: string;
  private tree: LocalWorktree | undefined;
  private initialised = false;
  private config = cacheConfig('sha1');

  constructor(private readonly o: RemoteCloneOptions) {
    this.path = o.path;
    this.cache = join(o.cacheDir, 'repo.git');
    // Per-slot refs: slots sharing the cache never contend for one ref lock.
    this.baseRef = `refs/supervisor/slots/${o.agentId}/base`;
  }

  /** The remote URL as it may be shown (no credentials). */
  get shownUrl(): string {
    return redact(this.o.url, this.o.credentials.secrets);
  }

  /** git through the one git runner: a timeout on every call (the remote's on network calls). */
  private async run(
    args: string[],
    opts: {
      cwd?: string;
      network?: boolean;
      config?: Array<[string, string]>;
    } = {},
  ): Promise<GitRun> {
    const env = gitEnv(this.o.credentials);
    // More configuration in the environment (never on the command line, which `ps` shows).
    for (const [k, v] of opts.config ?? []) {
      const i = Number(env.GIT_CONFIG_COUNT ?? 0);
      env[`GIT_CONFIG_KEY_${i}`] = k;
      env[`GIT_CONFIG_VALUE_${i}`] = v;
      env.GIT_CONFIG_COUNT = String(i + 1);
    }
    try {
      return await runGit(args, {
        cwd: opts.cwd ?? this.cache,
        env,
        timeoutMs: opts.network ? this.o.timeoutMs : LOCAL_GIT_TIMEOUT_MS,
        maxBuffer: 16 * 1024 * 1024,
      });
    } catch (err) {
      const e = err as GitError;
      const timedOut = e.timedOut === true;
      const detail = redact(
        (e.stderr || e.message)
          .trim()
          .split('\n')
          .filter(Boolean)
          .slice(-3)
          .join(' | '),
        this.o.credentials.secrets,
      );
      if (!opts.network) throw new Error(`git ${args[0]} failed: ${detail}`);
      const kind = classify(e.stderr ?? '', timedOut);
      const what = timedOut
        ? `no answer within ${this.o.timeoutMs} ms`
        : detail;
      throw new GitRemoteError(
        kind,
        `git remote ${this.shownUrl} ${kind === 'auth' ? 'refused the credentials' : kind === 'rejected' ? 'refused the push' : 'is unreachable'} (git ${args[0]}): ${what}`,
      );
    }
  }

  private async ensureCache(): Promise<void> {
    if (this.initialised) return;
    mkdirSync(this.o.cacheDir, { recursive: true });
    this.forOwner(this.cache);
    for (let i = 0; ; i++) {
      try {
        if (!existsSync(join(this.cache, 'HEAD')))
          await this.run(['init', '--quiet', '--bare', this.cache], {
            cwd: this.o.cacheDir,
          });
        const format = await this.run([
          'config',
          '--get',
          'extensions.objectformat',
        ]).then(
          (r) => r.stdout.trim(),
          () => '',
        );
        this.config = cacheConfig(format === 'sha256' ? 'sha256' : 'sha1');
        break;
      } catch (err) {
        // Another slot initialising the same cache at once: try again.
        if (i >= 10) throw err;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 200));
      }
    }
    this.resetConfig();
    this.initialised = true;
  }

  /**
   * Puts the cache's configuration back to ours before every call that reaches the remote with
   * the credentials. The agent can write it (through its worktree, or as the clone's owner) and
   * the safe settings of the git runner do not cover what redirects a fetch: a planted
   * `url.<trap>.insteadOf`, `http.proxy` or `include.path` would send the token to a host of its
   * choosing. Written beside and renamed over (never through a planted symbolic link; slots
   * sharing the cache may do it at once).
   */
  private resetConfig(): void {
    const file = join(this.cache, 'config');
    const tmp = `${file}.${process.pid}-${randomBytes(4).toString('hex')}`;
    replaceSlotFile(tmp, this.config, this.o.owner);
    renameSync(tmp, file);
  }

  /** An (empty) directory git then fills as the agent's user, when there is one. */
  private forOwner(dir: string): void {
    const { owner } = this.o;
    if (!owner || existsSync(dir)) return;
    mkdirSync(dir, { recursive: true });
    lchownSync(dir, owner.uid, owner.gid);
  }

  /** Checks that the remote answers and the credentials work, without changing anything. */
  async probe(baseBranch: string): Promise<void> {
    await this.ensureCache();
    this.resetConfig();
    const out = await this.run(
      ['ls-remote', this.o.url, baseRefOf(baseBranch)],
      { network: true },
    );
    if (!out.stdout.trim())
      throw new GitRemoteError(
        'unreachable',
        `git remote ${this.shownUrl} has no branch ${baseBranch}`,
      );
  }

  async prepare(
    baseBranch: string,
    keepIgnored?: readonly string[],
  ): Promise<string> {
    await this.ensureCache();
    this.resetConfig();
    await this.run(
      [
        'fetch',
        '--quiet',
        '--no-tags',
        '--no-write-fetch-head',
        this.o.url,
        `+${baseRefOf(baseBranch)}:${this.baseRef}`,
      ],
      { network: true },
    ).catch((err: unknown) => {
      if (
        err instanceof GitRemoteError &&
        /couldn't find remote ref/i.test(err.message)
      ) {
        throw new GitRemoteError(
          'unreachable',
          `git remote ${this.shownUrl} has no branch ${baseBranch}`,
        );
      }
      throw err;
    });
    const baseSha = (
      await this.run(['rev-parse', '--verify', `${this.baseRef}^{commit}`])
    ).stdout.trim();
    if (await this.healthy()) {
      await this.run(
        ['checkout', '--quiet', '--force', '-B', this.o.branch, baseSha],
        { cwd: this.path },
      );
      await this.run(cleanArgs(keepIgnored), { cwd: this.path });
    } else {
      rmSync(this.path, { recursive: true, force: true });
      this.forOwner(this.path);
      await this.run(['worktree', 'prune']);
      await this.run([
        'worktree',
        'add',
        '--quiet',
        '--force',
        '-B',
        this.o.branch,
        this.path,
        baseSha,
      ]);
    }
    return baseSha;
  }

  private async healthy(): Promise<boolean> {
    if (!existsSync(this.path)) return false;
    try {
      return (
        (
          await this.run(['rev-parse', '--show-toplevel'], { cwd: this.path })
        ).stdout.trim() === this.path
      );
    } catch {
      return false;
    }
  }

  /** The cache's objects: the slots of this host write into them. */
  objectStore(): Promise<string> {
    return Promise.resolve(join(this.cache, 'objects'));
  }

  commit(
    baseSha: string,
    message: string,
    author: { name: string; email: string },
  ): Promise<CommitOutcome> {
    // Created late: simple-git insists that the cache exists.
    this.tree ??= new LocalWorktree(this.cache, this.o.path, this.o.branch);
    return this.tree.commit(baseSha, message, author);
  }

  /**
   * Pushes the result commit to its result ref; the remote accepts only new refs there, and
   * only from the holder of the claim (sent as a header) of that attempt.
   */
  async publish(
    commitSha: string,
    ref: string,
    claim?: ResultClaim,
  ): Promise<string> {
    this.resetConfig();
    await this.run(
      [
        'push',
        '--quiet',
        '--no-verify',
        this.o.pushUrl ?? this.o.url,
        `${commitSha}:${ref}`,
      ],
      {
        network: true,
        config: claim
          ? [['http.extraHeader', `${CLAIM_HEADER}: ${encodeClaim(claim)}`]]
          : [],
      },
    );
    return ref;
  }
}
