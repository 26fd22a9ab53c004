import type { Job } from 'bullmq';
import {
  JobDataSchema,
  JobResultSchema,
  issueIdFromJobId,
  parseResultRef,
  type JobResult,
} from '../../contract/job.js';
import { ResultRefError } from '../results.js';
import { withChange } from '../store/history.js';
import { withOutputTail } from './output-tail.js';
import { SETTLED_STATUSES, type Issue } from '../store/issues.js';
import { usageFields, type Run } from '../store/runs.js';
import type { BranchPublisher } from './branch-publisher.js';
import type { RecorderContext } from './context.js';
import type { ForeignJobs } from './foreign-jobs.js';

/** Records what BullMQ says about a job: completed (result → branch, done), failed, stalled. */
export class JobOutcomeRecorder {
  constructor(
    private readonly ctx: RecorderContext,
    private readonly foreign: ForeignJobs,
    private readonly branches: BranchPublisher,
  ) {}

  async onFinished(jobId: string): Promise<void> {
    const job = await this.ctx.o.queue.getJob(jobId);
    if (!job) return;
    const state = await job.getState();
    if (state === 'completed') await this.recordCompleted(job);
    else if (state === 'failed') await this.recordFailed(job);
  }

  async onStalled(jobId: string): Promise<void> {
    const { o } = this.ctx;
    const issue = await this.foreign.issueForJob(jobId, false);
    if (!issue) return;
    // One transaction for the runs and the issue; agents are killed after it commits.
    const stalled = o.db.transaction(() => {
      const running = o.runs.running(jobId);
      for (const r of running)
        o.runs.upsert(issue.id, jobId, r.attempt, {
          outcome: 'lost',
          finishedAt: Date.now(),
          error: 'stalled: the runner stopped renewing its lease',
          errorKind: 'stalled',
        });
      if (issue.status === 'in_progress')
        o.issues.update(issue.id, { status: 'queued' });
      return running;
    })();
    for (const r of stalled) await this.ctx.supersede(r, 'stalled');
  }

  private async recordCompleted(job: Job): Promise<void> {
    const { o } = this.ctx;
    const issue = await this.foreign.issueForJob(job.id!, true);
    if (!issue || SETTLED_STATUSES.has(issue.status)) return;
    const parsed = JobResultSchema.safeParse(job.returnvalue);
    if (!parsed.success) {
      this.ctx.warn(
        `job ${job.id} completed with a result that does not match the contract`,
      );
      const attempt = attemptOf(job);
      const error = 'completed with an invalid result';
      o.db.transaction(() => {
        if (attempt > 0)
          o.runs.upsert(issue.id, job.id!, attempt, {
            outcome: 'failed',
            finishedAt: job.finishedOn ?? Date.now(),
            error,
            errorKind: 'invalid-result',
          });
        o.issues.update(issue.id, {
          status: 'failed',
          error,
          attempts: Math.max(issue.attempts, attempt),
        });
      })();
      await this.foreign.forget(job.id!);
      this.ctx.finished(issue.id, job.id!, attempt > 0 ? attempt : undefined);
      return;
    }
    const res: JobResult = parsed.data;
    // Remote runners' commits arrive by their result ref; a commit we do not have is refused.
    let published;
    try {
      published = await this.branches.publish(job.id!, issue.id, res);
    } catch (err) {
      if (!(err instanceof ResultRefError)) throw err;
      return this.refuseResult(job, issue, res, err.message);
    }
    const { branch, incoming } = published;
    const superseded: Run[] = [];
    const why = res.commitSha
      ? `${res.agentId} attempt ${res.attempt} committed ${res.commitSha.slice(0, 12)}`
      : `${res.agentId} attempt ${res.attempt} succeeded without changes`;
    withChange(o.db, { actor: 'recorder', reason: why }, () => {
      o.runs.upsert(issue.id, job.id!, res.attempt, {
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
        ...usageFields(res.usage),
      });
      for (const r of o.runs.running(job.id!)) {
        if (r.attempt === res.attempt) continue;
        o.runs.upsert(issue.id, r.jobId, r.attempt, {
          outcome: 'lost',
          finishedAt: res.finishedAt,
          error: 'superseded: another attempt completed',
          errorKind: 'superseded',
        });
        superseded.push(r);
      }
      o.issues.update(issue.id, {
        status: 'done',
        agent: res.agentId,
        branch,
        commit: res.commitSha,
        attempts: Math.max(issue.attempts, res.attempt),
        error: res.logError ?? null,
      });
    });
    for (const r of superseded)
      await this.ctx.supersede(r, 'another attempt completed');
    if (incoming && res.resultRef) {
      await o.results!.dropIncoming(incoming);
      await o.results!.drop(res.resultRef).catch((err: Error) =>
        o.log('could not delete a published result ref (collected later)', {
          ref: res.resultRef,
          error: err.message,
        }),
      );
    }
    await this.foreign.forget(job.id!);
    this.ctx.finished(issue.id, job.id!, res.attempt);
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
    const { o } = this.ctx;
    this.ctx.stats.refusedResults += 1;
    o.log('result refused', {
      jobId: job.id,
      attempt: res.attempt,
      error,
    });
    if (res.resultRef && parseResultRef(res.resultRef))
      await o.results?.drop(res.resultRef).catch(() => undefined);
    const own = issueIdFromJobId(job.id!) === issue.id;
    const failures =
      o.runs
        .forIssue(issue.id)
        .filter((r) => r.outcome === 'failed' && r.attempt !== res.attempt)
        .length + 1;
    const again = own && failures < (job.opts.attempts ?? 1);
    // The job goes first (Redis), then one transaction: a crash between leaves a queued issue
    // whose job vanished, which the reconcile feeds again; never a finished job fed twice.
    if (again) await job.remove();
    o.db.transaction(() => {
      o.runs.upsert(issue.id, job.id!, res.attempt, {
        agent: res.agentId,
        outcome: 'failed',
        startedAt: res.startedAt,
        finishedAt: res.finishedAt,
        exitCode: res.exitCode,
        baseSha: res.baseSha,
        commitSha: res.commitSha,
        logPath: res.logPath,
        error,
        errorKind: 'result-refused',
      });
      o.issues.update(issue.id, {
        status: again ? 'open' : 'failed',
        error,
        attempts: Math.max(issue.attempts, res.attempt),
      });
    })();
    if (again) return;
    await this.foreign.forget(job.id!);
    this.ctx.finished(issue.id, job.id!, res.attempt);
  }

  private async recordFailed(job: Job): Promise<void> {
    const { o } = this.ctx;
    const issue = await this.foreign.issueForJob(job.id!, false);
    if (!issue || SETTLED_STATUSES.has(issue.status)) return;
    const attempt = attemptOf(job);
    const run = attempt > 0 ? o.runs.get(job.id!, attempt) : undefined;
    const reason = withOutputTail(
      job.failedReason || 'failed',
      run?.logPath ?? null,
    );
    o.db.transaction(() => {
      if (attempt > 0)
        o.runs.upsert(issue.id, job.id!, attempt, {
          outcome: 'failed',
          finishedAt: job.finishedOn ?? Date.now(),
          error: reason,
          errorKind: 'job-failed',
        });
      o.issues.update(issue.id, {
        status: 'failed',
        error: reason,
        attempts: Math.max(issue.attempts, attempt),
      });
    })();
    await this.foreign.forget(job.id!);
    this.ctx.finished(issue.id, job.id!, attempt > 0 ? attempt : undefined);
  }
}

/** The attempt number a job's last start had (0: it never started). */
function attemptOf(job: Job): number {
  const offset = JobDataSchema.safeParse(job.data).data?.attemptOffset ?? 0;
  return job.attemptsStarted > 0 ? offset + job.attemptsStarted : 0;
}
