import { execFile } from 'node:child_process';
import { SAFE_GIT_CONFIG } from '../repo.js';

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
    opts?: { env?: Record<string, string>; input?: string },
  ): Promise<GitOutcome>;
  /** Runs git; rejects unless it exits 0; resolves with its trimmed output. */
  ok(
    args: readonly string[],
    opts?: { env?: Record<string, string> },
  ): Promise<string>;
}

/**
 * The landing's git: hooks and fsmonitor off (agents can write the git dir), no inherited
 * GIT_* variables, a timeout, and an identity of its own for the commits it makes.
 * (core's git runner replaces this once it lands.)
 */
export function landGit(dir: string, timeoutMs = 600_000): LandGit {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('GIT_')) base[k] = v;
  Object.assign(base, {
    GIT_TERMINAL_PROMPT: '0',
    GIT_COMMITTER_NAME: 'agent-supervisor',
    GIT_COMMITTER_EMAIL: 'supervisor@localhost',
    GIT_EDITOR: 'true',
  });
  const config = [
    ...SAFE_GIT_CONFIG,
    'rebase.autoStash=false',
    'advice.detachedHead=false',
    'merge.verbosity=0',
  ].flatMap((c) => ['-c', c]);
  const run: LandGit['run'] = (args, opts = {}) =>
    new Promise((resolve, reject) => {
      const child = execFile(
        'git',
        [...config, ...args],
        {
          cwd: dir,
          env: { ...base, ...opts.env },
          timeout: timeoutMs,
          killSignal: 'SIGKILL',
          maxBuffer: 256 * 1024 * 1024,
          encoding: 'utf8',
        },
        (err, stdout, stderr) => {
          const e = err as
            (NodeJS.ErrnoException & { killed?: boolean }) | null;
          if (e && (typeof e.code === 'string' || e.killed))
            return reject(
              new Error(
                e.killed
                  ? `git ${args[0]} timed out after ${timeoutMs} ms`
                  : e.message,
              ),
            );
          resolve({
            code: e ? Number(e.code ?? 1) : 0,
            stdout,
            stderr,
          });
        },
      );
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
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
