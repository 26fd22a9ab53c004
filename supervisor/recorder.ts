import { EventEmitter } from 'node:events';
import { QueueEvents, type Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  JobDataSchema,
  JobResultSchema,
  RunnerEventSchema,
  issueBranch,
  issueIdFromJobId,
  parseResultRef,
  resultRefFor,
  supervisorKeys,
  type JobResult,
  type RunnerEvent,
} from '../contract/job.js';
import { gitAt } from './repo.js';
import { ResultRefError, type ResultRefs } from './results.js';
import { getSetting, setSetting, type Db } from './store/db.js';
import { withChange } from './store/history.js';
import {
  SETTLED_STATUSES,
  type Issue,
  type IssueStore,
} from './store/issues.js';
import type { Run, RunStore } from './store/runs.js';

export interface RecorderEvents {
  /** An issue reached done or failed. */
  result: [{ issue: Issue; run: Run | undefined }];
  /** A run was superseded (re-claimed elsewhere) or its lease was lost. */
  lost: [{ run: Run; reason: string }];
  warning: [string];
}

export interface RecorderOptions {
  db: Db;
  issues: IssueStore;
  runs: RunStore;
  queue: Queue;
  /** Connection for reads (job state, zsets); a blocking one is duplicated from it. */
  redis: Redis;
  prefix: string;
  repoRoot: string;
  reconcileIntervalMs: number;
  /** Kills the agent of a superseded attempt if it still runs (frozen runner). */
  killAgent: (
    agentId: string,
    match: { jobId: string; attempt: number },
  ) => Promise<boolean>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Result refs of remote runners (fetched, checked, published as issue branches, deleted). */
  results?: ResultRefs;
}

const RECONCILE_MARGIN_MS = 60_000;

/**
 * The single writer of results: records claims, results and releases into SQLite,
 * idempotently per (job id, attempt). Fast path: the runners' event stream and QueueEvents.
 * Safety net: reconciling from the queue's own job state on start and periodically.
 */
export class Recorder extends EventEmitter<RecorderEvents> {
  private queueEvents: QueueEvents | undefined;
  private streamConn: Redis | undefined;
  private eventsConn: Redis | undefined;
  private closed = false;
  private chain: Promise<void> = Promise.resolve();
  private reconcileTimer: NodeJS.Timeout | undefined;
  private readonly keys;
  private readonly invalidSeen = new Set<string>();
  private readonly adoptionsPublished = new Set<string>();
  /** Counters for metrics. */
  readonly stats = {
    leaseLosses: 0,
    superseded: 0,
    refed: 0,
    adopted: 0,
    refusedResults: 0,
  };
  private refsCollectedAt = 0;

  constructor(private readonly o: RecorderOptions) {
    super();
    this.keys = supervisorKeys(o.prefix, o.queue.name);
  }

  async start(): Promise<void> {
    await this.o.results?.ensure();
    await this.reconcile();
    // BullMQ does not close a connection it was given: ours to disconnect in close().
    this.eventsConn = this.o.redis.duplicate();
    this.queueEvents = new QueueEvents(this.o.queue.name, {
      connection: this.eventsConn,
      prefix: this.o.prefix,
    });
    this.queueEvents.on('error', (err) =>
      this.o.log('queue events error', { error: err.message }),
    );
    this.queueEvents.on('completed', ({ jobId }) =>
      this.serial(() => this.onFinished(jobId)),
    );
    this.queueEvents.on('failed', ({ jobId }) =>
      this.serial(() => this.onFinished(jobId)),
    );
    this.queueEvents.on('added', ({ jobId }) => {
      // The feeder's own jobs need nothing here; only foreign ones are adopted.
      const own = issueIdFromJobId(jobId);
      if (own !== undefined && this.o.issues.exists(own)) return;
      void this.serial(async () => void (await this.issueForJob(jobId, true)));
    });
    this.queueEvents.on('stalled', ({ jobId }) =>
      this.serial(() => this.onStalled(jobId)),
    );
    this.streamConn = this.o.redis.duplicate();
    void this.readStream();
    const loop = async () => {
      if (this.closed) return;
      await this.serial(() => this.reconcile());
      this.reconcileTimer = setTimeout(loop, this.o.reconcileIntervalMs);
    };
    this.reconcileTimer = setTimeout(loop, this.o.reconcileIntervalMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    await this.queueEvents?.close().catch(() => undefined);
    this.eventsConn?.disconnect();
    this.streamConn?.disconnect();
    await this.chain;
  }

  /** Runs handlers one at a time, so the writes of one job never interleave. */
  private serial(fn: () => Promise<void>): Promise<void> {
    this.chain = this.chain
      .then(fn)
      .catch((err: Error) =>
        this.o.log('recorder error', { error: err.message }),
      );
    return this.chain;
  }

  private async readStream(): Promise<void> {
    let lastId = getSetting(this.o.db, 'events_last_id') ?? '0';
    while (!this.closed) {
      let res: Array<[string, Array<[string, string[]]>]> | null;
      try {
        res = (await this.streamConn!.xread(
          'COUNT',
          500,
          'BLOCK',
          1000,
          'STREAMS',
          this.keys.events,
          lastId,
        )) as typeof res;
      } catch (err) {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const entries = res?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      const batchLast = entries[entries.length - 1]![0];
      await this.serial(async () => {
        for (const [, fields] of entries) {
          const raw = fields[1];
          if (!raw) continue;
          const parsed = RunnerEventSchema.safeParse(safeJson(raw));
          if (parsed.success) await this.onRunnerEvent(parsed.data);
        }
        setSetting(this.o.db, 'events_last_id', batchLast);
      });
      lastId = batchLast;
    }
  }

  /** The issue row of a job: ours by id, a foreign producer's adopted on first sight. */
  private async issueForJob(
    jobId: string,
    adopt: boolean,
  ): Promise<Issue | undefined> {
    const n = issueIdFromJobId(jobId);
    if (n !== undefined) {
      const own = this.o.issues.get(n);
      if (own) return own;
    }
    const known = this.o.issues.byJobId(jobId);
    if (known) await this.publishAdoption(jobId, known.id);
    if (known || !adopt) return known;
    const job = await this.o.queue.getJob(jobId);
    if (!job) return undefined;
    const parsed = JobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      if (!this.invalidSeen.has(jobId)) {
        this.invalidSeen.add(jobId);
        this.emit(
          'warning',
          `job ${jobId} has data that does not match the job contract; it is not adopted (runners fail it)`,
        );
      }
      return undefined;
    }
    const d = parsed.data;
    const body =
      d.bodyEncoding === 'base64'
        ? Buffer.from(d.body, 'base64')
        : Buffer.from(d.body, 'utf8');
    this.stats.adopted += 1;
    const issue = this.o.issues.add(
      { title: d.title, body, priority: d.priority },
      { status: 'queued', jobId },
    );
    this.o.log('adopted a job added by another producer', {
      jobId,
      issueId: issue.id,
    });
    await this.publishAdoption(jobId, issue.id);
    return issue;
  }

  /** A finished foreign job's entry is no longer needed by any runner. */
  private async forgetAdoption(jobId: string): Promise<void> {
    if (issueIdFromJobId(jobId) !== undefined) return;
    this.adoptionsPublished.delete(jobId);
    await this.o.redis.hdel(this.keys.adopted, jobId).catch(() => undefined);
  }

  /**
   * Tells runners the issue id of a foreign job (SQLite first, then Redis: a crash between is
   * repaired on the next sight of the job, as the row is found by its job id).
   */
  private async publishAdoption(jobId: string, issueId: number): Promise<void> {
    if (this.adoptionsPublished.has(jobId)) return;
    await this.o.redis.hset(this.keys.adopted, jobId, String(issueId));
    this.adoptionsPublished.add(jobId);
  }

  private async onRunnerEvent(ev: RunnerEvent): Promise<void> {
    const issue = await this.issueForJob(ev.jobId, true);
    if (!issue) return;
    const { runs, issues, db } = this.o;
    const terminal = SETTLED_STATUSES.has(issue.status);
    switch (ev.type) {
      case 'claim': {
        const superseded: Run[] = [];
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            startedAt: ev.at,
            outcome: 'running',
            logPath: ev.logPath,
            baseSha: ev.baseSha ?? null,
          });
          for (const r of runs.running(ev.jobId)) {
            if (r.attempt === ev.attempt) continue;
            runs.upsert(issue.id, r.jobId, r.attempt, {
              outcome: 'lost',
              finishedAt: ev.at,
              error: `superseded: re-claimed by ${ev.agentId} (attempt ${ev.attempt})`,
            });
            superseded.push(r);
          }
          if (!terminal)
            issues.update(issue.id, {
              status: 'in_progress',
              agent: ev.agentId,
              attempts: Math.max(issue.attempts, ev.attempt),
            });
        })();
        for (const r of superseded)
          await this.supersede(r, `re-claimed by ${ev.agentId}`);
        break;
      }
      case 'release':
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            outcome: 'released',
            finishedAt: ev.at,
            error: ev.reason,
          });
          if (issue.status === 'in_progress' && issue.agent === ev.agentId)
            issues.update(issue.id, { status: 'queued' });
        })();
        break;
      case 'attempt-failed':
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            outcome: 'failed',
            finishedAt: ev.at,
            error: ev.error,
            exitCode: ev.exitCode,
            baseSha: ev.baseSha ?? null,
            logPath: ev.logPath ?? null,
          });
          if (!terminal)
            issues.update(issue.id, {
              error: ev.error,
              ...(issue.agent === ev.agentId && issue.status === 'in_progress'
                ? { status: 'queued' as const }
                : {}),
            });
        })();
        break;
      case 'lease-lost': {
        this.stats.leaseLosses += 1;
        runs.upsert(issue.id, ev.jobId, ev.attempt, {
          outcome: 'lost',
          finishedAt: ev.at,
          error: 'lease lost: the runner could not renew its lock',
        });
        break;
      }
    }
  }

  private async supersede(run: Run, reason: string): Promise<void> {
    this.stats.superseded += 1;
    if (run.agent) {
      const killed = await this.o
        .killAgent(run.agent, { jobId: run.jobId, attempt: run.attempt })
        .catch(() => false);
      this.o.log('superseded attempt', {
        jobId: run.jobId,
        attempt: run.attempt,
        agentId: run.agent,
        agentKilled: killed,
      });
    }
    this.emit('lost', { run, reason });
  }

  private async onStalled(jobId: string): Promise<void> {
    const issue = await this.issueForJob(jobId, false);
    if (!issue) return;
    for (const r of this.o.runs.running(jobId)) {
      this.o.runs.upsert(issue.id, jobId, r.attempt, {
        outcome: 'lost',
        finishedAt: Date.now(),
        error: 'stalled: the runner stopped renewing its lease',
      });
      await this.supersede(r, 'stalled');
    }
    if (issue.status === 'in_progress')
      this.o.issues.update(issue.id, { status: 'queued' });
  }

  private async onFinished(jobId: string): Promise<void> {
    const job = await this.o.queue.getJob(jobId);
    if (!job) return;
    const state = await job.getState();
    if (state === 'completed') await this.recordCompleted(job);
    else if (state === 'failed') await this.recordFailed(job);
  }

  private async recordCompleted(job: Job): Promise<void> {
    const issue = await this.issueForJob(job.id!, true);
    if (!issue || SETTLED_STATUSES.has(issue.status)) return;
    const parsed = JobResultSchema.safeParse(job.returnvalue);
    if (!parsed.success) {
      this.emit(
        'warning',
        `job ${job.id} completed with a result that does not match the contract`,
      );
      this.o.issues.update(issue.id, {
        status: 'failed',
        error: 'completed with an invalid result',
      });
      return;
    }
    const res: JobResult = parsed.data;
    // Remote runners' commits arrive by their result ref; a commit we do not have is refused.
    let incoming: string | undefined;
    let branchDone = false;
    try {
      if (res.resultRef !== undefined) {
        if (!this.o.results)
          throw new ResultRefError(
            `the result came as ref ${res.resultRef}, but this supervisor takes no result refs`,
          );
        incoming = await this.o.results.take(job.id!, res);
      } else if (res.commitSha) {
        // One git process per result: update-ref itself refuses a branch at anything but a
        // commit we have; only when it refuses do we ask what the object was.
        const git = gitAt(this.o.repoRoot);
        // Only an object id reaches git's argv (a result is the runner's word, and `-d` is an option).
        const branched =
          /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(res.commitSha) &&
          (await git
            .raw([
              'update-ref',
              `refs/heads/${issueBranch(issue.id)}`,
              res.commitSha,
            ])
            .then(
              () => true,
              async (err: unknown) => {
                if (
                  await git.raw(['cat-file', '-t', res.commitSha!]).then(
                    (t) => t.trim() === 'commit',
                    () => false,
                  )
                )
                  throw err;
                return false;
              },
            ));
        if (!branched)
          throw new ResultRefError(
            `commit ${res.commitSha.slice(0, 12)} is not in this repository and no result ref was pushed (a runner on another host must run in remote git mode)`,
          );
        branchDone = true;
      }
    } catch (err) {
      if (!(err instanceof ResultRefError)) throw err;
      return this.refuseResult(job, issue, res, err.message);
    }
    const branch = res.commitSha ? issueBranch(issue.id) : null;
    // The branch first: a crash after it is repaired by the next reconcile, never the reverse.
    if (branch && res.commitSha && !branchDone) {
      await gitAt(this.o.repoRoot).raw([
        'update-ref',
        `refs/heads/${branch}`,
        res.commitSha,
      ]);
    }
    const superseded: Run[] = [];
    const why = res.commitSha
      ? `${res.agentId} attempt ${res.attempt} committed ${res.commitSha.slice(0, 12)}`
      : `${res.agentId} attempt ${res.attempt} succeeded without changes`;
    withChange(this.o.db, { actor: 'recorder', reason: why }, () => {
      this.o.runs.upsert(issue.id, job.id!, res.attempt, {
        agent: res.agentId,
        outcome: 'succeeded',
        startedAt: res.startedAt,
        finishedAt: res.finishedAt,
        exitCode: res.exitCode,
        baseSha: res.baseSha,
        commitSha: res.commitSha,
        filesChanged: res.filesChanged,
        insertions: res.insertions,
        deletions: res.deletions,
        durationMs: Math.round(res.durationMs),
        logPath: res.logPath,
        error: res.logError ?? null,
      });
      for (const r of this.o.runs.running(job.id!)) {
        if (r.attempt === res.attempt) continue;
        this.o.runs.upsert(issue.id, r.jobId, r.attempt, {
          outcome: 'lost',
          finishedAt: res.finishedAt,
          error: 'superseded: another attempt completed',
        });
        superseded.push(r);
      }
      this.o.issues.update(issue.id, {
        status: 'done',
        agent: res.agentId,
        branch,
        commit: res.commitSha,
        attempts: Math.max(issue.attempts, res.attempt),
        error: res.logError ?? null,
      });
    });
    for (const r of superseded)
      await this.supersede(r, 'another attempt completed');
    if (incoming && res.resultRef) {
      await this.o.results!.dropIncoming(incoming);
      await this.o
        .results!.drop(res.resultRef)
        .catch((err: Error) =>
          this.o.log(
            'could not delete a published result ref (collected later)',
            { ref: res.resultRef, error: err.message },
          ),
        );
    }
    await this.forgetAdoption(job.id!);
    this.emit('result', {
      issue: this.o.issues.require(issue.id),
      run: this.o.runs.get(job.id!, res.attempt),
    });
  }

  /**
   * A completed job whose result cannot be published (ref missing, wrong commit): its attempt
   * fails with the reason, and the issue is fed again while it has attempts left.
   */
  private async refuseResult(
    job: Job,
    issue: Issue,
    res: JobResult,
    error: string,
  ): Promise<void> {
    this.stats.refusedResults += 1;
    this.o.log('result refused', {
      jobId: job.id,
      attempt: res.attempt,
      error,
    });
    if (res.resultRef && parseResultRef(res.resultRef))
      await this.o.results?.drop(res.resultRef).catch(() => undefined);
    const own = issueIdFromJobId(job.id!) === issue.id;
    this.o.db.transaction(() => {
      this.o.runs.upsert(issue.id, job.id!, res.attempt, {
        agent: res.agentId,
        outcome: 'failed',
        startedAt: res.startedAt,
        finishedAt: res.finishedAt,
        exitCode: res.exitCode,
        baseSha: res.baseSha,
        commitSha: res.commitSha,
        logPath: res.logPath,
        error,
      });
    })();
    const failures = this.o.runs
      .forIssue(issue.id)
      .filter((r) => r.outcome === 'failed').length;
    if (own && failures < (job.opts.attempts ?? 1)) {
      await job.remove();
      this.o.issues.update(issue.id, {
        status: 'open',
        error,
        attempts: Math.max(issue.attempts, res.attempt),
      });
      return;
    }
    this.o.issues.update(issue.id, {
      status: 'failed',
      error,
      attempts: Math.max(issue.attempts, res.attempt),
    });
    await this.forgetAdoption(job.id!);
    this.emit('result', {
      issue: this.o.issues.require(issue.id),
      run: this.o.runs.get(job.id!, res.attempt),
    });
  }

  /**
   * Result refs nobody will publish are deleted: those of finished issues, and those of
   * attempts that lost their lease, were handed back or failed (a late runner's push).
   */
  private async collectResultRefs(): Promise<void> {
    const results = this.o.results;
    if (
      !results ||
      Date.now() - this.refsCollectedAt < (results.local ? 0 : 60_000)
    )
      return;
    this.refsCollectedAt = Date.now();
    // Live issues (queued, in progress) by the key of their result refs (foreign jobs' too).
    const live = new Map(
      this.o.issues
        .liveJobIds()
        .map((l) => [parseResultRef(resultRefFor(l.jobId, 1))!.key, l]),
    );
    for (const { ref } of await results.list()) {
      const p = parseResultRef(ref)!;
      const l = live.get(p.key);
      const run = l ? this.o.runs.get(l.jobId, p.attempt) : undefined;
      const why = !l
        ? /^\d+$/.test(p.key) && this.o.issues.get(Number(p.key))
          ? `issue #${p.key} is ${this.o.issues.get(Number(p.key))!.status}`
          : 'its issue is not queued or in progress'
        : run && run.outcome !== 'running' && run.outcome !== 'succeeded'
          ? `attempt ${p.attempt} ${run.outcome === 'lost' ? 'lost its lease' : `was ${run.outcome}`}`
          : undefined;
      if (!why) continue;
      await results.drop(ref);
      this.o.log('refused a result ref nobody will publish', { ref, why });
    }
  }

  private async recordFailed(job: Job): Promise<void> {
    const issue = await this.issueForJob(job.id!, false);
    if (!issue || SETTLED_STATUSES.has(issue.status)) return;
    const offset = JobDataSchema.safeParse(job.data).data?.attemptOffset ?? 0;
    const attempt = job.attemptsStarted > 0 ? offset + job.attemptsStarted : 0;
    const reason = job.failedReason || 'failed';
    this.o.db.transaction(() => {
      if (attempt > 0)
        this.o.runs.upsert(issue.id, job.id!, attempt, {
          outcome: 'failed',
          finishedAt: job.finishedOn ?? Date.now(),
          error: reason,
        });
      this.o.issues.update(issue.id, {
        status: 'failed',
        error: reason,
        attempts: Math.max(issue.attempts, attempt),
      });
    })();
    await this.forgetAdoption(job.id!);
    this.emit('result', {
      issue: this.o.issues.require(issue.id),
      run: attempt > 0 ? this.o.runs.get(job.id!, attempt) : undefined,
    });
  }

  /**
   * The safety net: finished jobs the fast path missed (the supervisor was down), jobs that
   * vanished (Redis lost its data: the issue is fed again), and foreign jobs not yet adopted.
   */
  async reconcile(): Promise<void> {
    const { queue, redis, issues, runs, db } = this.o;
    const now = Date.now();
    const since =
      Number(getSetting(db, 'reconciled_until') ?? '0') - RECONCILE_MARGIN_MS;
    const base = `${this.o.prefix}:${queue.name}`;
    for (const set of ['completed', 'failed'] as const) {
      const ids = await redis.zrangebyscore(
        `${base}:${set}`,
        Math.max(0, since),
        '+inf',
      );
      for (const id of ids) {
        const issue = await this.issueForJob(id, set === 'completed');
        if (issue && !SETTLED_STATUSES.has(issue.status))
          await this.onFinished(id);
      }
    }
    // Jobs that should exist but do not: Redis restarted without persistence.
    const live = issues.liveJobIds();
    for (let i = 0; i < live.length; i += 1000) {
      const chunk = live.slice(i, i + 1000);
      // One EXISTS counts a whole chunk: only a chunk with a missing job is looked at key by key
      // (10,000 queued issues every reconcile were 10,000 commands and replies).
      if (
        (await redis.exists(...chunk.map((l) => `${base}:${l.jobId}`))) ===
        chunk.length
      )
        continue;
      const pipe = redis.pipeline();
      for (const l of chunk) pipe.exists(`${base}:${l.jobId}`);
      const res = (await pipe.exec()) ?? [];
      db.transaction(() => {
        chunk.forEach((l, k) => {
          if (res[k]?.[1] !== 0) return;
          for (const r of runs.running(l.jobId))
            runs.upsert(l.id, l.jobId, r.attempt, {
              outcome: 'lost',
              finishedAt: now,
              error: 'the job vanished from Redis',
            });
          if (issueIdFromJobId(l.jobId) === l.id) {
            issues.update(l.id, { status: 'open' });
            this.stats.refed += 1;
          }
        });
      })();
    }
    // Foreign jobs waiting or running that have no issue row yet.
    const waiting = [
      ...(await redis.lrange(`${base}:wait`, 0, -1)),
      ...(await redis.lrange(`${base}:active`, 0, -1)),
      ...(await redis.zrange(`${base}:prioritized`, '0', '-1')),
      ...(await redis.zrange(`${base}:delayed`, '0', '-1')),
    ];
    for (const id of waiting) {
      if (
        issueIdFromJobId(id) === undefined &&
        !issues.byJobId(id) &&
        !this.invalidSeen.has(id)
      )
        await this.issueForJob(id, true);
    }
    await this.collectResultRefs().catch((err: Error) =>
      this.o.log('result refs: collection failed', { error: err.message }),
    );
    setSetting(db, 'reconciled_until', String(now));
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
