/**
 * The one way this project runs git: the supervisor, the runner and the landing code all call
 * `runGit` (or a client from `gitAt`). Every call
 * - has a timeout, after which git is SIGKILLed (a held `.lock`, a hung remote, a stopped
 *   process never stalls its caller for longer);
 * - runs with a safe configuration: no hooks, no fsmonitor, and none of the configuration keys
 *   that make git run a program (ssh and proxy commands, credential helpers, signing programs,
 *   external diff, and the diff/merge/filter drivers an agent could define and name from
 *   `.gitattributes`). Agents can write the repository's git directory and their worktree, so
 *   anything git would run from there is a program of theirs, run with our environment;
 * - inherits no GIT_* variables (a hook's GIT_DIR, an outer repository's) and no system config.
 */
import { execFile } from 'node:child_process';
import { withoutControlPlane } from './control-plane-env.js';
import { SpawnHelper, type HelperResult } from './spawn-helper.js';

/** @defaultValue 120000 — a git call that takes longer is killed. */
export const DEFAULT_GIT_TIMEOUT_MS = 120_000;

/** Fixed settings on every call (`-c` outranks every config file). */
export const SAFE_GIT_CONFIG: readonly string[] = [
  'core.hooksPath=/dev/null',
  'core.fsmonitor=false',
  'core.sshCommand=ssh',
  'core.gitProxy=',
  'core.askPass=',
  'core.alternateRefsCommand=',
  'core.pager=cat',
  'core.editor=true',
  'sequence.editor=true',
  // An empty value empties the list of helpers configured before it.
  'credential.helper=',
  'commit.gpgSign=false',
  'tag.gpgSign=false',
  'push.gpgSign=false',
  'gpg.program=false',
  'diff.external=',
  'protocol.ext.allow=never',
  'maintenance.auto=false',
  'gc.auto=0',
];

/** Config keys naming a program git may run for a path, by their attributes. */
const DRIVER_KEY =
  /^(filter\.[^\n]+\.(clean|smudge|process)|diff\.[^\n]+\.(command|textconv)|merge\.[^\n]+\.driver)$/i;

export interface GitRunOptions {
  cwd: string;
  /** @defaultValue DEFAULT_GIT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Extra environment (identity, credentials); GIT_* from the caller's own environment never pass. */
  env?: Record<string, string>;
  /** More `-c key=value` settings (after the safe ones). */
  config?: readonly string[];
  /** @defaultValue 64 MiB */
  maxBuffer?: number;
}

export interface GitOutput {
  stdout: string;
  stderr: string;
}

/** A git call that failed: its exit code (null when killed), stderr, and whether it timed out. */
export class GitError extends Error {
  constructor(
    message: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    readonly timedOut: boolean,
    readonly stdout: string,
    opts?: { cause?: unknown },
  ) {
    super(message, opts);
    this.name = 'GitError';
  }
}

let baseEnv: Record<string, string> | undefined;
let runAs: { uid: number; gid: number } | undefined;

/**
 * Every later git call of this process runs as this user, with no control-plane variables: a
 * runner whose agent has a uid of its own (Docker) runs its git as the agent, so the worktree
 * and objects keep one owner and git never runs with the runner's uid or configuration.
 */
export function runGitAs(user: { uid: number; gid: number }): void {
  runAs = user;
  baseEnv = undefined;
  helper?.stop();
  helper = undefined;
}

let helper: SpawnHelper | undefined;

/**
 * Later git calls of this process are started by a small shell of its own (`spawn-helper.ts`)
 * rather than forked from it: for the runner, whose forks cost ~2 ms of CPU each. Its git output
 * goes through files in `dir` (emptied now). Not with `runGitAs` (git as another user starts
 * directly, as that user).
 */
export function useSpawnHelper(dir: string): void {
  helper?.stop();
  helper = runAs
    ? undefined
    : new SpawnHelper(dir, safeGitEnv(), ['git', ...safeConfigArgs()]);
}

/** Later git calls of this process are started directly again; the helper's shell ends. */
export function stopSpawnHelper(): void {
  helper?.stop();
  helper = undefined;
}

/**
 * A file holding `text`, for an argument that is text (a commit message made of an issue's
 * title): with the spawn helper on, git reads it from the file (`commit -F <path>`), so the call
 * is made of plain words and goes through the helper rather than a fork of this process.
 * Undefined without the helper: pass the text itself (started directly, as one argv entry).
 */
export function textArgumentFile(
  name: string,
  text: string,
): string | undefined {
  return helper?.textFile(name, text);
}

/** The user every git call of this process runs as (`runGitAs`), if not this process's own. */
export function gitUser(): { uid: number; gid: number } | undefined {
  return runAs;
}

/** The process environment without GIT_* variables, plus settings that keep git non-interactive. */
export function safeGitEnv(
  extra: Record<string, string> = {},
): Record<string, string> {
  if (!baseEnv) {
    baseEnv = {};
    if (runAs) Object.assign(baseEnv, withoutControlPlane(process.env));
    else
      for (const [k, v] of Object.entries(process.env))
        if (v !== undefined && !k.startsWith('GIT_')) baseEnv[k] = v;
    Object.assign(baseEnv, {
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_ASKPASS: 'false',
      SSH_ASKPASS: 'false',
      GIT_PAGER: 'cat',
    });
  }
  return { ...baseEnv, ...extra };
}

/** `-c` arguments: the safe configuration, then the caller's. */
export function safeConfigArgs(extra: readonly string[] = []): string[] {
  return [...SAFE_GIT_CONFIG, ...extra].flatMap((c) => ['-c', c]);
}

/**
 * Runs `git <args>` in `opts.cwd` with the safe configuration and a timeout. Resolves with its
 * output when git exits 0; rejects with a GitError otherwise (the message is git's stderr, or
 * what happened: not found, timed out).
 */
export function runGit(
  args: readonly string[],
  opts: GitRunOptions,
): Promise<GitOutput> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_GIT_TIMEOUT_MS;
  const maxBuffer = opts.maxBuffer ?? 64 * 1024 * 1024;
  const argv = [...safeConfigArgs(opts.config), ...args];
  if (!helper) return execGit(args, argv, opts, timeoutMs, maxBuffer);
  return helper
    .run({
      // The safe configuration is the helper's own prefix: `git -c <safe> <these>`.
      args: [...(opts.config ?? []).flatMap((c) => ['-c', c]), ...args],
      cwd: opts.cwd,
      env: opts.env ?? {},
      timeoutMs,
      maxBuffer,
    })
    .then(
      (r) =>
        r
          ? helperOutcome(args, r, timeoutMs)
          : execGit(args, argv, opts, timeoutMs, maxBuffer),
      (err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        throw new GitError(message, args, null, '', false, '', { cause: err });
      },
    );
}

function helperOutcome(
  args: readonly string[],
  r: HelperResult,
  timeoutMs: number,
): GitOutput {
  if (r.status === 0 && !r.timedOut)
    return { stdout: r.stdout, stderr: r.stderr };
  const message = r.timedOut
    ? `git ${args[0]} timed out after ${timeoutMs} ms (killed)`
    : r.stderr.trim() || `Command failed: git ${args.join(' ')}`;
  throw new GitError(
    message,
    args,
    r.timedOut ? null : r.status,
    r.stderr,
    r.timedOut,
    r.stdout,
  );
}

function execGit(
  args: readonly string[],
  argv: readonly string[],
  opts: GitRunOptions,
  timeoutMs: number,
  maxBuffer: number,
): Promise<GitOutput> {
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      argv,
      {
        cwd: opts.cwd,
        env: safeGitEnv(opts.env),
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
        maxBuffer,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (!err) return resolve({ stdout, stderr });
        const e = err as NodeJS.ErrnoException & {
          killed?: boolean;
          signal?: string | null;
          code?: number | string;
        };
        const timedOut = e.killed === true && e.signal === 'SIGKILL';
        const exitCode = typeof e.code === 'number' ? e.code : null;
        const message = timedOut
          ? `git ${args[0]} timed out after ${timeoutMs} ms (killed)`
          : stderr.trim() || e.message;
        reject(
          new GitError(message, args, exitCode, stderr, timedOut, stdout, {
            cause: err,
          }),
        );
      },
    );
  });
}

export interface GitClient {
  /** Runs `git <args>` in the client's directory; resolves with its stdout. */
  raw(args: readonly string[]): Promise<string>;
}

/** A client for one directory (and one environment, timeout and extra configuration). */
export function gitAt(
  dir: string,
  opts: Omit<GitRunOptions, 'cwd'> = {},
): GitClient {
  return {
    raw: async (args) => (await runGit(args, { ...opts, cwd: dir })).stdout,
  };
}

/**
 * `-c` settings that switch off every diff, merge and filter driver the repository's
 * configuration defines (read with its includes). A driver is a program named in config and
 * picked by `.gitattributes`, both of which an agent can write; with its program empty, git
 * treats the path as having no driver.
 */
export async function driverOverrides(
  cwd: string,
  timeoutMs?: number,
  /** Gets every configuration key git listed (`git/driver-cache.ts` looks for includes). */
  seen?: (keys: string[]) => void,
): Promise<string[]> {
  let out = '';
  try {
    out = (
      await runGit(['config', '--null', '--name-only', '--get-regexp', '.'], {
        cwd,
        ...(timeoutMs ? { timeoutMs } : {}),
      })
    ).stdout;
  } catch (err) {
    // Exit 1: no configuration at all.
    if ((err as GitError).exitCode === 1) return [];
    throw err;
  }
  const keys = new Set<string>();
  seen?.(out.split('\0').filter(Boolean));
  for (const k of out.split('\0')) {
    if (!DRIVER_KEY.test(k)) continue;
    keys.add(`${k}=`);
    // A filter marked required would fail without its program: it is not required here.
    const filter = /^filter\.(.+)\.[a-z]+$/i.exec(k);
    if (filter) keys.add(`filter.${filter[1]}.required=false`);
  }
  return [...keys];
}
