import { issueIdFromJobId } from '../../contract/job.js';
import { getSetting, setSetting } from '../store/db.js';
import { SETTLED_STATUSES } from '../store/issues.js';
import type { RecorderContext } from './context.js';
import type { ForeignJobs } from './foreign-jobs.js';
import type { JobOutcomeRecorder } from './job-outcomes.js';
import type { ResultRefCollector } from './result-ref-collector.js';

/** Finished jobs are re-read this far back: a remote worker's clock stamps their scores. */
const RECONCILE_MARGIN_MS = 60_000;

/** @defaultValue 500 — finished jobs per set, and live issues, a periodic round looks at. */
export const RECONCILE_PAGE = 500;

type FinishedSet = 'completed' | 'failed';

/** Where a walk of a finished set goes on: a score, and how many entries at it were read. */
interface ScoreCursor {
  score: number;
  skip: number;
}

/**
 * Attempt numbers skipped when an issue is fed again after its job vanished with Redis's data:
 * more than the attempts of one job whose claims can be in flight (published, not yet read) when
 * the data goes. The run table shows the jump (attempt 1, then 12).
 */
export const VANISHED_ATTEMPT_GAP = 10;

/**
 * The safety net: finished jobs the fast path missed (the supervisor was down, a handler failed),
 * jobs that vanished (Redis lost its data: the issue is fed again), and foreign jobs not yet
 * adopted. The fast path is the runners' event stream and QueueEvents (`added` adopts foreign
 * jobs), so a periodic round is bounded: one page of each set from where the last stopped, one
 * page of the live issues (a rolling walk of the backlog). A full round walks every page: the
 * first (at start) and any after Redis lost or rewound its data (the `epoch` key did not count on).
 * What a periodic round sends to Redis does not grow with the backlog.
 */
export class Reconciler {
  /** The epoch this supervisor last wrote; undefined until a round completes. */
  private epoch: number | undefined;
  /** The rolling walk of live issues goes on after this issue id (0: from the start). */
  private liveAfter = 0;
  private finishedFrom: Record<FinishedSet, ScoreCursor> | undefined;

  constructor(
    private readonly ctx: RecorderContext,
    private readonly foreign: ForeignJobs,
    private readonly outcomes: JobOutcomeRecorder,
    private readonly resultRefs: ResultRefCollector,
    private readonly page = RECONCILE_PAGE,
  ) {}

  async reconcile(): Promise<void> {
    const { redis, db } = this.ctx.o;
    const now = Date.now();
    const epoch = await redis.incr(this.ctx.keys.epoch);
    const full = this.epoch === undefined || epoch !== this.epoch + 1;
    const base = `${this.ctx.o.prefix}:${this.ctx.o.queue.name}`;
    if (!this.finishedFrom) {
      const since = Math.max(
        0,
        Number(getSetting(db, 'reconciled_until') ?? '0') - RECONCILE_MARGIN_MS,
      );
      this.finishedFrom = {
        completed: { score: since, skip: 0 },
        failed: { score: since, skip: 0 },
      };
    }
    let until = now;
    for (const set of ['completed', 'failed'] as const) {
      const reached = await this.finished(base, set, full, now);
      until = Math.min(until, reached);
    }
    await this.vanished(base, now, full);
    if (full) await this.unadopted(base);
    await this.resultRefs.collect().catch((err: Error) =>
      this.ctx.o.log('result refs: collection failed', {
        error: err.message,
      }),
    );
    setSetting(db, 'reconciled_until', String(until));
    this.epoch = epoch;
  }

  /**
   * Finished jobs of one set from its cursor, a page (every page in a full round); returns the
   * time up to which the set has been read (for the watermark a restart starts from).
   */
  private async finished(
    base: string,
    set: FinishedSet,
    full: boolean,
    now: number,
  ): Promise<number> {
    const { redis } = this.ctx.o;
    const c = this.finishedFrom![set];
    for (;;) {
      const flat = await redis.zrangebyscore(
        `${base}:${set}`,
        c.score,
        '+inf',
        'WITHSCORES',
        'LIMIT',
        c.skip,
        this.page,
      );
      for (let k = 0; k < flat.length; k += 2) {
        const id = flat[k]!;
        const issue = await this.foreign.issueForJob(id, set === 'completed');
        if (issue && !SETTLED_STATUSES.has(issue.status))
          await this.outcomes.onFinished(id);
        const score = Number(flat[k + 1]);
        if (score === c.score) c.skip += 1;
        else Object.assign(c, { score, skip: 1 });
      }
      if (flat.length < 2 * this.page) {
        // Caught up: the next round reads from a margin back (late scores from skewed clocks).
        Object.assign(c, {
          score: Math.max(0, now - RECONCILE_MARGIN_MS),
          skip: 0,
        });
        return now;
      }
      if (!full) return c.score;
    }
  }

  /** Live issues whose job is gone: a page of the rolling walk (all of them in a full round). */
  private async vanished(
    base: string,
    now: number,
    full: boolean,
  ): Promise<void> {
    let after = full ? 0 : this.liveAfter;
    do {
      const page = this.ctx.o.issues.liveJobPage(after, this.page);
      await this.refeedVanished(base, page, now);
      after = page.length < this.page ? 0 : page[page.length - 1]!.id;
    } while (full && after !== 0);
    this.liveAfter = after;
  }

  /** Jobs that should exist but do not: Redis restarted without persistence. */
  private async refeedVanished(
    base: string,
    live: ReadonlyArray<{ id: number; jobId: string }>,
    now: number,
  ): Promise<void> {
    const { redis, issues, runs, db } = this.ctx.o;
    if (live.length === 0) return;
    // One EXISTS counts the page: only a page with a missing job is looked at key by key.
    if (
      (await redis.exists(...live.map((l) => `${base}:${l.jobId}`))) ===
      live.length
    )
      return;
    const pipe = redis.pipeline();
    for (const l of live) pipe.exists(`${base}:${l.jobId}`);
    const res = (await pipe.exec()) ?? [];
    db.transaction(() => {
      live.forEach((l, k) => {
        if (res[k]?.[1] !== 0) return;
        for (const r of runs.running(l.jobId))
          runs.upsert(l.id, l.jobId, r.attempt, {
            outcome: 'lost',
            finishedAt: now,
            error: 'the job vanished from Redis',
            errorKind: 'vanished',
          });
        if (issueIdFromJobId(l.jobId) === l.id) {
          // The vanished job's last claims may have vanished with the event stream: its runner
          // can still report an attempt nobody recorded. The next job's attempts start past a
          // gap, so such a late report never lands on one of the new job's runs.
          runs.reserveAttempts(
            l.id,
            (runs.maxAttempts([l.id]).get(l.id) ?? 0) + VANISHED_ATTEMPT_GAP,
          );
          issues.update(l.id, { status: 'open' });
          this.ctx.stats.refed += 1;
        }
      });
    })();
  }

  /**
   * Foreign jobs waiting or running with no issue row yet, page by page (full rounds only:
   * while the supervisor runs, QueueEvents' `added` adopts them as they come).
   */
  private async unadopted(base: string): Promise<void> {
    const { redis, issues } = this.ctx.o;
    const pages: Array<(from: number) => Promise<string[]>> = [
      (from) => redis.lrange(`${base}:wait`, from, from + this.page - 1),
      (from) => redis.lrange(`${base}:active`, from, from + this.page - 1),
      (from) =>
        redis.zrange(
          `${base}:prioritized`,
          String(from),
          String(from + this.page - 1),
        ),
      (from) =>
        redis.zrange(
          `${base}:delayed`,
          String(from),
          String(from + this.page - 1),
        ),
    ];
    for (const read of pages) {
      for (let from = 0; ; from += this.page) {
        const ids = await read(from);
        for (const id of ids)
          if (
            issueIdFromJobId(id) === undefined &&
            !issues.byJobId(id) &&
            !this.foreign.isInvalid(id)
          )
            await this.foreign.issueForJob(id, true);
        if (ids.length < this.page) break;
      }
    }
  }
}
