import type { Redis } from 'ioredis';
import { openContext, type Context } from './context.js';
import { waitForAgents } from './convergence.js';
import { Daemon, type Logger } from './daemon.js';
import { SupervisorError } from './errors.js';
import { attachExtensions } from './extensions.js';
import { runningDaemon } from './pidfile.js';
import { connectOnce, resolveRedisUrl } from './redis.js';
import { validateScale } from './env/capacity.js';
import { requestRestart, requestScale } from './scaler.js';
import { restartAgent } from './restart.js';
import { buildStatus, type AgentStatus, type Status } from './status.js';
import { getSetting } from './store/db.js';
import { IssueControls, type IssueEdit } from './issue-controls.js';
import type { LandOutcome } from './land/lander.js';
import { LandingStore, type Landing } from './land/landings.js';
import { createLander } from './land/service.js';
import { QueueAccess } from './queue-access.js';
import { DependencyStore } from './store/deps.js';
import { issueHistory, type IssueEvent } from './store/history.js';
import { type Issue, type IssueStatus, type NewIssue } from './store/issues.js';
import type { Run } from './store/runs.js';
import { usageOfIssues, type UsageTotals } from './store/usage-totals.js';

export interface IssueSummary {
  id: number;
  title: string;
  priority: Issue['priority'];
  status: IssueStatus;
  agent: string | null;
  branch: string | null;
  commit: string | null;
  attempts: number;
  /** The commit on the base branch that landed the issue (status merged). */
  landedSha: string | null;
  /** Landing attempts, counted apart from the agent's attempts. */
  landAttempts: number;
  /** Times a landing sent the issue back to an agent. */
  requeues: number;
  /** Done issues: commits on the base tip the issue's commit lacks. */
  behind: number | null;
  /** Done issues: whether the commit merges into the base tip cleanly. */
  mergeable: boolean | null;
  conflictFiles: string[];
  /**
   * Tokens and cost of all its runs (null: none reported); in `issue list`/`show` and
   * `listIssues`/`getIssue`, not in result events.
   */
  usage?: UsageTotals | null;
}

export interface IssueDetail extends IssueSummary {
  body: Buffer;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  runs: Run[];
  /** Landing attempts (supervisor land). */
  landings: Landing[];
  /** Every status change: when, from, to, by whom, why. */
  history: IssueEvent[];
}

export interface OpenSupervisorOptions {
  /** Repository directory (default: the current directory). */
  repo?: string;
  /** Configuration, as in supervisor.config.json (flags layer: wins over env and file). */
  config?: Record<string, unknown>;
  /** Environment to read REDIS_URL / SUPERVISOR_* from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where the control plane logs when started in this process. */
  log?: Logger;
  /** The time source of pauses and the daily budget, for tests; default `Date.now`. */
  clock?: () => number;
}

export interface ResultEvent {
  issue: IssueSummary;
}

/** An issue as the API and every `--json` issue command show it (no body). */
export const issueSummary = (i: Issue): IssueSummary => ({
  id: i.id,
  title: i.title,
  priority: i.priority,
  status: i.status,
  agent: i.agent,
  branch: i.branch,
  commit: i.commit,
  attempts: i.attempts,
  landedSha: i.landedSha,
  landAttempts: i.landAttempts,
  requeues: i.requeues,
  behind: i.behind,
  mergeable: i.mergeable,
  conflictFiles: i.conflictFiles,
});

/**
 * The programmatic API: one repository's supervisor. Reads and issue writes work whether the
 * control plane runs in this process (`start()`) or in another (`supervisor start`).
 */
export class Supervisor {
  private daemon: Daemon | undefined;
  private redis: Redis | undefined;
  private readonly pollers = new Set<NodeJS.Timeout>();

  private constructor(
    readonly ctx: Context,
    private readonly log: Logger,
    private readonly clock: (() => number) | undefined,
  ) {}

  static async open(opts: OpenSupervisorOptions = {}): Promise<Supervisor> {
    const ctx = await openContext({
      repo: opts.repo ?? process.cwd(),
      init: true,
      actor: 'api',
      flags: opts.config ?? {},
      ...(opts.env ? { env: opts.env } : {}),
    });
    return new Supervisor(ctx, opts.log ?? (() => undefined), opts.clock);
  }

  /** The BullMQ queue name other producers add jobs to (with `prefix`). */
  get queueName(): string {
    return this.ctx.queueName;
  }

  get prefix(): string {
    return this.ctx.config.prefix;
  }

  /** Adds an open issue; `dependsOn`: not worked until those issues are merged (or done). */
  addIssue(input: NewIssue & { dependsOn?: number[] }): IssueSummary {
    const { dependsOn, ...fields } = input;
    return issueSummary(
      this.ctx.db.transaction(() => {
        const i = this.ctx.issues.add(fields);
        if (dependsOn?.length)
          new DependencyStore(this.ctx.db).set(i.id, dependsOn);
        return i;
      })(),
    );
  }

  private queueAccess: QueueAccess | undefined;
  private controls(): IssueControls {
    return new IssueControls(
      this.ctx,
      async () =>
        this.daemon?.queue ??
        (this.queueAccess ??= new QueueAccess(this.ctx)).get(),
      'api',
    );
  }

  /** A failed, conflicting, check-failed, cancelled or blocked issue back to the agents. */
  retryIssue(id: number): IssueSummary {
    return issueSummary(this.controls().retry(id));
  }

  /** Every failed issue back to the agents. */
  retryFailedIssues(): IssueSummary[] {
    return this.controls().retryFailed().map(issueSummary);
  }

  /** Cancels an issue: its waiting job is removed, a running attempt stopped, a late result refused. */
  async cancelIssue(id: number): Promise<IssueSummary> {
    return issueSummary(await this.controls().cancel(id));
  }

  /** Changes title, body or priority (refused while an agent works on it). */
  async editIssue(id: number, edit: IssueEdit): Promise<IssueSummary> {
    return issueSummary(await this.controls().edit(id, edit));
  }

  /** Works an issue again from scratch, whatever it came to. */
  reopenIssue(id: number): IssueSummary {
    return issueSummary(this.controls().reopen(id));
  }

  /**
   * Lands done issues on the base branch (the merge queue; see docs/landing.md): in this order,
   * or every done issue with `'all'`.
   */
  async land(
    which: number[] | 'all',
    opts: { dryRun?: boolean } = {},
  ): Promise<LandOutcome[]> {
    return createLander(this.ctx, this.log, this.daemon?.redisUrl).land(
      which,
      opts,
    );
  }

  /** Issues, each with the tokens and cost of its runs (`usage`). */
  listIssues(filter: { status?: IssueStatus } = {}): IssueSummary[] {
    const list = this.ctx.issues.list(filter);
    const usage = usageOfIssues(
      this.ctx.db,
      list.map((i) => i.id),
    );
    return list.map((i) => ({
      ...issueSummary(i),
      usage: usage.get(i.id) ?? null,
    }));
  }

  getIssue(id: number): IssueDetail {
    const i = this.ctx.issues.require(id);
    return {
      ...issueSummary(i),
      usage: usageOfIssues(this.ctx.db, [id]).get(id) ?? null,
      body: i.body,
      error: i.error,
      createdAt: i.createdAt,
      updatedAt: i.updatedAt,
      runs: this.ctx.runs.forIssue(id),
      landings: new LandingStore(this.ctx.db).forIssue(id),
      history: issueHistory(this.ctx.db, id),
    };
  }

  /** Runs the control plane (feeder, recorder, agents) in this process. */
  async start(opts: { agents?: number } = {}): Promise<void> {
    if (this.daemon) return;
    this.daemon = await Daemon.start(this.ctx, {
      ...(opts.agents !== undefined ? { agents: opts.agents } : {}),
      log: this.log,
      setup: (d) => attachExtensions(d, this.log),
      ...(this.clock ? { clock: this.clock } : {}),
    });
  }

  /** Sets the agent count and resolves once the supervisor (here or elsewhere) has converged. */
  async scale(
    n: number,
    opts: {
      timeoutMs?: number;
      onProgress?: (agent: AgentStatus) => void;
    } = {},
  ): Promise<AgentStatus[]> {
    const count = validateScale(this.ctx, n);
    if (this.daemon) this.daemon.scaler.setDesired(count);
    else if (runningDaemon(this.ctx.paths.pidFile))
      requestScale(this.ctx.db, count);
    else
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        'the supervisor is not running for this repository',
        { hint: 'call start() first, or run `supervisor start`' },
      );
    return waitForAgents(this.ctx, await this.connection(), count, {
      timeoutMs: opts.timeoutMs ?? 180_000,
      ...(opts.onProgress ? { onChange: opts.onProgress } : {}),
    });
  }

  /**
   * Restarts one agent (e.g. `agent-002`): its runner is stopped, handing its job back unspent,
   * and started again; a quarantined slot is re-created and gets another chance. Resolves with
   * the agent once it is up again; rejects when it is still broken (quarantined again).
   */
  async restart(
    agentId: string,
    opts: {
      timeoutMs?: number;
      onProgress?: (agent: AgentStatus) => void;
    } = {},
  ): Promise<AgentStatus> {
    const a = await restartAgent(
      this.ctx,
      await this.connection(),
      agentId,
      (id) =>
        this.daemon
          ? this.daemon.scaler.restart(id)
          : requestRestart(this.ctx.db, id),
      {
        ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
        ...(opts.onProgress ? { onChange: opts.onProgress } : {}),
      },
    );
    return a!;
  }

  async status(): Promise<Status> {
    return buildStatus(
      this.ctx,
      await this.connection().catch(() => undefined),
    );
  }

  /**
   * Calls `listener` once for every issue that reaches done or failed from now on.
   * Returns a function that unsubscribes.
   */
  onResult(
    listener: (e: ResultEvent) => void,
    opts: { pollMs?: number } = {},
  ): () => void {
    // What finished before: the latest 200 (an older issue can enter them only by finishing again).
    const seen = new Set(
      this.ctx.issues.recentlyFinished(200).map((i) => i.id),
    );
    const timer = setInterval(() => {
      for (const i of this.ctx.issues.recentlyFinished(200)) {
        if (seen.has(i.id)) continue;
        seen.add(i.id);
        listener({ issue: issueSummary(i) });
      }
    }, opts.pollMs ?? 250);
    this.pollers.add(timer);
    return () => {
      clearInterval(timer);
      this.pollers.delete(timer);
    };
  }

  private async connection(): Promise<Redis | undefined> {
    if (this.daemon) return this.daemon.redis;
    if (!this.redis) {
      const url =
        this.ctx.config.redisUrl ??
        getSetting(this.ctx.db, 'redis_url') ??
        (
          await resolveRedisUrl(this.ctx.paths, undefined, {
            startPrivate: false,
          })
        ).url;
      this.redis = connectOnce(url);
    }
    return this.redis;
  }

  /** Stops the in-process control plane gracefully (runners hand their jobs back). */
  async stop(): Promise<void> {
    await this.daemon?.stop();
    this.daemon = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    for (const t of this.pollers) clearInterval(t);
    await this.queueAccess?.close();
    this.redis?.disconnect();
    this.ctx.close();
  }
}

/** Opens the supervisor of a repository (initialising it if needed). */
export function openSupervisor(
  opts: OpenSupervisorOptions = {},
): Promise<Supervisor> {
  return Supervisor.open(opts);
}
