import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  DelayedError,
  Queue,
  UnrecoverableError,
  WaitingError,
  Worker,
  type Job,
} from 'bullmq';
import { Redis } from 'ioredis';
import {
  JobDataSchema,
  resultRefFor,
  supervisorKeys,
  type JobResult,
  type RunnerConfig,
  type RunnerEvent,
} from '../contract/job.js';
import { AgentProcess } from './agent-process.js';
import {
  isOurAgent,
  readAgentRecord,
  writeAgentRecord,
  type AgentRecord,
} from '../contract/agent-record.js';
import { agentEnvironment, writeIssueFiles } from './issue-input.js';
import { LocalWorktree, type Workspace } from './workspace.js';
import { runBeforeJob } from './before-job.js';
import { loadGitCredentials } from './git-auth.js';
import { GitRemoteError, RemoteClone } from './remote-clone.js';
import { RemoteGate } from './remote-gate.js';
import { oomKillCount, outOfMemoryMessage } from './oom.js';
import { JobContainment } from './job-containment.js';
import { issueIdForJob } from './issue-id.js';

/** A foreign job handed back because it was not adopted yet is offered again after this. */
const ADOPTION_RETRY_MS = 2_000;

export const RUNNER_VERSION = '0.1.0';

/** `blocked`: a remote-mode runner whose git remote is unreachable (it takes no jobs). */
type RunnerState = 'starting' | 'idle' | 'working' | 'stopping' | 'blocked';

interface Current {
  job: Job<unknown, JobResult>;
  token: string;
  attempt: number;
  agent: AgentProcess | undefined;
  issueId: string;
  title: string;
  leaseLost: boolean;
}

export type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * One agent slot: a BullMQ Worker with concurrency 1 that runs the agent command for each
 * job it holds, under the job's lock (its lease), and reports the outcome through BullMQ.
 */
export class AgentRunner {
  private worker: Worker<unknown, JobResult> | undefined;
  private readonly redis: Redis;
  private readonly keys;
  private readonly workspace: Workspace;
  private state: RunnerState = 'starting';
  private stateSince = Date.now();
  private current: Current | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private shuttingDown = false;
  private readonly instance = randomUUID();
  /** Remote mode: keeps the worker off the queue while the git remote is unavailable. */
  private readonly remote: RemoteGate | undefined;
  /** Nothing the agent starts outlives its job (cgroup or tracking sweep). */
  private readonly containment: JobContainment;

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
      });
      this.workspace = clone;
      this.remote = new RemoteGate(() => clone.probe(cfg.baseBranch), {
        onBlocked: () => {
          void this.worker?.pause(true).catch(() => undefined);
          if (!this.current) this.setState('blocked');
        },
        onClear: () => {
          if (this.shuttingDown) return;
          if (!this.current) this.setState('idle');
          void this.worker?.resume();
        },
        log: (m, f) => this.log(m, f),
      });
    } else {
      this.workspace = new LocalWorktree(
        cfg.repoPath,
        cfg.worktreePath,
        cfg.branch,
      );
    }
  }

  private get agentRecordFile(): string {
    return join(this.cfg.runDir, 'agent.json');
  }

  async start(): Promise<void> {
    mkdirSync(this.cfg.runDir, { recursive: true });
    mkdirSync(this.cfg.logDir, { recursive: true });
    await this.claimSlot();
    await this.recoverPredecessor();
    await this.containment.begin();
    this.startHeartbeat();
    const worker = new Worker<unknown, JobResult>(
      this.cfg.queueName,
      (job, token) => this.process(job, token),
      {
        connection: this.redis.duplicate({ maxRetriesPerRequest: null }),
        prefix: this.cfg.prefix,
        concurrency: 1,
        lockDuration: this.cfg.lease.lockDurationMs,
        stalledInterval: this.cfg.lease.stalledIntervalMs,
        maxStalledCount: this.cfg.lease.maxStalledCount,
        name: this.cfg.agentId,
        autorun: false,
      },
    );
    worker.on('lockRenewalFailed', (jobIds) => {
      const cur = this.current;
      if (cur?.job.id && jobIds.includes(cur.job.id)) this.onLeaseLost(cur);
    });
    worker.on('error', (err) =>
      this.log('worker error', { error: err.message }),
    );
    worker.on(
      'completed',
      () =>
        void this.redis
          .del(this.keys.held(this.cfg.agentId))
          .catch(() => undefined),
    );
    worker.on(
      'failed',
      () =>
        void this.redis
          .del(this.keys.held(this.cfg.agentId))
          .catch(() => undefined),
    );
    this.worker = worker;
    this.setState('idle');
    // A remote-mode runner whose remote does not answer stays off the queue (the gate resumes it).
    if (!this.remote || (await this.remote.check()))
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

  /** Refuses to run when another live runner holds this slot id. */
  private async claimSlot(): Promise<void> {
    const owner = `${this.keys.agent(this.cfg.agentId)}:owner`;
    const ttl = Math.max(3 * this.cfg.heartbeatMs, 3000);
    const takeover = process.env.SUPERVISOR_TAKEOVER === '1';
    const deadline = Date.now() + ttl + 500;
    for (;;) {
      const ok = takeover
        ? await this.redis.set(owner, this.instance, 'PX', ttl)
        : await this.redis.set(owner, this.instance, 'PX', ttl, 'NX');
      if (ok === 'OK') return;
      if (Date.now() > deadline) {
        const holder = await this.redis.hget(
          this.keys.agent(this.cfg.agentId),
          'host',
        );
        throw new Error(
          `slot ${this.cfg.agentId} is already held by a live runner${holder ? ` on ${holder}` : ''}; refusing to start a second one`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * A runner restarted under the same slot frees what its predecessor held: it kills the
   * predecessor's agent (if it still runs here) and puts the job back without spending an attempt.
   */
  private async recoverPredecessor(): Promise<void> {
    const rec = readAgentRecord(this.agentRecordFile);
    if (rec && isOurAgent(rec)) {
      try {
        process.kill(-rec.pid, 'SIGKILL');
        this.log('killed the agent a previous runner left behind', {
          pid: rec.pid,
          jobId: rec.jobId,
        });
      } catch {
        /* gone */
      }
    }
    rmSync(this.agentRecordFile, { force: true });
    const heldRaw = await this.redis.get(this.keys.held(this.cfg.agentId));
    if (!heldRaw) return;
    const held = JSON.parse(heldRaw) as {
      jobId: string;
      token: string;
      attempt: number;
    };
    const queue = new Queue(this.cfg.queueName, {
      connection: this.redis,
      prefix: this.cfg.prefix,
    });
    const job = await queue.getJob(held.jobId);
    if (job && (await job.getState()) === 'active') {
      try {
        await job.moveToWait(held.token);
        await this.publish({
          type: 'release',
          jobId: held.jobId,
          attempt: held.attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          reason: 'runner restarted',
        });
        this.log('released the job a previous runner held', {
          jobId: held.jobId,
        });
      } catch (err) {
        // The lock is no longer ours (expired and re-claimed): nothing to release.
        this.log('previous job already re-claimed', {
          jobId: held.jobId,
          error: (err as Error).message,
        });
      }
    }
    await this.redis.del(this.keys.held(this.cfg.agentId));
  }

  private async process(
    job: Job<unknown, JobResult>,
    token: string | undefined,
  ): Promise<JobResult> {
    if (!token) throw new Error('worker gave no lock token');
    const parsed = JobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const why = parsed.error.issues
        .map((i) => `${i.path.join('.') || 'data'}: ${i.message}`)
        .join('; ');
      throw new UnrecoverableError(
        `invalid job data (${why}); see the job contract in the README`,
      );
    }
    const data = parsed.data;
    const attempt = data.attemptOffset + job.attemptsStarted;
    const jobId = job.id!;
    const cur: Current = {
      job,
      token,
      attempt,
      agent: undefined,
      issueId: '',
      title: data.title,
      leaseLost: false,
    };
    this.current = cur;
    this.setState('working');
    await this.redis.set(
      this.keys.held(this.cfg.agentId),
      JSON.stringify({ jobId, token, attempt }),
    );
    const startedAt = Date.now();
    let logPath = '';
    try {
      const issueId = await issueIdForJob(
        jobId,
        data,
        { redis: this.redis, key: this.keys.adopted },
        { stop: () => this.shuttingDown || cur.leaseLost },
      );
      if (issueId === undefined) return await this.handBackUnadopted(cur);
      cur.issueId = issueId;
      logPath = join(
        this.cfg.logDir,
        `issue-${issueId}-attempt-${attempt}.log`,
      );
      let baseSha: string;
      // The previous job's stragglers must not write into this job's worktree or hold its ports.
      await this.containment.sweep('before job');
      try {
        baseSha = await this.workspace.prepare(this.cfg.baseBranch);
      } catch (err) {
        if (err instanceof GitRemoteError)
          await this.handBackForRemote(cur, err);
        throw err;
      }
      const files = writeIssueFiles(this.cfg, data, issueId);
      const log = createWriteStream(logPath, { flags: 'a' });
      let logError: string | undefined;
      log.on('error', (err) => {
        logError ??= `the run log ${logPath} could not be written: ${err.message}`;
        this.log('cannot write the run log', { logPath, error: err.message });
      });
      this.echo.write(
        `--- ${this.cfg.agentId} ${jobId} attempt ${attempt}: ${data.title.split('\n')[0]}\n`,
      );
      // The claim is recorded before anything runs, so every attempt that starts has a run row.
      await this.publish({
        type: 'claim',
        jobId,
        attempt,
        agentId: this.cfg.agentId,
        at: startedAt,
        logPath,
        baseSha,
      });
      const stepError = await runBeforeJob(this.cfg.beforeJob, {
        cwd: this.cfg.worktreePath,
        env: agentEnvironment(this.cfg, data, issueId, baseSha, files, ''),
        log,
      });
      if (stepError) {
        await new Promise<void>((r) => log.end(r));
        throw new Error(stepError);
      }
      const marker = randomUUID();
      const oomKillsBefore = oomKillCount();
      const agent = new AgentProcess({
        command: this.cfg.agentCommand,
        cwd: this.cfg.worktreePath,
        env: {
          ...agentEnvironment(this.cfg, data, issueId, baseSha, files, marker),
          ...this.containment.agentEnv(),
        },
        log,
        echo: this.echo,
        progressTimeoutMs: this.cfg.lease.progressTimeoutMs,
        killGraceMs: this.cfg.lease.killGraceMs,
      });
      cur.agent = agent;
      if (agent.pid !== undefined) {
        const rec: AgentRecord = {
          pid: agent.pid,
          marker,
          jobId,
          attempt,
          startedAt,
        };
        writeAgentRecord(this.agentRecordFile, rec);
      }
      if (cur.leaseLost || this.shuttingDown)
        agent.kill(cur.leaseLost ? 'lease-lost' : 'shutdown', 0);
      const exit = await agent.exited;
      // Background processes it left (setsid, double forks) end with it, before the commit.
      await this.containment.sweep('agent exited');
      rmSync(this.agentRecordFile, { force: true });
      await new Promise<void>((r) => log.end(r));

      if (
        cur.leaseLost ||
        exit.killedFor === 'lease-lost' ||
        exit.killedFor === 'superseded'
      ) {
        throw new Error(
          `lease lost: ${this.cfg.agentId} no longer holds ${jobId}; its result is refused`,
        );
      }
      if (exit.killedFor === 'shutdown') {
        await job.moveToWait(token);
        await this.publish({
          type: 'release',
          jobId,
          attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          reason: 'runner stopping',
        });
        throw new WaitingError();
      }
      let error: string | undefined;
      if (exit.spawnError)
        error = `the agent command could not be started: ${exit.spawnError.message}`;
      else if (exit.killedFor === 'no-progress')
        error = `agent killed: no output and no file change for ${this.cfg.lease.progressTimeoutMs} ms`;
      else if (
        exit.exitCode !== 0 &&
        oomKillsBefore !== undefined &&
        (oomKillCount() ?? 0) > oomKillsBefore
      )
        error = outOfMemoryMessage();
      else if (exit.exitCode === 127)
        error = `agent command not found (exit 127): ${this.cfg.agentCommand}`;
      else if (exit.exitCode !== 0)
        error = `agent exited with ${exit.exitCode === null ? `signal ${exit.signal}` : `code ${exit.exitCode}`}`;
      if (error && logError) error = `${error} (${logError})`;
      if (error) {
        await this.publish({
          type: 'attempt-failed',
          jobId,
          attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          error,
          exitCode: exit.exitCode,
          baseSha,
          logPath,
        });
        throw new Error(error);
      }
      const outcome = await this.workspace.commit(
        baseSha,
        `issue #${issueId}: ${data.title.split('\n')[0]}`,
        {
          name: this.cfg.agentId,
          email: `${this.cfg.agentId}@agent-supervisor.local`,
        },
      );
      const resultRef = outcome.commitSha
        ? await this.publishResult(cur, outcome.commitSha)
        : undefined;
      const finishedAt = Date.now();
      return {
        ...(resultRef ? { resultRef } : {}),
        agentId: this.cfg.agentId,
        attempt,
        exitCode: 0,
        baseSha,
        ...outcome,
        durationMs: finishedAt - startedAt,
        logPath,
        startedAt,
        finishedAt,
        ...(logError ? { logError } : {}),
      };
    } catch (err) {
      if (
        err instanceof WaitingError ||
        err instanceof DelayedError ||
        err instanceof UnrecoverableError
      )
        throw err;
      const e = err as Error;
      if (
        !cur.leaseLost &&
        !e.message.startsWith('agent ') &&
        !e.message.startsWith('the agent')
      ) {
        // Failures of our own (git, disk) are reported like agent failures.
        await this.publish({
          type: 'attempt-failed',
          jobId,
          attempt,
          agentId: this.cfg.agentId,
          at: Date.now(),
          error: e.message,
          exitCode: null,
          ...(logPath ? { logPath } : {}),
        }).catch(() => undefined);
      }
      throw e;
    } finally {
      this.current = undefined;
      this.setState(
        this.shuttingDown
          ? 'stopping'
          : this.remote?.blocked
            ? 'blocked'
            : 'idle',
      );
    }
  }

  /**
   * Remote mode: pushes the result commit to its result ref. An unreachable remote is retried
   * while the lease holds; if it stays away, the job goes back to the queue (no attempt spent).
   */
  private async publishResult(
    cur: Current,
    commitSha: string,
  ): Promise<string | undefined> {
    if (!this.workspace.publish) return undefined;
    const ref = resultRefFor(cur.job.id!, cur.attempt);
    for (let i = 0, delay = 500; ; i++, delay *= 2) {
      if (cur.leaseLost)
        throw new Error(
          `lease lost: ${this.cfg.agentId} no longer holds ${cur.job.id}; its result is refused`,
        );
      try {
        return await this.workspace.publish(commitSha, ref);
      } catch (err) {
        if (!(err instanceof GitRemoteError)) throw err;
        if (err.kind === 'rejected')
          throw new Error(`the result could not be published: ${err.message}`);
        if (i >= 3) await this.handBackForRemote(cur, err);
        this.log('push of the result failed; retrying', {
          jobId: cur.job.id,
          error: err.message,
        });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /**
   * A foreign job the recorder has not adopted yet (the supervisor is down or slow): it goes back
   * to the queue for a moment, so it never runs under an issue id that is not its own.
   */
  private async handBackUnadopted(cur: Current): Promise<never> {
    const jobId = cur.job.id!;
    if (this.shuttingDown) {
      await cur.job.moveToWait(cur.token);
      throw new WaitingError();
    }
    this.log('foreign job not adopted yet; handed back for a moment', {
      jobId,
    });
    await cur.job.moveToDelayed(Date.now() + ADOPTION_RETRY_MS, cur.token);
    throw new DelayedError();
  }

  /** The git remote is away: stop taking jobs, put this one back without spending an attempt. */
  private async handBackForRemote(
    cur: Current,
    err: GitRemoteError,
  ): Promise<never> {
    this.remote?.block(err);
    const jobId = cur.job.id!;
    await cur.job.moveToWait(cur.token);
    await this.publish({
      type: 'release',
      jobId,
      attempt: cur.attempt,
      agentId: this.cfg.agentId,
      at: Date.now(),
      reason: err.message,
    });
    this.log('handed the job back: git remote unavailable', {
      jobId,
      error: err.message,
    });
    throw new WaitingError();
  }

  private onLeaseLost(cur: Current): void {
    if (cur.leaseLost) return;
    cur.leaseLost = true;
    this.log('lease lost: killing the agent, its result will be refused', {
      jobId: cur.job.id,
    });
    cur.agent?.kill('lease-lost', 0);
    void this.publish({
      type: 'lease-lost',
      jobId: cur.job.id!,
      attempt: cur.attempt,
      agentId: this.cfg.agentId,
      at: Date.now(),
    }).catch(() => undefined);
  }

  private async publish(ev: RunnerEvent): Promise<void> {
    await this.redis.xadd(
      this.keys.events,
      'MAXLEN',
      '~',
      '100000',
      '*',
      'e',
      JSON.stringify(ev),
    );
  }

  private setState(s: RunnerState): void {
    if (s !== this.state) {
      this.state = s;
      this.stateSince = Date.now();
    }
    void this.beat();
  }

  private startHeartbeat(): void {
    this.heartbeatTimer = setInterval(
      () => void this.beat(),
      this.cfg.heartbeatMs,
    );
  }

  private async beat(): Promise<void> {
    const key = this.keys.agent(this.cfg.agentId);
    const cur = this.current;
    const now = Date.now();
    const ttl = Math.max(3 * this.cfg.heartbeatMs, 3000);
    try {
      const owner = `${key}:owner`;
      await this.redis
        .multi()
        .hset(key, {
          agentId: this.cfg.agentId,
          host: this.cfg.host,
          pid: String(process.pid),
          version: RUNNER_VERSION,
          state: this.state,
          since: String(this.stateSince),
          heartbeat: String(now),
          jobId: cur?.job.id ?? '',
          issueId: cur?.issueId ?? '',
          title: cur?.title ?? '',
          agentPid: String(cur?.agent?.pid ?? ''),
          error: this.remote?.error ?? '',
        })
        .pexpire(key, ttl)
        .set(owner, this.instance, 'PX', ttl, 'XX')
        .zadd(this.keys.agents, now, this.cfg.agentId)
        .exec();
    } catch {
      // Redis is away; the next beat retries.
    }
  }

  /** Graceful: stop taking jobs, kill the agent, hand the job back without spending an attempt. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.setState('stopping');
    this.log('stopping', { holding: this.current?.job.id ?? null });
    this.current?.agent?.kill('shutdown');
    this.remote?.close();
    await this.worker?.close();
    await this.containment.sweep('runner stopping');
    this.containment.close();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const key = this.keys.agent(this.cfg.agentId);
    await this.redis
      .multi()
      .del(key)
      .del(`${key}:owner`)
      .zrem(this.keys.agents, this.cfg.agentId)
      .exec()
      .catch(() => undefined);
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
