import { clearPause, readPause, recordPause, type Pause } from './pause.js';
import { getSetting, setSetting, type Db } from './store/db.js';
import {
  localDay,
  nextLocalMidnight,
  usageOfDays,
} from './store/usage-totals.js';

/** Settings key: the local day on which `supervisor resume` ended a daily-budget pause. */
const RESUMED_KEY = 'budget.resumedDay';

/**
 * `budget.daily`: once the runs that ended today (local day) spent the budget, claiming pauses
 * until the next local midnight, through the pause every interface shows (pause.ts: BullMQ's
 * rate limit until then). The day's spend is one read of the kept totals (usage-totals.ts), so
 * the supervisor asks at every feed pass. `resume` overrides it for the rest of that day.
 */
export class DailyBudget {
  constructor(
    private readonly db: Db,
    private readonly dailyUsd: number | undefined,
    /** The time source (tests move it to the next day instead of waiting for it). */
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records the pause the budget calls for now, if any. The check and the write are one
   * immediate transaction: a `resume` from another process lands wholly before (the day is
   * marked, no pause) or wholly after (it ends the pause just recorded), never in between.
   */
  enforce(): void {
    if (this.dailyUsd === undefined) return;
    const t = this.now();
    // A plain read first: under budget (every feed pass, nearly always) takes no write lock.
    if (this.over(t) === undefined) return;
    this.db
      .transaction(() => {
        const spent = this.over(t);
        if (spent === undefined) return;
        recordPause(
          this.db,
          {
            kind: 'budget',
            reason: `$${spent.toFixed(4)} spent today, budget.daily is $${this.dailyUsd!.toFixed(2)}`,
            since: t,
            until: nextLocalMidnight(t),
          },
          t,
        );
      })
      .immediate();
  }

  /** The day's spend when it calls for a pause (at or over budget, not resumed today). */
  private over(t: number): number | undefined {
    const day = localDay(t);
    if (getSetting(this.db, RESUMED_KEY) === day) return undefined;
    const spent = usageOfDays(this.db, day, day).costUsd;
    return spent < this.dailyUsd! ? undefined : spent;
  }
}

/**
 * `supervisor resume`: ends the pause in force and returns it. A daily-budget pause ends for the
 * rest of the day (the day's spend is still over budget.daily): the day is marked in the same
 * transaction, so the supervisor's budget check, which may run between any two writes of another
 * process, never sees the pause gone without the mark and records it again.
 */
export function resumeNow(db: Db, now = Date.now()): Pause | undefined {
  return db
    .transaction(() => {
      const was = readPause(db, now);
      if (was?.kind === 'budget') setSetting(db, RESUMED_KEY, localDay(now));
      clearPause(db);
      return was;
    })
    .immediate();
}
