import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  BeforeJobStepSchema,
  agentBranch,
  slotNumber,
  type BeforeJobStep,
  type RunnerConfig,
} from '../contract/job.js';
import type { Context } from './context.js';
import { runnerSpending } from './config.js';
import { SupervisorError, coerceError, redactSecrets } from './errors.js';
import { forgetEarlierDatabase } from './earlier-database.js';
import { Feeder } from './feeder.js';
import { releaseHeldJob } from './held-job.js';
import {
  acquirePidFile,
  releasePidFile,
  runningDaemon,
  updatePidFile,
} from './pidfile.js';
import { Recorder } from './recorder.js';
import { setGitCommandTimeout } from './repo.js';
import { localRunnerGit } from './remote.js';
import { ResultRefs } from './results.js';
import { connectForever, evictionWarning, resolveRedisUrl } from './redis.js';
import { readRegistry } from './registry.js';
import { createDockerRuntime } from './runtimes/docker/create.js';
import { ProcessRuntime } from './runtimes/process.js';
import { createSwarmRuntime } from './runtimes/swarm-create.js';
import { requireQueueAuthentication } from './redis-auth.js';
import type { AgentRuntime } from './runtimes/runtime.js';
import { validateScale } from './env/capacity.js';
import { DESIRED_KEY, Scaler, readDesired } from './scaler.js';
import { AutoscaleLoop, checkAutoscale, writeAutoscale } from './autoscaler.js';
import { availableMemoryBytes } from './resources.js';
import { CancelEnforcer } from './cancel-enforcer.js';
import { landingFeedbackFor } from './land/requeue.js';
import { runnerBase } from './land/base.js';
import { LandService } from './land/service.js';
import { getSetting, setSetting } from './store/db.js';
import { DependencyStore, dependencyGate } from './store/deps.js';
import { setActor } from './store/history.js';
import {
  describePause,
  enforcePause,
  liftPause,
  clearPause,
  readPause,
  recordPause,
  type Pause,
} from './pause.js';
import { DailyBudget } from './daily-budget.js';
import { DiskWatermark } from './disk-watermark.js';
import { watchExternalWrites } from './store/external-writes.js';
import {
  ensureWorktree,
  removeWorktree,
  worktreeFor,
  type SlotWorktree,
} from './worktrees.js';
import { agentTarget, preflightAgent } from './preflight.js';
import { recordRunningConfig } from './running-config.js';

export type Logger = (msg: string, fields?: Record<string, unknown>) => void;

export interface DaemonOptions {
  /** Agents to run now; default: the count set before (persisted), else the configured `agents`. */
  agents?: number;
  log?: Logger;
  /** Lets tests and other runtimes plug in; default from config.runtime. */
  runtime?: AgentRuntime;
  /**
   * How long `start` waits for an unreachable Redis before it fails with the reason (default
   * 15 s); `Infinity` waits until it answers (`--wait-redis`).
   */
  waitRedisMs?: number;
  /** Runs before any agent starts: attach slot hooks (environments) here. */
  setup?: (daemon: Daemon) => Promise<void>;
  /** The time source of pauses and the daily budget (tests); default `Date.now`. */
  clock?: () => number;
}

/** Hooks other parts (environments, dashboard) attach to a running control plane. */
export interface SlotHook {
  /**
   * Extra environment for a slot's agent; may allocate resources. It calls `worktree()` once
   * it holds what it needs (the slot's worktree is made then, not before), and undoes what it
   * reserved when that or anything after it fails.
   */
  prepare(
    agentId: string,
    worktree: () => Promise<string>,
  ): Promise<Record<string, string>>;
  /** Throws when `n` agents are more than this hook can serve (checked before a count is set). */
  checkCount?(n: number): void;
  /** Commands the slot's runner runs before each job (after `prepare`). */
  beforeJob?(agentId: string): BeforeJobStep[];
  /** The main worktree whose `.worktreeinclude` the runner re-syncs before each job, if any. */
  includeRoot?(): string | undefined;
}

/**
 * The control plane of one repository: feeder, recorder and scaler, with the runtime that
 * runs the agent-runners. One per repository (a pid file and an SQLite write lock guard it).
 */
export class Daemon extends EventEmitter<{ stopped: [] }> {
  readonly redisUrl: string;
  readonly redis: Redis;
  readonly queue: Queue;
  readonly feeder: Feeder;
  readonly recorder: Recorder;
  readonly scaler: Scaler;
  readonly runtime: AgentRuntime;
  /** Result refs pushed by runners in remote git mode. */
  readonly results: ResultRefs;
  /** Landing: behind/mergeable of done issues (and land.auto). */
  readonly land: LandService;
  /** Stops what a cancel left running or waiting. */
  readonly cancels: CancelEnforcer;
  /** Agents from queue depth while `autoscale` is set (config, `scale --auto`). */
  readonly autoscaler: AutoscaleLoop;
  private feedTimer: NodeJS.Timeout | undefined;
  private stopFeedWake: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private readonly slotHooks: SlotHook[] = [];

  private readonly dailyBudget: DailyBudget;
  private readonly diskWatermark: DiskWatermark;

  private constructor(
    readonly ctx: Context,
    redisUrl: string,
    readonly log: Logger,
    runtime: AgentRuntime,
    private readonly clock: () => number,
  ) {
    super();
    this.dailyBudget = new DailyBudget(ctx.db, ctx.config.budget.daily, clock);
    this.diskWatermark = new DiskWatermark(
      [ctx.paths.root, ctx.paths.gitCommonDir, ctx.paths.logDir],
      ctx.config.disk.minFree,
    );
    setGitCommandTimeout(ctx.config.git.commandTimeout);
    const { config, paths } = ctx;
    this.redisUrl = redisUrl;
    this.redis = connectForever(redisUrl);
    this.queue = new Queue(ctx.queueName, {
      connection: this.redis,
      prefix: config.prefix,
    });
    this.queue.on('error', () => undefined);
    this.runtime = runtime;
    const deps = new DependencyStore(ctx.db);
    const gate = dependencyGate(config);
    this.feeder = new Feeder(ctx.issues, ctx.runs, this.queue, {
      attempts: config.attempts,
      backoffMs: config.backoff,
      landingFeedback: landingFeedbackFor(ctx),
      ready: (batch) => deps.ready(batch, gate),
      // Fault injection for the tests of the add/mark window (never set in real use): the
      // supervisor dies this many ms after adding jobs, before marking their issues queued.
      ...(process.env.SUPERVISOR_FAULT_KILL_AFTER_FEED_ADD
        ? {
            afterAdd: async () => {
              await new Promise((r) =>
                setTimeout(
                  r,
                  Number(process.env.SUPERVISOR_FAULT_KILL_AFTER_FEED_ADD),
                ),
              );
              process.kill(process.pid, 'SIGKILL');
            },
          }
        : {}),
    });
    this.results = new ResultRefs({
      repoRoot: paths.root,
      gitCommonDir: paths.gitCommonDir,
      stateDir: paths.stateDir,
      remoteUrl: config.git.remoteUrl,
      log,
    });
    this.recorder = new Recorder({
      results: this.results,
      db: ctx.db,
      issues: ctx.issues,
      runs: ctx.runs,
      queue: this.queue,
      redis: this.redis,
      prefix: config.prefix,
      repoRoot: paths.root,
      gitCommonDir: paths.gitCommonDir,
      reconcileIntervalMs: config.reconcileInterval,
      handlerDeadlineMs: config.recorderDeadline,
      killAgent: (agentId, match) => this.runtime.killAgent(agentId, match),
      log,
    });
    this.recorder.on('warning', (w) => log(w));
    this.land = new LandService(ctx, log, redisUrl);
    this.cancels = new CancelEnforcer(ctx, this.queue, runtime, log);
    // Runners alive by their heartbeats in Redis (stale after three missed beats).
    const registry = () =>
      readRegistry(
        this.redis,
        config.prefix,
        ctx.queueName,
        Math.max(3 * config.heartbeat, 3000),
      );
    this.scaler = new Scaler({
      db: ctx.db,
      slots: ctx.slots,
      runtime,
      maxAgents: ctx.platform.maxAgents,
      restartBackoffMs: config.restartBackoff,
      stopGraceMs: config.stopGrace,
      prepareSlot: (agentId) => this.prepareSlot(agentId),
      // A broken slot: its worktree (and agent branch) made again from scratch by prepareSlot.
      repairSlot: (agentId) => removeWorktree(paths, agentId),
      releaseHeld: (agentId) =>
        releaseHeldJob(
          {
            redisUrl: this.redisUrl,
            prefix: config.prefix,
            queueName: ctx.queueName,
          },
          agentId,
          `${agentId} was quarantined: its job goes to another slot`,
        ),
      checkCount: (n) => {
        for (const h of this.slotHooks) h.checkCount?.(n);
      },
      registry,
      log,
    });
    this.autoscaler = new AutoscaleLoop({
      db: ctx.db,
      waiting: async () => {
        const c = await this.queue.getJobCounts('wait', 'prioritized');
        return (c.wait ?? 0) + (c.prioritized ?? 0);
      },
      registry,
      paused: () => readPause(ctx.db) !== undefined,
      limit: (n) => this.agentLimit(n),
      readDesired: () => readDesired(ctx.db),
      setDesired: (n) => {
        setSetting(ctx.db, DESIRED_KEY, String(n));
        this.scaler.kick();
      },
      log,
    });
  }

  /**
   * The most agents up to `n` this host can serve now: the maximum, the environment's capacity
   * (port blocks, Redis DBs), and memory — running agents plus what MemAvailable holds of the
   * admission threshold (the per-agent budget unless configured; below it runners claim nothing).
   */
  private agentLimit(n: number): number {
    const { platform, config } = this.ctx;
    const running = readDesired(this.ctx.db);
    const perAgent =
      config.admission.minAvailableMemory ?? platform.memoryPerAgentBytes;
    const byMemory =
      perAgent === 0
        ? Infinity
        : running +
          Math.floor(availableMemoryBytes(platform.freeMemoryBytes) / perAgent);
    let limit = Math.min(n, platform.maxAgents, Math.max(running, byMemory));
    for (; limit > 0; limit--) {
      try {
        for (const h of this.slotHooks) h.checkCount?.(limit);
        return limit;
      } catch {
        // the environment cannot serve this many: one fewer
      }
    }
    return 0;
  }

  /** Starts the control plane in this process. */
  static async start(ctx: Context, opts: DaemonOptions = {}): Promise<Daemon> {
    const log = opts.log ?? (() => undefined);
    const { config, paths } = ctx;
    if (!config.agentCommandResolved) {
      throw new SupervisorError(
        'ERR_SUP_CONFIG',
        'no agent command is configured',
        {
          hint: 'pass --agent claude|codex|aider or --agent-command "<command>" (or set SUPERVISOR_AGENT_COMMAND / "agentCommand" in supervisor.config.json)',
        },
      );
    }
    const agents = opts.agents ?? config.agents;
    if (agents !== undefined) validateScale(ctx, agents);
    if (config.autoscale) {
      if (config.agents !== undefined)
        throw new SupervisorError(
          'ERR_SUP_CONFIG',
          'supervisor.config.json sets both agents and autoscale',
          {
            hint: 'keep one: a fixed count (agents) or a range (autoscale: {"min": 0, "max": 4})',
          },
        );
      checkAutoscale(config.autoscale, ctx.platform.maxAgents, 'autoscale');
    }
    setActor(ctx.db, 'supervisor');
    // The Docker runtime checks its image once the engine answers (createDockerRuntime).
    if (!opts.runtime && config.runtime === 'process')
      await preflightAgent(agentTarget(ctx));
    // The SQLite write lock serialises two starts racing for the pid file.
    ctx.db
      .transaction(() =>
        acquirePidFile(paths.pidFile, {
          pid: process.pid,
          startedAt: Date.now(),
        }),
      )
      .immediate();
    try {
      const { url, source } = await resolveRedisUrl(paths, config.redisUrl, {
        startPrivate: true,
      });
      log(`redis: ${redactSecrets(url)} (${source})`);
      setSetting(ctx.db, 'redis_url', url);
      recordRunningConfig(ctx.db, {
        pid: process.pid,
        agentCommand: config.agentCommandResolved,
        runtime: config.runtime,
        image: config.docker.image,
        maxAgents: ctx.platform.maxAgents,
        memoryPerAgentBytes: ctx.platform.memoryPerAgentBytes,
      });
      const runtime = opts.runtime ?? (await createRuntime(ctx, url, log));
      const d = new Daemon(ctx, url, log, runtime, opts.clock ?? Date.now);
      await opts.setup?.(d);
      await d.boot(agents, opts.waitRedisMs ?? 15_000);
      d.markReady();
      return d;
    } catch (err) {
      releasePidFile(paths.pidFile, process.pid);
      throw err;
    }
  }

  private async boot(
    agents: number | undefined,
    waitRedisMs: number,
  ): Promise<void> {
    if (this.redis.status !== 'ready') {
      const ready = new Promise<void>((r) =>
        this.redis.once('ready', () => r()),
      );
      const slow = setTimeout(
        () =>
          this.log(
            Number.isFinite(waitRedisMs)
              ? `waiting for Redis (up to ${Math.round(waitRedisMs / 1000)} s)`
              : 'waiting for Redis (retrying until it answers)',
          ),
        1500,
      );
      let lastError = '';
      const noteError = (err: Error) => {
        lastError = err.message || (err as { code?: string }).code || '';
      };
      this.redis.on('error', noteError);
      let giveUp: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        if (!Number.isFinite(waitRedisMs)) return;
        giveUp = setTimeout(() => {
          this.redis.disconnect();
          reject(
            new SupervisorError(
              'ERR_SUP_REDIS_UNREACHABLE',
              `Redis at ${redactSecrets(this.redisUrl)} did not answer within ${Math.round(waitRedisMs / 1000)} s${lastError ? ` (${redactSecrets(lastError)})` : ''}`,
              {
                hint: 'start it (`supervisor infra up`, or your local redis-server), fix REDIS_URL / "redisUrl", or pass --wait-redis to wait until it answers',
              },
            ),
          );
        }, waitRedisMs);
      });
      // A server that answers but refuses the credentials will not change its mind: say so, rather
      // than wait for ever for a Redis that is "not there".
      let onError: (err: Error) => void = () => undefined;
      const refused = new Promise<never>((_, reject) => {
        onError = (err) => {
          if (
            !/NOAUTH|WRONGPASS|invalid password|invalid username-password|AUTH <password> called without any password/i.test(
              err.message,
            )
          )
            return;
          this.redis.disconnect();
          reject(
            new SupervisorError(
              'ERR_SUP_REDIS_UNREACHABLE',
              `Redis at ${redactSecrets(this.redisUrl)} refused the credentials: ${err.message}`,
              {
                hint: 'check the user name and password in REDIS_URL, or "redisUrl" in supervisor.config.json',
              },
            ),
          );
        };
        this.redis.on('error', onError);
      });
      try {
        await Promise.race([ready, refused, timedOut]);
      } finally {
        clearTimeout(slow);
        clearTimeout(giveUp);
        this.redis.off('error', onError);
        this.redis.off('error', noteError);
      }
    }
    await requireQueueAuthentication(this.ctx.config, this.redisUrl);
    const warn = await evictionWarning(this.redis);
    if (warn) this.log(`warning: ${warn}`);
    const earlier = await forgetEarlierDatabase({
      db: this.ctx.db,
      issues: this.ctx.issues,
      queue: this.queue,
      redis: this.redis,
      prefix: this.ctx.config.prefix,
    });
    if (earlier && (earlier.skippedThrough > 0 || earlier.removed.length > 0)) {
      this.log(
        `the queue holds jobs of an earlier supervisor database: issue ids continue after #${earlier.skippedThrough}` +
          (earlier.removed.length
            ? `; removed ${earlier.removed.length} of them (finished, or their ids taken by issues of this database): ${earlier.removed.slice(0, 10).join(', ')}${earlier.removed.length > 10 ? ', …' : ''}`
            : ''),
      );
    }
    // Refused before anything runs: a count the environment cannot serve makes no worktree.
    if (agents !== undefined)
      for (const h of this.slotHooks) h.checkCount?.(agents);
    await this.recorder.start();
    await this.land.start();
    this.cancels.start();
    this.feedLoop();
    if (agents !== undefined) this.scaler.setDesired(agents);
    else if (this.ctx.config.autoscale)
      writeAutoscale(this.ctx.db, {
        min: this.ctx.config.autoscale.min,
        max: this.ctx.config.autoscale.max,
        idleGraceMs: this.ctx.config.autoscale.idleGrace,
      });
    await this.scaler.start();
    this.autoscaler.start();
  }

  addSlotHook(h: SlotHook): void {
    this.slotHooks.push(h);
  }

  private readonly startedAt = Date.now();
  private dashboardUrl: string | undefined;

  setDashboardUrl(url: string): void {
    this.dashboardUrl = url;
    this.markReady();
  }

  /** Tells `supervisor start --detach` and other commands that the control plane is up. */
  markReady(): void {
    updatePidFile(this.ctx.paths.pidFile, {
      pid: process.pid,
      startedAt: this.startedAt,
      ready: true,
      ...(this.dashboardUrl ? { dashboardUrl: this.dashboardUrl } : {}),
    });
  }

  private feedLoop(): void {
    let feeding = false;
    let again = false;
    const run = async () => {
      if (this.stopping) return;
      if (feeding) {
        again = true;
        return;
      }
      feeding = true;
      if (this.feedTimer) clearTimeout(this.feedTimer);
      try {
        await this.feeder.feedAll();
      } catch (err) {
        this.log('feeder: retrying', { error: coerceError(err).message });
      }
      await this.syncPause().catch((err: unknown) =>
        this.log('pause: retrying', { error: coerceError(err).message }),
      );
      feeding = false;
      if (this.stopping) return;
      this.feedTimer = setTimeout(
        run,
        again ? 0 : this.ctx.config.feedInterval,
      );
      again = false;
    };
    // Issues added and counts set by other processes (CLI, API) act at once, not at the next interval.
    this.stopFeedWake = watchExternalWrites(
      this.ctx.db,
      this.ctx.paths.dbFile,
      () => {
        void run();
        this.scaler.kick();
      },
    );
    this.feedTimer = setTimeout(run, 0);
  }

  private enforcedPause: Pause | undefined;

  /**
   * Keeps BullMQ in step with the pause recorded in SQLite (set by a runner's usage limit, the
   * `pause` command or the daily budget, checked here): re-applied if Redis lost it, lifted when
   * `resume` cleared it or a budget pause reached its end (the next day, by our clock).
   */
  private async syncPause(): Promise<void> {
    const now = this.clock();
    this.dailyBudget.enforce();
    const low = this.diskWatermark.check(now);
    if (low) recordPause(this.ctx.db, low, now);
    else if (
      readPause(this.ctx.db, now)?.kind === 'disk' &&
      this.diskWatermark.recovered()
    )
      clearPause(this.ctx.db);
    const p = readPause(this.ctx.db, now);
    if (p) {
      if (
        !this.enforcedPause ||
        this.enforcedPause.since !== p.since ||
        this.enforcedPause.until !== p.until
      )
        this.log(describePause(p, now), { reason: p.reason });
      await enforcePause(
        this.queue,
        this.redis,
        this.ctx.config.prefix,
        p,
        now,
      );
      this.enforcedPause = p;
    } else if (this.enforcedPause) {
      // Cleared by `resume`, or a budget pause whose day is over (another expired pause has no
      // key left to lift: its rate limit ran out in Redis at the same time).
      if (
        getSetting(this.ctx.db, 'pause') === undefined ||
        this.enforcedPause.kind === 'budget'
      ) {
        await liftPause(this.queue);
        this.log('resumed: claiming again');
      }
      this.enforcedPause = undefined;
    }
  }

  /** What runners reset to: the base branch, or the full ref of a remote-tracking base. */
  private async runnerBase(): Promise<string> {
    return runnerBase(await this.land.lander.fetcher.resolve());
  }

  private async prepareSlot(agentId: string): Promise<RunnerConfig> {
    const { paths, config } = this.ctx;
    const remote = localRunnerGit(this.ctx, agentId, this.results);
    const planned = remote
      ? { path: remote.worktreePath, branch: agentBranch(agentId) }
      : worktreeFor(paths, agentId);
    this.ctx.slots.ensure(slotNumber(agentId), planned.path, planned.branch);
    // The worktree is made only once the environment is held (hooks call `worktree()`), and
    // removed again when this call made it and a later step failed: a slot whose environment
    // cannot be allocated leaves no worktree, branch or allocation behind.
    let made: (SlotWorktree & { created: boolean }) | undefined;
    const worktree = async (): Promise<SlotWorktree> => {
      made ??= remote
        ? { ...planned, created: false }
        : await ensureWorktree(paths, agentId, await this.runnerBase());
      return made;
    };
    const agentEnv: Record<string, string> = {};
    let wt: SlotWorktree;
    try {
      for (const h of this.slotHooks)
        Object.assign(
          agentEnv,
          await h.prepare(agentId, async () => (await worktree()).path),
        );
      wt = await worktree();
    } catch (err) {
      if (made?.created) await removeWorktree(paths, agentId);
      throw err;
    }
    const beforeJob = this.slotHooks
      .flatMap((h) => h.beforeJob?.(agentId) ?? [])
      .map((s) => BeforeJobStepSchema.parse(s));
    const includeRoot = this.slotHooks
      .map((h) => h.includeRoot?.())
      .find((r) => r !== undefined);
    return {
      agentId,
      host: 'local',
      redisUrl: this.redisUrl,
      prefix: config.prefix,
      queueName: this.ctx.queueName,
      repoPath: paths.root,
      worktreePath: wt.path,
      branch: wt.branch,
      baseBranch: await this.runnerBase(),
      agentCommand: config.agentCommandResolved!,
      logDir: join(paths.logDir, agentId),
      logMaxBytes: config.logs.maxBytes,
      runDir: join(paths.runDir, agentId),
      lease: config.leaseResolved,
      heartbeatMs: config.heartbeat,
      agentEnv,
      beforeJob,
      ...(includeRoot === undefined ? {} : { includeRoot }),
      git: remote?.git ?? { mode: 'shared' },
      admission: {
        minAvailableMemoryBytes:
          config.admission.minAvailableMemory ??
          this.ctx.platform.memoryPerAgentBytes,
      },
      limits: {
        marginMs: config.limits.margin,
        defaultPauseMs: config.limits.defaultPause,
        maxPauseMs: config.limits.maxPause,
        diskCheckMs: config.disk.checkInterval,
        ...(config.diskPerAgent ? { diskBytes: config.diskPerAgent } : {}),
      },
      ...runnerSpending(config),
      poisonAfter: config.poisonAfter,
    };
  }

  /** Graceful stop: runners hand back or finish their jobs, then the control plane closes. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.feedTimer) clearTimeout(this.feedTimer);
      this.stopFeedWake?.();
      await this.autoscaler.close();
      await this.scaler.stopAll();
      await this.shutdownConnections();
    })();
    return this.stopping;
  }

  /** Leaves runners running (they are adopted by the next supervisor). */
  async detach(): Promise<void> {
    this.stopping ??= (async () => {
      if (this.feedTimer) clearTimeout(this.feedTimer);
      this.stopFeedWake?.();
      await this.autoscaler.close();
      this.scaler.detach();
      await this.shutdownConnections();
    })();
    return this.stopping;
  }

  private async shutdownConnections(): Promise<void> {
    this.cancels.close();
    await this.land.close();
    await this.recorder.close();
    await this.runtime.close();
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
    releasePidFile(this.ctx.paths.pidFile, process.pid);
    this.emit('stopped');
  }
}

async function createRuntime(
  ctx: Context,
  redisUrl: string,
  log: Logger,
): Promise<AgentRuntime> {
  if (ctx.config.runtime === 'docker') {
    return createDockerRuntime(ctx, redisUrl, {
      log,
      onHealth: (agentId, health) => {
        const slot = ctx.slots.get(agentId);
        if (slot) ctx.slots.setState(agentId, slot.state, { health });
      },
    });
  }
  if (ctx.config.runtime === 'swarm')
    return createSwarmRuntime(ctx, redisUrl, { log });
  return new ProcessRuntime({
    logDir: ctx.paths.logDir,
    runDir: ctx.paths.runDir,
  });
}

export { runningDaemon };
