import type { Queue } from 'bullmq';
import {
  BULL_PRIORITY,
  jobIdForIssue,
  type JobDataInput,
  type LandingFeedback,
} from '../contract/job.js';
import type { IssueStore, Issue } from './store/issues.js';
import type { RunStore } from './store/runs.js';

/**
 * Issues per addBulk. Small enough that a big import does not balloon the heap (a batch's job
 * objects live until Redis answers) and the first jobs reach the agents early; with the next
 * batch sent while Redis runs the last, 10,000 issues feed as fast as with batches of 1,000.
 */
export const FEED_BATCH = 250;

export interface FeederOptions {
  attempts: number;
  backoffMs: number;
  batchSize?: number;
  /** What a landing that sent the issue back tells its next agent (job data `landing`). */
  landingFeedback?: (issue: Issue) => LandingFeedback | undefined;
  /** The issues of a batch that may be fed now (dependencies met); default all. */
  ready?: (batch: readonly Issue[]) => Issue[];
  /** A test seam: called after a batch's jobs were added and before its issues are marked. */
  afterAdd?: () => Promise<void> | void;
}

/** BullMQ job data for an issue: text bodies as UTF-8, anything else byte-exact as base64. */
export function jobDataFor(
  issue: Issue,
  attemptOffset = 0,
  landing?: LandingFeedback,
): JobDataInput {
  const text = issue.body.toString('utf8');
  const exact = Buffer.from(text, 'utf8').equals(issue.body);
  return {
    issueId: issue.id,
    title: issue.title,
    body: exact ? text : issue.body.toString('base64'),
    bodyEncoding: exact ? 'utf8' : 'base64',
    priority: issue.priority,
    ...(attemptOffset > 0 ? { attemptOffset } : {}),
    ...(landing ? { landing } : {}),
  };
}

/**
 * Turns open issues into jobs. Job id `issue-<id>` makes the add idempotent: an issue has
 * at most one live job even if the supervisor dies between adding and marking it queued.
 */
export class Feeder {
  constructor(
    private readonly issues: IssueStore,
    private readonly runs: RunStore,
    private readonly queue: Queue,
    private readonly opts: FeederOptions,
  ) {}

  jobOptions(issue: Issue) {
    return {
      jobId: jobIdForIssue(issue.id),
      priority: BULL_PRIORITY[issue.priority],
      attempts: this.opts.attempts,
      backoff: { type: 'exponential', delay: this.opts.backoffMs },
      removeOnComplete: { age: 14 * 24 * 3600 },
      removeOnFail: { age: 30 * 24 * 3600 },
    } as const;
  }

  /** Feeds one batch; returns how many issues were queued. */
  async tick(): Promise<number> {
    const batch = this.issues.openBatch(this.opts.batchSize ?? FEED_BATCH);
    if (batch.length === 0) return 0;
    await this.add(batch);
    return batch.length;
  }

  /** Adds a batch's jobs, then marks its issues queued (a crash between is healed by the job ids). */
  private async add(all: readonly Issue[]): Promise<void> {
    const batch = this.opts.ready ? this.opts.ready(all) : all;
    if (batch.length === 0) return;
    const spent = this.runs.maxAttempts(batch.map((i) => i.id));
    // An issue worked before (sent back by a landing, retried, reopened) still has its finished
    // job under the same id, which would make the add a no-op: it goes first. A live (locked)
    // job is never removed.
    for (const issue of batch)
      if (issue.attempts > 0 || issue.requeues > 0)
        await this.queue.remove(jobIdForIssue(issue.id));
    await this.queue.addBulk(
      batch.map((issue) => ({
        name: 'issue',
        data: jobDataFor(
          issue,
          spent.get(issue.id) ?? 0,
          issue.requeues > 0 ? this.opts.landingFeedback?.(issue) : undefined,
        ),
        opts: this.jobOptions(issue),
      })),
    );
    await this.opts.afterAdd?.();
    this.issues.markQueued(
      batch.map((i) => ({ id: i.id, jobId: jobIdForIssue(i.id) })),
    );
  }

  /**
   * Feeds batch after batch until no open issue is left; returns how many were queued. The next
   * batch is read and sent while Redis still runs the last one, so SQLite and Redis work overlap.
   */
  async feedAll(): Promise<number> {
    const size = this.opts.batchSize ?? FEED_BATCH;
    let total = 0;
    let after = 0;
    let previous: Promise<void> | undefined;
    for (;;) {
      const batch = this.issues.openBatch(size, after);
      if (batch.length === 0) break;
      after = batch[batch.length - 1]!.id;
      const sent = this.add(batch);
      // Settled below or left to the next feed (job ids make a re-add harmless).
      sent.catch(() => undefined);
      if (previous) await previous;
      previous = sent;
      total += batch.length;
      if (batch.length < size) break;
    }
    if (previous) await previous;
    return total;
  }
}
