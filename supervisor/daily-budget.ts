import type { Pause } from './pause.js';
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

  /** The pause the budget calls for now, if any. */
  check(): Pause | undefined {
    if (this.dailyUsd === undefined) return undefined;
    const t = this.now();
    const day = localDay(t);
    if (getSetting(this.db, RESUMED_KEY) === day) return undefined;
    const spent = usageOfDays(this.db, day, day).costUsd;
    if (spent < this.dailyUsd) return undefined;
    return {
      kind: 'budget',
      reason: `$${spent.toFixed(4)} spent today, budget.daily is $${this.dailyUsd.toFixed(2)}`,
      since: t,
      until: nextLocalMidnight(t),
    };
  }
}

/** `resume` ended a daily-budget pause: the budget does not pause again until the next day. */
export function budgetResumedToday(db: Db, now = Date.now()): void {
  setSetting(db, RESUMED_KEY, localDay(now));
}
