import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { issueIdFromJobId, supervisorKeys } from '../contract/job.js';
import type { Run } from './store/runs.js';
import { RefWriter } from '../git/ref-writer.js';
import { RefPacker } from '../git/ref-packer.js';
import { BranchPublisher } from './recorder/branch-publisher.js';
import { gitCommandTimeout } from './repo.js';
import type {
  RecorderContext,
  RecorderEvents,
  RecorderOptions,
  RecorderStats,
} from './recorder/context.js';
import { RunnerEventStream } from './recorder/event-stream.js';
import { ForeignJobs } from './recorder/foreign-jobs.js';
import { JobOutcomeRecorder } from './recorder/job-outcomes.js';
import { QueueEventListener, streamPosition } from './recorder/queue-events.js';
import { Reconciler } from './recorder/reconcile.js';
import { ResultRefCollector } from './recorder/result-ref-collector.js';
import { RunnerEventRecorder } from './recorder/runner-events.js';
import { QueueClientActions } from './recorder/queue-client-actions.js';

export type { RecorderEvents, RecorderOptions } from './recorder/context.js';

const DEFAULT_HANDLER_DEADLINE_MS = 300_000;

function withDeadline(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `a recorder handler took longer than ${ms} ms; recording goes on without it`,
          ),
        ),
      ms,
    );
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/**
 * The single writer of results: records claims, results and releases into SQLite,
 * idempotently per (job id, attempt). Fast path: the runners' event stream and QueueEvents.
 * Safety net: reconciling from the queue's own job state on start and periodically.
 *
 * This class only wires its parts and runs their handlers one at a time: foreign-job adoption
 * (`recorder/foreign-jobs.ts`), runner events (`runner-events.ts`), BullMQ outcomes
 * (`job-outcomes.ts`), branch publishing (`branch-publisher.ts`), reconcile (`reconcile.ts`) and
 * result-ref clean-up (`result-ref-collector.ts`).
 */
export class Recorder extends EventEmitter<RecorderEvents> {
  private queueEvents: QueueEventListener | undefined;
  private stream: RunnerEventStream | undefined;
  private closed = false;
  private chain: Promise<void> = Promise.resolve();
  private reconcileTimer: NodeJS.Timeout | undefined;
  /** Counters for metrics. */
  readonly stats: RecorderStats = {
    leaseLosses: 0,
    superseded: 0,
    refed: 0,
    adopted: 0,
    refusedResults: 0,
    timeouts: 0,
    oomKills: 0,
  };
  private readonly ctx: RecorderContext;
  private readonly foreign: ForeignJobs;
  private readonly runnerEvents: RunnerEventRecorder;
  private readonly clientActions: QueueClientActions;
  private readonly outcomes: JobOutcomeRecorder;
  private readonly reconciler: Reconciler;
  private readonly refs: RefWriter;
  private readonly packer: RefPacker;

  constructor(private readonly o: RecorderOptions) {
    super();
    this.ctx = {
      o,
      stats: this.stats,
      keys: supervisorKeys(o.prefix, o.queue.name),
      finished: (issueId, jobId, attempt) =>
        this.emit('result', {
          issue: o.issues.require(issueId),
          run: attempt === undefined ? undefined : o.runs.get(jobId, attempt),
        }),
      warn: (message) => this.emit('warning', message),
      supersede: (run, reason) => this.supersede(run, reason),
    };
    this.refs = new RefWriter(o.repoRoot, gitCommandTimeout);
    this.packer = new RefPacker(
      o.repoRoot,
      o.gitCommonDir ?? join(o.repoRoot, '.git'),
      (err) => o.log('packing refs failed', { error: err.message }),
      o.packRefsEvery,
    );
    this.foreign = new ForeignJobs(this.ctx);
    this.runnerEvents = new RunnerEventRecorder(this.ctx, this.foreign);
    this.clientActions = new QueueClientActions(this.ctx, this.foreign);
    this.outcomes = new JobOutcomeRecorder(
      this.ctx,
      this.foreign,
      new BranchPublisher(o.repoRoot, o.results, this.refs, this.packer),
    );
    this.reconciler = new Reconciler(
      this.ctx,
      this.foreign,
      this.outcomes,
      new ResultRefCollector(this.ctx),
    );
  }

  async start(): Promise<void> {
    await this.o.results?.ensure();
    this.packer.start();
    // The issue/job-id invariant, before anything relies on it.
    const repaired = this.o.issues.repairMissingJobIds();
    if (repaired.length > 0)
      this.o.log('repaired issues queued or in progress without a job id', {
        issues: repaired,
      });
    // Events are read from before the first reconcile: a foreign job added after that round
    // looked is adopted from its `added` event (periodic rounds do not adopt), never missed.
    const from = await streamPosition(
      this.o.redis,
      this.o.queue.name,
      this.o.prefix,
    );
    await this.reconcile();
    this.queueEvents = new QueueEventListener(
      this.o.redis,
      this.o.queue.name,
      this.o.prefix,
      {
        error: (err) =>
          this.o.log('queue events error', { error: err.message }),
        finished: (jobId) =>
          void this.serial(() => this.outcomes.onFinished(jobId)),
        added: (jobId) => {
          // The feeder's own jobs need nothing here; only foreign ones are adopted.
          const own = issueIdFromJobId(jobId);
          if (own !== undefined && this.o.issues.exists(own)) return;
          void this.serial(
            async () => void (await this.foreign.issueForJob(jobId, true)),
          );
        },
        stalled: (jobId) =>
          void this.serial(() => this.outcomes.onStalled(jobId)),
        retried: (jobId, prev) =>
          void this.serial(() => this.clientActions.onRetried(jobId, prev)),
        removed: (jobId, prev) =>
          void this.serial(() => this.clientActions.onRemoved(jobId, prev)),
      },
      from,
    );
    this.stream = new RunnerEventStream(
      this.o.redis.duplicate(),
      this.ctx.keys.events,
      this.o.db,
      (events, persist) =>
        this.serial(async () => {
          for (const ev of events) await this.runnerEvents.record(ev);
          persist();
        }),
    );
    this.stream.start();
    const loop = async () => {
      if (this.closed) return;
      await this.serial(() => this.reconciler.reconcile());
      this.reconcileTimer = setTimeout(loop, this.o.reconcileIntervalMs);
    };
    this.reconcileTimer = setTimeout(loop, this.o.reconcileIntervalMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    await this.queueEvents?.close();
    this.stream?.close();
    await this.chain;
    await this.refs.close();
    await this.packer.close();
  }

  /** The safety net, also run once at start (see `recorder/reconcile.ts`). */
  reconcile(): Promise<void> {
    return this.reconciler.reconcile();
  }

  /**
   * Runs handlers one at a time, so the writes of one job never interleave. Each gets a deadline:
   * a handler stuck past it (a hung git, Docker or Redis call: those have their own timeouts,
   * this bounds what they miss) is reported and the next one runs. Its own writes, should it
   * still finish, are idempotent per (job id, attempt) like every other.
   */
  private serial(fn: () => Promise<void>): Promise<void> {
    const deadline = this.o.handlerDeadlineMs ?? DEFAULT_HANDLER_DEADLINE_MS;
    this.chain = this.chain
      .then(() => withDeadline(fn(), deadline))
      .catch((err: Error) =>
        this.o.log('recorder error', { error: err.message }),
      );
    return this.chain;
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
}
