import { issueIdFromJobId } from '../../contract/job.js';
import { getSetting, setSetting } from '../store/db.js';
import { SETTLED_STATUSES } from '../store/issues.js';
import type { RecorderContext } from './context.js';
import type { ForeignJobs } from './foreign-jobs.js';
import type { JobOutcomeRecorder } from './job-outcomes.js';
import type { ResultRefCollector } from './result-ref-collector.js';

const RECONCILE_MARGIN_MS = 60_000;

/**
 * The safety net: finished jobs the fast path missed (the supervisor was down), jobs that
 * vanished (Redis lost its data: the issue is fed again), and foreign jobs not yet adopted.
 */
export class Reconciler {
  constructor(
    private readonly ctx: RecorderContext,
    private readonly foreign: ForeignJobs,
    private readonly outcomes: JobOutcomeRecorder,
    private readonly resultRefs: ResultRefCollector,
  ) {}

  async reconcile(): Promise<void> {
    const { queue, redis, issues, db } = this.ctx.o;
    const now = Date.now();
    const since =
      Number(getSetting(db, 'reconciled_until') ?? '0') - RECONCILE_MARGIN_MS;
    const base = `${this.ctx.o.prefix}:${queue.name}`;
    for (const set of ['completed', 'failed'] as const) {
      const ids = await redis.zrangebyscore(
        `${base}:${set}`,
        Math.max(0, since),
        '+inf',
      );
      for (const id of ids) {
        const issue = await this.foreign.issueForJob(id, set === 'completed');
        if (issue && !SETTLED_STATUSES.has(issue.status))
          await this.outcomes.onFinished(id);
      }
    }
    await this.refeedVanished(base, now);
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
        !this.foreign.isInvalid(id)
      )
        await this.foreign.issueForJob(id, true);
    }
    await this.resultRefs.collect().catch((err: Error) =>
      this.ctx.o.log('result refs: collection failed', {
        error: err.message,
      }),
    );
    setSetting(db, 'reconciled_until', String(now));
  }

  /** Jobs that should exist but do not: Redis restarted without persistence. */
  private async refeedVanished(base: string, now: number): Promise<void> {
    const { redis, issues, runs, db } = this.ctx.o;
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
              errorKind: 'vanished',
            });
          if (issueIdFromJobId(l.jobId) === l.id) {
            issues.update(l.id, { status: 'open' });
            this.ctx.stats.refed += 1;
          }
        });
      })();
    }
  }
}
