import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';

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
  /** Resets the workspace to the tip of `baseBranch`; returns the base commit. */
  prepare(baseBranch: string): Promise<string>;
  /** Commits what the agent changed (unless it committed itself). */
  commit(baseSha: string, message: string, author: { name: string; email: string }): Promise<CommitOutcome>;
  /** Remote mode: makes the result commit reachable by the supervisor at `ref`; returns the ref. */
  publish?(commitSha: string, ref: string): Promise<string>;
  /** Remote mode: checks the remote answers and accepts the credentials (before taking jobs). */
  probe?(baseBranch: string): Promise<void>;
}

function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('GIT_')) env[k] = v;
  return env;
}

export function parseShortstat(s: string): Omit<CommitOutcome, 'commitSha'> {
  const num = (re: RegExp) => Number(re.exec(s)?.[1] ?? 0);
  return { filesChanged: num(/(\d+) files? changed/), insertions: num(/(\d+) insertions?\(\+\)/), deletions: num(/(\d+) deletions?\(-\)/) };
}

/** A slot's worktree `<repo>/.worktrees/agent-00N` on branch `agent/00N`, reused across jobs. */
export class LocalWorktree implements Workspace {
  private readonly repo: SimpleGit;

  constructor(readonly repoPath: string, readonly path: string, readonly branch: string) {
    this.repo = simpleGit({ baseDir: repoPath }).env(cleanEnv());
  }

  private tree(): SimpleGit {
    return simpleGit({ baseDir: this.path }).env(cleanEnv());
  }

  private async healthy(): Promise<boolean> {
    if (!existsSync(this.path)) return false;
    try {
      const top = (await this.tree().raw(['rev-parse', '--show-toplevel'])).trim();
      return top === this.path;
    } catch {
      return false;
    }
  }

  /** The worktree's admin directory in the shared git directory, found by its back pointer. */
  private async adminDir(): Promise<string | undefined> {
    try {
      const common = (await this.repo.raw(['rev-parse', '--path-format=absolute', '--git-common-dir'])).trim();
      const dir = join(common, 'worktrees');
      for (const name of readdirSync(dir)) {
        const back = readFileSync(join(dir, name, 'gitdir'), 'utf8').trim();
        if (back === join(this.path, '.git')) return join(dir, name);
      }
    } catch {
      /* none */
    }
    return undefined;
  }

  /** Recreates a worktree an agent damaged (deleted `.git`, removed the directory). */
  private async recreate(baseSha: string): Promise<void> {
    const admin = await this.adminDir();
    if (admin) {
      // Repaired in place: the directory may be a bind mount (Docker runtime), and the git
      // directory may be read-only there, so neither `rm` nor `worktree add` would do.
      mkdirSync(this.path, { recursive: true });
      rmSync(join(this.path, '.git'), { recursive: true, force: true });
      writeFileSync(join(this.path, '.git'), `gitdir: ${admin}\n`);
      await this.tree().raw(['checkout', '--force', '-B', this.branch, baseSha]);
      await this.tree().raw(['clean', '-fd']);
      return;
    }
    rmSync(this.path, { recursive: true, force: true });
    await this.repo.raw(['worktree', 'prune']);
    await this.repo.raw(['worktree', 'add', '--force', '-B', this.branch, this.path, baseSha]);
  }

  async prepare(baseBranch: string): Promise<string> {
    const baseSha = (await this.repo.raw(['rev-parse', '--verify', `refs/heads/${baseBranch}^{commit}`])).trim();
    if (!(await this.healthy())) {
      await this.recreate(baseSha);
      return baseSha;
    }
    const git = this.tree();
    await git.raw(['checkout', '--force', '-B', this.branch, baseSha]);
    await git.raw(['clean', '-fd']);
    return baseSha;
  }

  async commit(baseSha: string, message: string, author: { name: string; email: string }): Promise<CommitOutcome> {
    // Without its .git file, git in the worktree would find the main repository above it.
    if (!(await this.healthy())) {
      throw new Error('the agent damaged its worktree (.git is missing or points elsewhere); nothing was committed, and the worktree is recreated for the next job');
    }
    const git = this.tree().env({ ...cleanEnv(), GIT_AUTHOR_NAME: author.name, GIT_AUTHOR_EMAIL: author.email, GIT_COMMITTER_NAME: author.name, GIT_COMMITTER_EMAIL: author.email });
    await git.raw(['add', '-A']);
    const staged = (await git.raw(['diff', '--cached', '--name-only'])).trim();
    if (staged.length > 0) {
      await git.raw(['commit', '--no-verify', '--quiet', '-m', message]);
    }
    const head = (await git.raw(['rev-parse', 'HEAD'])).trim();
    if (head === baseSha) return { commitSha: null, filesChanged: 0, insertions: 0, deletions: 0 };
    const stat = await git.raw(['diff', '--shortstat', baseSha, head]);
    return { commitSha: head, ...parseShortstat(stat) };
  }
}
