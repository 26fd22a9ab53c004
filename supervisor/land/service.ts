import { CommitReader } from '../../git/commit-reader.js';
import type { Context } from '../context.js';
import { coerceError } from '../errors.js';
import { DependencyStore } from '../store/deps.js';
import { RefTip } from './git.js';
import { Lander } from './lander.js';
import { refreshMergeStates } from './merge-state.js';
import { requeueAfterLanding } from './requeue.js';
import { landCheckEnv } from './slot-env.js';
import { gitCommandTimeout } from '../repo.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * The merge queue as every interface runs it (the running supervisor, the API, the CLI, the
 * page): land.check gets the landing slot's environment, conflicts and failed checks go back to
 * the agents by land.onConflict / land.onCheckFailure.
 */
export function createLander(
  ctx: Context,
  log: Log,
  redisUrl?: string,
): Lander {
  const lander: Lander = new Lander(ctx, {
    log,
    checkEnv: landCheckEnv(ctx, () => lander.worktreePath, redisUrl),
    requeue: async (issue, landing) => requeueAfterLanding(ctx, issue, landing),
  });
  return lander;
}

/**
 * The landing side of a running supervisor: repairs a landing a killed supervisor left half
 * done (at start), keeps `behind` and `mergeable` of done issues in step with the base tip (a ref
 * file read per tick when nothing moved, no git), and with land.auto lands each issue once it is done.
 */
export class LandService {
  readonly lander: Lander;
  private readonly deps: DependencyStore;
  private readonly baseTip: RefTip;
  /** Commit headers for the merge states of new results (one git for the service's life). */
  private readonly commits: CommitReader;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: Context,
    private readonly log: Log,
    redisUrl: string,
    private readonly intervalMs = 1_000,
  ) {
    this.lander = createLander(ctx, log, redisUrl);
    this.deps = new DependencyStore(ctx.db);
    this.baseTip = new RefTip(this.lander.git, ctx.paths.gitCommonDir);
    this.commits = new CommitReader(ctx.paths.root, gitCommandTimeout);
  }

  async start(): Promise<void> {
    try {
      const n = await this.lander.repair();
      if (n) this.log(`landing: repaired ${n} interrupted landing(s) from git`);
    } catch (err) {
      this.log('landing: repair failed', { error: coerceError(err).message });
    }
    const loop = () => {
      if (this.closed) return;
      this.running = this.tick().finally(() => {
        if (!this.closed) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Runs one round now (tests, and after something landed). */
  async tick(): Promise<void> {
    try {
      this.deps.blockDependents();
      // A remote-tracking base: fetched every land.fetchInterval, so behind shows a move at once.
      await this.lander.fetcher.refreshQuietly();
      const { ref } = await this.lander.fetcher.resolve();
      await refreshMergeStates(this.ctx, {
        tip: await this.baseTip.get(ref),
        commits: this.commits,
      });
      if (
        this.ctx.config.land.auto &&
        this.ctx.issues.list({ status: 'done', limit: 1 }).length > 0
      ) {
        const out = await this.lander.land('all', { lockTimeoutMs: 0 });
        for (const r of out)
          this.log(`landing: #${r.issueId} ${r.result}`, {
            issueId: r.issueId,
            ...(r.landedSha ? { landed: r.landedSha } : {}),
            ...(r.error ? { error: r.error } : {}),
          });
      }
    } catch (err) {
      const e = coerceError(err);
      if ((e as { code?: string }).code !== 'ERR_SUP_LAND_BUSY')
        this.log('landing: round failed', { error: e.message });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
    await this.commits.close();
  }
}
