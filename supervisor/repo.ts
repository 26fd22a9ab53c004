import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { SupervisorError } from './errors.js';
import {
  DEFAULT_GIT_TIMEOUT_MS,
  GitError,
  driverOverrides,
  runGit,
  type GitClient,
} from '../git/runner.js';

/** Where everything of one repository lives. */
export interface RepoPaths {
  /** The main worktree's top level directory. */
  root: string;
  gitCommonDir: string;
  /** Short stable id of the repository (queue names, labels). */
  repoId: string;
  stateDir: string;
  dbFile: string;
  logDir: string;
  runDir: string;
  worktreesDir: string;
  pidFile: string;
  daemonLog: string;
  configFile: string;
}

export { SAFE_GIT_CONFIG, type GitClient } from '../git/runner.js';

let commandTimeoutMs = DEFAULT_GIT_TIMEOUT_MS;

/** Sets the timeout of every git command the supervisor runs (config `git.commandTimeout`). */
export function setGitCommandTimeout(ms: number): void {
  commandTimeoutMs = ms;
}

/** The timeout of every git command the supervisor runs. */
export function gitCommandTimeout(): number {
  return commandTimeoutMs;
}

/**
 * A git client for the supervisor's own git: the one git runner (`git/runner.ts`: timeout and
 * SIGKILL, no hooks, no fsmonitor, no configured programs, no inherited GIT_*). It runs git
 * directly: simple-git waits 50 ms more after every command that prints nothing (`update-ref`,
 * `worktree add --quiet`), which the recorder's serial writes and scale-up felt. Like
 * simple-git's `raw`, it fails when git exits non-zero and says why on stderr (a non-zero exit
 * with nothing on stderr resolves with stdout); a timeout always fails.
 */
export function gitAt(
  dir: string,
  opts: {
    /** Also switch off the configured diff/merge/filter drivers (commands that write files). */
    disarmDrivers?: boolean;
  } = {},
): GitClient {
  return {
    raw: async (args) =>
      runGit(args, {
        cwd: dir,
        timeoutMs: commandTimeoutMs,
        maxBuffer: 256 * 1024 * 1024,
        config: opts.disarmDrivers
          ? await driverOverrides(dir, commandTimeoutMs)
          : [],
      }).then(
        (o) => o.stdout,
        (err: unknown) => {
          if (
            err instanceof GitError &&
            !err.timedOut &&
            err.exitCode !== null &&
            err.stderr.trim().length === 0
          )
            return err.stdout;
          throw err;
        },
      ),
  };
}

export function pathsFor(root: string, gitCommonDir: string): RepoPaths {
  const stateDir = join(root, '.supervisor');
  return {
    root,
    gitCommonDir,
    repoId: createHash('sha256')
      .update(gitCommonDir)
      .digest('hex')
      .slice(0, 12),
    stateDir,
    dbFile: join(stateDir, 'supervisor.db'),
    logDir: join(stateDir, 'logs'),
    runDir: join(stateDir, 'run'),
    worktreesDir: join(root, '.worktrees'),
    pidFile: join(stateDir, 'supervisor.pid'),
    daemonLog: join(stateDir, 'supervisor.log'),
    configFile: join(root, 'supervisor.config.json'),
  };
}

/** Finds the repository that `dir` belongs to; refuses non-repositories and repositories with no commit. */
export async function resolveRepo(dir: string): Promise<RepoPaths> {
  const abs = resolve(dir);
  let isDir = false;
  try {
    isDir = statSync(abs).isDirectory();
  } catch {
    /* reported below */
  }
  if (!isDir) {
    throw new SupervisorError(
      'ERR_SUP_NOT_A_REPO',
      `${abs} is not a directory`,
      { hint: 'pass --repo with the path of a git repository' },
    );
  }
  try {
    accessSync(abs, constants.R_OK | constants.X_OK);
  } catch (cause) {
    throw new SupervisorError(
      'ERR_SUP_NOT_A_REPO',
      `${abs} cannot be read by this user (${(cause as NodeJS.ErrnoException).code ?? 'permission denied'})`,
      {
        hint: `fix its permissions (ls -ld ${abs}) or run the supervisor as the repository's owner`,
        cause,
      },
    );
  }
  const git = gitAt(abs);
  let commonDir: string;
  let top: string;
  try {
    commonDir = (
      await git.raw(['rev-parse', '--path-format=absolute', '--git-common-dir'])
    ).trim();
    top = (await git.raw(['rev-parse', '--show-toplevel'])).trim();
  } catch (cause) {
    // git's own words tell "no repository" from "cannot read it" and "owned by someone else".
    const why = /fatal: (.*)/.exec((cause as Error).message)?.[1]?.trim();
    const dubious = /dubious ownership/.test(why ?? '');
    const denied = /permission denied/i.test(why ?? '');
    throw new SupervisorError(
      'ERR_SUP_NOT_A_REPO',
      `${abs} is not inside a git repository (or it cannot be read)${why ? `: git says "${why}"` : ''}`,
      {
        hint: dubious
          ? `the repository belongs to another user; run the supervisor as its owner, or trust it: git config --global --add safe.directory ${abs}`
          : denied
            ? `this user may not read ${abs}; fix its permissions or run the supervisor as the repository's owner`
            : 'run `git init` there first, or pass --repo with the path of a git repository',
        cause,
      },
    );
  }
  try {
    await git.raw(['rev-parse', '--verify', 'HEAD^{commit}']);
  } catch (cause) {
    throw new SupervisorError(
      'ERR_SUP_EMPTY_REPO',
      `the repository at ${top} has no commit yet`,
      {
        hint: 'make a first commit (agents branch off it): git commit --allow-empty -m "initial commit"',
        cause,
      },
    );
  }
  const realCommon = realpathSync(commonDir);
  // Inside an agent worktree, the main worktree is the common dir's parent.
  const root = realCommon.endsWith('/.git')
    ? realCommon.slice(0, -'/.git'.length)
    : realpathSync(top);
  return pathsFor(root, realCommon);
}

export function isInitialised(paths: RepoPaths): boolean {
  try {
    statSync(paths.dbFile);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    // Not "not initialised" (which would send the user to `init` over their state): unreadable.
    throw new SupervisorError(
      'ERR_SUP_DATABASE',
      `cannot read the supervisor state in ${paths.stateDir}: ${(err as Error).message}`,
      {
        hint: `check that ${paths.stateDir} is readable and writable by this user (ls -ld ${paths.stateDir}), or run the supervisor as its owner`,
        cause: err,
      },
    );
  }
}

/** Creates `.supervisor/` and keeps it and `.worktrees/` out of git (idempotent). */
export function initStateDir(paths: RepoPaths): void {
  for (const d of [paths.stateDir, paths.logDir, paths.runDir])
    mkdirSync(d, { recursive: true });
  const infoDir = join(paths.gitCommonDir, 'info');
  mkdirSync(infoDir, { recursive: true });
  const exclude = join(infoDir, 'exclude');
  const current = existsSync(exclude) ? readFileSync(exclude, 'utf8') : '';
  const lines = current.split('\n').map((l) => l.trim());
  const wanted = ['/.supervisor/', '/.worktrees/', '.env.worktree'].filter(
    (p) => !lines.includes(p),
  );
  if (wanted.length > 0) {
    const sep = current.length === 0 || current.endsWith('\n') ? '' : '\n';
    writeFileSync(exclude, `${current}${sep}${wanted.join('\n')}\n`);
  }
}

/** The branch checked out in the main worktree (the default base branch for agents). */
export async function currentBranch(root: string): Promise<string> {
  try {
    return (await gitAt(root).raw(['symbolic-ref', '--short', 'HEAD'])).trim();
  } catch (cause) {
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `the main worktree at ${root} is on a detached HEAD`,
      {
        hint: 'check out the branch agents should start from, or set "baseBranch" in supervisor.config.json',
        cause,
      },
    );
  }
}
