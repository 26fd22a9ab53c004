import { redactSecrets } from '../../contract/errors.js';
import type { Context } from '../context.js';
import { SupervisorError } from '../errors.js';
import { landGit, type LandGit } from './git.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/** The branch agents start from and landings move, as git names it. */
export interface Base {
  /** As configured: `main`, or `origin/main` for a remote-tracking base. */
  name: string;
  /** `refs/heads/main`, or `refs/remotes/origin/main`. */
  ref: string;
  /** A remote-tracking base: the remote and its branch (fetched, and pushed to when landing). */
  remote?: { name: string; branch: string };
}

/**
 * What `baseBranch` names: a local branch when one has that name; otherwise `<remote>/<branch>`
 * with a configured remote is that remote's branch (its tracking ref may not be fetched yet).
 */
export async function resolveBase(git: LandGit, name: string): Promise<Base> {
  const local = `refs/heads/${name}`;
  const slash = name.indexOf('/');
  if (slash <= 0) return { name, ref: local };
  if ((await git.run(['show-ref', '--verify', '--quiet', local])).code === 0)
    return { name, ref: local };
  const remote = name.slice(0, slash);
  const url = await git.run(['config', '--get', `remote.${remote}.url`]);
  if (url.code !== 0 || !url.stdout.trim()) return { name, ref: local };
  return {
    name,
    ref: `refs/remotes/${name}`,
    remote: { name: remote, branch: name.slice(slash + 1) },
  };
}

/** The ref runners start from: the branch name for a local base, the full ref for a remote one. */
export function runnerBase(base: Base): string {
  return base.remote ? base.ref : base.name;
}

/** `RunnerConfig.baseBranch` for a repository's runners (compose files, remote and swarm runners). */
export async function runnerBaseOf(ctx: Context): Promise<string> {
  return runnerBase(
    await resolveBase(landGit(ctx.paths.root, 60_000), ctx.baseBranch),
  );
}

/**
 * Keeps a remote-tracking base fresh: fetches the remote's branch into its tracking ref, at most
 * every `land.fetchInterval` (or now, before a landing), through the one git runner (no hooks,
 * no configured programs, a time limit). A local base is never fetched.
 */
export class BaseFetcher {
  private readonly git: LandGit;
  private base: Promise<Base> | undefined;
  private fetchedAt = 0;

  constructor(
    private readonly ctx: Context,
    private readonly log: Log = () => undefined,
  ) {
    this.git = landGit(ctx.paths.root, 120_000);
  }

  /** Resolved once (a failure is not remembered: the next call asks git again). */
  resolve(): Promise<Base> {
    this.base ??= resolveBase(this.git, this.ctx.baseBranch).catch(
      (err: unknown) => {
        this.base = undefined;
        throw err;
      },
    );
    return this.base;
  }

  /** Fetches when the interval has passed (`force`: now). Returns whether it fetched. */
  async refresh(force = false): Promise<boolean> {
    const base = await this.resolve();
    if (!base.remote) return false;
    if (
      !force &&
      Date.now() - this.fetchedAt < this.ctx.config.land.fetchInterval
    )
      return false;
    this.fetchedAt = Date.now();
    await fetchBase(this.git, base);
    return true;
  }

  /** Like refresh(), but a failed fetch is logged rather than thrown (the running supervisor's loop). */
  async refreshQuietly(): Promise<void> {
    try {
      await this.refresh();
    } catch (err) {
      this.log('base: fetch failed; agents start from the last fetched tip', {
        error: (err as Error).message,
      });
    }
  }
}

export async function fetchBase(git: LandGit, base: Base): Promise<void> {
  const { remote } = base;
  if (!remote) return;
  const r = await git.run([
    'fetch',
    '--quiet',
    '--no-tags',
    '--no-write-fetch-head',
    remote.name,
    `+refs/heads/${remote.branch}:${base.ref}`,
  ]);
  if (r.code !== 0)
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `could not fetch ${remote.branch} from ${remote.name}: ${redactSecrets(r.stderr.trim().split('\n').slice(-2).join(' | '))}`,
      {
        hint: `check that the remote answers (git fetch ${remote.name}), or set "baseBranch" to a local branch`,
      },
    );
}
