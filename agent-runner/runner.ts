import { randomUUID } from 'node:crypto';
import { lchownSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import {
  supervisorKeys,
  type JobResult,
  type RunnerConfig,
} from '../contract/job.js';
import { LocalWorktree, type Workspace } from './workspace.js';
import { loadGitCredentials } from './git-auth.js';
import { RemoteClone } from './remote-clone.js';
import { RemoteGate } from './remote-gate.js';
import { JobContainment } from './job-containment.js';
import { EventPublisher } from './event-publisher.js';
import { Heartbeat } from './heartbeat.js';
import {
  JobExecutor,
  type Current,
  type ExecutorHost,
  type Log,
} from './job-executor.js';
import { recoverPredecessor } from './predecessor.js';
import { SlotOwnership } from './slot-ownership.js';
import {
  SHELL_BUILTINS,
  findProgram,
  programOf,
} from '../contract/agent-program.js';
import { availableMemory, gib } from './memory.js';
import { SlotBrokenError, prepareWorkspace } from './slot-health.js';

export type { Log } from './job-executor.js';

export const RUNNER_VERSION = '0.1.0';

/**
 * `blocked`: a remote-mode runner whose git remote is unreachable (it takes no jobs).
 * `orphaned`: another runner took this slot id; this one takes no jobs and writes nothing.
 * `broken`: its worktree cannot be prepared even after a repair; it takes no jobs and exits.
 */
type RunnerState =
  | 'starting'
  | 'idle'
  | 'working'
  | 'stopping'
  | 'blocked'
  | 'orphaned'
  | 'broken';

/**
 * One agent slot: a BullMQ Worker with concurrency 1 that runs the agent command for each
 * job it holds, under the job's lock (its lease), and reports the outcome through BullMQ.
 *
 * This class wires the parts and keeps the slot's state: slot ownership
 * (`slot-ownership.ts`), predecessor recovery (`predecessor.ts`), the heartbeat
 * (`heartbeat.ts`), job execution (`job-executor.ts`) and, in remote mode, the remote gate
 * (`remote-gate.ts`).
 */
export class AgentRunner {
  private worker: Worker<unknown, JobResult> | undefined;
  private readonly redis: Redis;
  private readonly keys;
  private readonly workspace: Workspace;
  private state: RunnerState = 'starting';
  private stateSince = Date.now();
  private current: Current | undefined;
  private shuttingDown = false;
  private readonly instance = randomUUID();
  /** Remote mode: keeps the worker off the queue while the git remote is unavailable. */
  private readonly remote: RemoteGate | undefined;
  /** Keeps the worker off the queue while the agent's program is not installed (exit 127). */
  private readonly program: RemoteGate;
  /** Resource-aware admission: no claim while the host's available memory is below the budget. */
  private readonly memory: RemoteGate;
  /** The queue itself, for its rate limit (a provider usage limit pauses every runner). */
  private readonly queue: Queue;
  /** Nothing the agent starts outlives its job (cgroup or tracking sweep). */
  private readonly containment: JobContainment;
  private readonly events: EventPublisher;
  private readonly ownership: SlotOwnership;
  private readonly heartbeat: Heartbeat;
  private readonly executor: JobExecutor;
  private brokenError: Error | undefined;
  private markBroken!: (err: Error) => void;
  /**
   * Settles when the slot turned out broken (its worktree unusable even after a repair), with
   * why; the entry point then stops the runner and exits with `EXIT_SLOT_BROKEN`.
   */
  readonly broken = new Promise<Error>((r) => (this.markBroken = r));

  constructor(
    private readonly cfg: RunnerConfig,
    private readonly log: Log,
    private readonly echo: NodeJS.WritableStream = process.stdout,
  ) {
    this.redis = new Redis(cfg.redisUrl, {
      maxRetriesPerRequest: null,
      lazyConnect: false,
    });
    this.redis.on('error', () => {
      /* reconnects by itself; state shows in the heartbeat */
    });
    this.keys = supervisorKeys(cfg.prefix, cfg.queueName);
    this.containment = new JobContainment(cfg, log);
    this.events = new EventPublisher(this.redis, this.keys.events);
    this.queue = new Queue(cfg.queueName, {
      connection: this.redis,
      prefix: cfg.prefix,
    });
    this.queue.on('error', () => undefined);
    const git = cfg.git;
    if (git.mode === 'remote') {
      const credentials = loadGitCredentials(git.credentialsFile);
      const clone = new RemoteClone({
        url: git.url,
        pushUrl: git.pushUrl,
        cacheDir: git.cacheDir,
        path: cfg.worktreePath,
        branch: cfg.branch,
        agentId: cfg.agentId,
        credentials,
        timeoutMs: git.timeoutMs,
        ...(cfg.agentUser ? { owner: cfg.agentUser } : {}),
      });
      this.workspace = clone;
      this.remote = new RemoteGate(() => clone.probe(cfg.baseBranch), {
        onBlocked: () => {
          void this.worker?.pause(true).catch(() => undefined);
          if (!this.current) this.setState('blocked');
        },
        onClear: () => this.gateCleared(),
        log: (m, f) => this.log(m, f),
      });
    } else {
      this.workspace = new LocalWorktree(
        cfg.repoPath,
        cfg.worktreePath,
        cfg.branch,
        cfg.agentUser,
      );
    }
    const block = () => {
      void this.worker?.pause(true).catch(() => undefined);
      if (!this.current && this.state !== 'orphaned') this.setState('blocked');
    };
    this.program = new RemoteGate(() => this.probeProgram(), {
      onBlocked: block,
      onClear: () => this.gateCleared(),
      log: (m, f) => this.log(m, f),
      maxDelayMs: 15_000,
      messages: {
        blocked:
          'the agent program is not installed: not taking jobs until it is',
        clear: 'the agent program is there again: taking jobs',
      },
    });
    this.memory = new RemoteGate(() => this.probeMemory(), {
      onBlocked: block,
      onClear: () => this.gateCleared(),
      log: (m, f) => this.log(m, f),
      maxDelayMs: 10_000,
      messages: {
        blocked:
          'waiting for memory: not taking jobs until enough is available',
        clear: 'memory available again: taking jobs',
      },
    });
    const registryKey = this.keys.agent(cfg.agentId);
    const ttlMs = Math.max(3 * cfg.heartbeatMs, 3000);
    this.ownership = new SlotOwnership(this.redis, {
      agentId: cfg.agentId,
      registryKey,
      registrySet: this.keys.agents,
      instance: this.instance,
      ttlMs,
    });
    this.heartbeat = new Heartbeat(this.ownership, {
      agentId: cfg.agentId,
      intervalMs: cfg.heartbeatMs,
      ttlMs,
      fields: () => this.registryFields(),
      onOwnershipLost: () => this.onOwnershipLost(),
    });
    this.executor = new JobExecutor(
      cfg,
      log,
      echo,
      this.redis,
      this.keys,
      this.workspace,
      this.containment,
      this.events,
      this.executorHost(),
    );
  }

  /** The executor sees the runner's state through this view (the runner owns it). */
  private executorHost(): ExecutorHost {
    return {
      shuttingDown: () => this.shuttingDown || this.state === 'orphaned',
      remote: this.remote,
      program: this.program,
      probeProgram: () => this.probeProgram(),
      queue: this.queue,
      began: (cur) => {
        this.current = cur;
        this.setState('working');
      },
      slotBroken: (err) => this.onSlotBroken(err),
      ended: async () => {
        this.current = undefined;
        if (this.brokenError) return this.setState('broken');
        // Admission for the next job: checked before BullMQ fetches it with this one's completion.
        if (
          this.cfg.admission.minAvailableMemoryBytes > 0 &&
          !this.shuttingDown &&
          this.state !== 'orphaned'
        )
          await this.memory.check();
        this.setState(
          this.state === 'orphaned'
            ? 'orphaned'
            : this.shuttingDown
              ? 'stopping'
              : this.blockedFor !== undefined
                ? 'blocked'
                : 'idle',
        );
      },
    };
  }

  /** Why this runner takes no jobs now, if it does not. */
  private get blockedFor(): string | undefined {
    return (
      this.brokenError?.message ??
      this.remote?.error ??
      this.program.error ??
      this.memory.error
    );
  }

  /** The slot is broken: no more jobs here; the supervisor re-creates the slot. */
  private onSlotBroken(err: Error): void {
    if (this.brokenError) return;
    this.brokenError = err;
    this.log('slot broken: taking no more jobs', { error: err.message });
    void this.worker?.pause(true).catch(() => undefined);
    if (!this.current) this.setState('broken');
    this.markBroken(err);
  }

  /** A gate opened: take jobs again unless another one is still shut. */
  private gateCleared(): void {
    if (
      this.shuttingDown ||
      this.state === 'orphaned' ||
      this.blockedFor !== undefined
    )
      return;
    if (!this.current) this.setState('idle');
    void this.worker?.resume();
  }

  /** Throws while the host has less memory available than the admission budget. */
  private probeMemory(): Promise<void> {
    const min = this.cfg.admission.minAvailableMemoryBytes;
    const available = availableMemory();
    if (min > 0 && available !== undefined && available < min)
      return Promise.reject(
        new Error(
          `waiting for memory: ${gib(available)} available, ${gib(min)} needed per agent`,
        ),
      );
    return Promise.resolve();
  }

  /** Throws when the agent command's program cannot be found the way its shell would look. */
  private probeProgram(): Promise<void> {
    const program = programOf(this.cfg.agentCommand);
    if (
      program &&
      !SHELL_BUILTINS.has(program) &&
      !findProgram(
        program,
        this.cfg.agentEnv.PATH ?? process.env.PATH,
        this.cfg.worktreePath,
      )
    )
      return Promise.reject(
        new Error(
          `the agent program "${program}" is not installed here (not found on PATH); install it: this slot takes jobs again once it is there`,
        ),
      );
    return Promise.resolve();
  }

  async start(): Promise<void> {
    mkdirSync(this.cfg.runDir, { recursive: true });
    mkdirSync(this.cfg.logDir, { recursive: true });
    // The agent writes its status file here: the Docker runtime hands these to its user on the
    // host; a remote-mode root runner (a Swarm task, a pod) made them itself just now.
    if (this.cfg.agentUser && this.cfg.git.mode === 'remote')
      for (const d of [this.cfg.runDir, this.cfg.logDir])
        lchownSync(d, this.cfg.agentUser.uid, this.cfg.agentUser.gid);
    await this.ownership.claim(process.env.SUPERVISOR_TAKEOVER === '1');
    await recoverPredecessor({
      agentId: this.cfg.agentId,
      agentRecordFile: join(this.cfg.runDir, 'agent.json'),
      redis: this.redis,
      heldKey: this.keys.held(this.cfg.agentId),
      queueName: this.cfg.queueName,
      prefix: this.cfg.prefix,
      events: this.events,
      log: this.log,
      deathsKey: this.keys.runnerDeaths,
      poisonAfter: this.cfg.poisonAfter,
    });
    await this.containment.begin();
    // A worktree that cannot be prepared is found (and repaired) before any job is taken.
    if (this.cfg.git.mode === 'shared')
      await prepareWorkspace(this.workspace, this.cfg, this.log).catch(
        (err: Error) => {
          if (!(err instanceof SlotBrokenError)) throw err;
          this.onSlotBroken(err);
        },
      );
    this.heartbeat.start();
    if (this.brokenError) return;
    const worker = new Worker<unknown, JobResult>(
      this.cfg.queueName,
      (job, token) => this.executor.process(job, token),
      {
        connection: this.redis.duplicate({ maxRetriesPerRequest: null }),
        prefix: this.cfg.prefix,
        concurrency: 1,
        lockDuration: this.cfg.lease.lockDurationMs,
        stalledInterval: this.cfg.lease.stalledIntervalMs,
        maxStalledCount: this.cfg.lease.maxStalledCount,
        name: this.cfg.agentId,
        autorun: false,
        // BullMQ honours the queue's rate limit (`queue.rateLimit`, how a usage limit pauses the
        // pool) only for workers with a limiter; this one never limits by itself.
        limiter: { max: 1_000_000_000, duration: 1000 },
        // A limited worker sleeps this long before asking again (BullMQ's default is 30 s): a
        // pause ended early (`supervisor resume`, a budget's new day) takes hold within 5 s.
        maximumRateLimitDelay: 5000,
      },
    );
    worker.on('lockRenewalFailed', (jobIds) => {
      const cur = this.current;
      if (cur?.job.id && jobIds.includes(cur.job.id))
        this.executor.onLeaseLost(cur);
    });
    worker.on('error', (err) =>
      this.log('worker error', { error: err.message }),
    );
    // A job that finished (done or failed) is no longer held; its count of runner deaths goes.
    const finished = (job: { id?: string } | undefined) =>
      void this.redis
        .multi()
        .del(this.keys.held(this.cfg.agentId))
        .hdel(this.keys.runnerDeaths, job?.id ?? '')
        .exec()
        .catch(() => undefined);
    worker.on('completed', (job) => finished(job));
    worker.on('failed', (job) => finished(job));
    this.worker = worker;
    this.setState('idle');
    // A remote-mode runner whose remote does not answer stays off the queue (the gate resumes it).
    if (
      (!this.remote || (await this.remote.check())) &&
      (await this.program.check()) &&
      (await this.memory.check())
    )
      void worker
        .run()
        .catch((err: Error) =>
          this.log('worker stopped', { error: err.message }),
        );
    await worker.waitUntilReady();
    this.log('ready', {
      queue: this.cfg.queueName,
      worktree: this.cfg.worktreePath,
    });
  }

  /**
   * Another runner holds this slot id now (our key lapsed, e.g. while we were frozen, and was
   * taken): two runners must never share a slot's worktree and `held` key. This one stops taking
   * jobs, kills its agent and hands its job back unspent, and stays idle without writing the
   * slot's registry entry, until it is stopped.
   */
  private onOwnershipLost(): void {
    if (this.shuttingDown || this.state === 'orphaned') return;
    this.log(
      'slot ownership lost: another runner holds this slot; stopping work',
      { holding: this.current?.job.id ?? null },
    );
    this.state = 'orphaned';
    this.stateSince = Date.now();
    this.current?.agent?.kill('shutdown', 0);
    void this.worker?.pause(true).catch(() => undefined);
    this.remote?.close();
    this.program.close();
    this.memory.close();
  }

  private registryFields(): Record<string, string> {
    const cur = this.current;
    return {
      agentId: this.cfg.agentId,
      host: this.cfg.host,
      pid: String(process.pid),
      version: RUNNER_VERSION,
      // Readers know the states of the registry contract; a broken slot is blocked there.
      state: this.state === 'broken' ? 'blocked' : this.state,
      since: String(this.stateSince),
      jobId: cur?.job.id ?? '',
      issueId: cur?.issueId ?? '',
      title: cur?.title ?? '',
      agentPid: String(cur?.agent?.pid ?? ''),
      error: this.blockedFor ?? '',
    };
  }

  private setState(s: RunnerState): void {
    if (s !== this.state) {
      this.state = s;
      this.stateSince = Date.now();
    }
    void this.heartbeat.beat();
  }

  /** Graceful: stop taking jobs, kill the agent, hand the job back without spending an attempt. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    if (this.state !== 'orphaned') this.setState('stopping');
    this.log('stopping', { holding: this.current?.job.id ?? null });
    this.current?.agent?.kill('shutdown');
    this.remote?.close();
    this.program.close();
    this.memory.close();
    await this.worker?.close();
    // An orphaned runner's slot (and its processes) belong to the runner that took it.
    if (this.state !== 'orphaned')
      await this.containment.sweep('runner stopping');
    this.containment.close();
    this.heartbeat.stop();
    await this.ownership.release();
    await this.queue.close().catch(() => undefined);
    await this.redis.quit().catch(() => undefined);
  }

  /** Hard stop (second signal): kill the agent now; the lease expires on its own. */
  forceKill(): void {
    this.current?.agent?.kill('shutdown', 0);
  }

  get hostname(): string {
    return hostname();
  }
}
