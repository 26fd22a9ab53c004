import { withChange } from '../store/history.js';
import type { RecorderContext } from './context.js';
import type { ForeignJobs } from './foreign-jobs.js';

/**
 * Actions another queue client (Bull Board) takes on our jobs, followed in SQLite at once: a
 * finished job retried → its issue queued; a waiting job removed → its issue cancelled (not fed
 * again as if Redis had lost it). Our own removals happen while the issue is not `queued`.
 */
export class QueueClientActions {
  constructor(
    private readonly ctx: RecorderContext,
    private readonly foreign: ForeignJobs,
  ) {}

  async onRetried(jobId: string, prev: string): Promise<void> {
    const issue = await this.foreign.issueForJob(jobId, false);
    if (!issue) return;
    if (issue.status !== (prev === 'failed' ? 'failed' : 'done')) return;
    const { db, issues } = this.ctx.o;
    withChange(
      db,
      {
        actor: 'queue',
        reason: `job ${jobId} retried by a queue client (Bull Board): ${prev} → waiting`,
      },
      () => issues.update(issue.id, { status: 'queued', error: null }),
    );
  }

  async onRemoved(jobId: string, prev: string): Promise<void> {
    const issue = await this.foreign.issueForJob(jobId, false);
    if (!issue || issue.status !== 'queued') return;
    const { db, issues } = this.ctx.o;
    withChange(
      db,
      {
        actor: 'queue',
        reason: `its ${prev} job ${jobId} was removed from the queue (Bull Board or another client)`,
      },
      () => issues.update(issue.id, { status: 'cancelled' }),
    );
  }
}
