import { JobDataSchema, issueIdFromJobId } from '../../contract/job.js';
import type { Issue } from '../store/issues.js';
import type { RecorderContext } from './context.js';

/**
 * The issue row of a job: the feeder's by its id, a foreign producer's adopted on first sight
 * (one issue row, and its id published to runners in the `adopted` hash).
 */
export class ForeignJobs {
  private readonly invalidSeen = new Set<string>();
  private readonly published = new Set<string>();

  constructor(private readonly ctx: RecorderContext) {}

  /** A job whose data broke the contract (warned about once, never adopted). */
  isInvalid(jobId: string): boolean {
    return this.invalidSeen.has(jobId);
  }

  async issueForJob(jobId: string, adopt: boolean): Promise<Issue | undefined> {
    const { o } = this.ctx;
    const n = issueIdFromJobId(jobId);
    if (n !== undefined) {
      const own = o.issues.get(n);
      if (own) return own;
    }
    const known = o.issues.byJobId(jobId);
    if (known) await this.publish(jobId, known.id);
    if (known || !adopt) return known;
    const job = await o.queue.getJob(jobId);
    if (!job) return undefined;
    const parsed = JobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      if (!this.invalidSeen.has(jobId)) {
        this.invalidSeen.add(jobId);
        this.ctx.warn(
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
    this.ctx.stats.adopted += 1;
    const issue = o.issues.add(
      { title: d.title, body, priority: d.priority },
      { status: 'queued', jobId },
    );
    o.log('adopted a job added by another producer', {
      jobId,
      issueId: issue.id,
    });
    await this.publish(jobId, issue.id);
    return issue;
  }

  /**
   * Tells runners the issue id of a foreign job (SQLite first, then Redis: a crash between is
   * repaired on the next sight of the job, as the row is found by its job id).
   */
  private async publish(jobId: string, issueId: number): Promise<void> {
    if (this.published.has(jobId)) return;
    await this.ctx.o.redis.hset(this.ctx.keys.adopted, jobId, String(issueId));
    this.published.add(jobId);
  }

  /** A finished foreign job's entry is no longer needed by any runner. */
  async forget(jobId: string): Promise<void> {
    if (issueIdFromJobId(jobId) !== undefined) return;
    this.published.delete(jobId);
    await this.ctx.o.redis
      .hdel(this.ctx.keys.adopted, jobId)
      .catch(() => undefined);
  }
}
