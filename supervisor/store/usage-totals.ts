import type { Db } from './db.js';

/**
 * Tokens and cost, totalled as runs record them (docs/agents.md, "Totals"): per issue (`issue
 * list`, `issue show`), per local day and model (`status` and the page: today, this week; the
 * daily budget) and per model (`/metrics` counters). SQLite triggers on `runs` keep them, like
 * the read model (read-model.ts), so no read ever sums the runs table.
 *
 * A run's usage columns are written once (the recorder fills them in, never overwrites), but the
 * triggers add the difference between the new and the old values, so any write stays counted
 * exactly once. The day is the local date of the run's end (its start, or now, when unknown).
 */

const KINDS = [
  'cost_usd',
  'input_tokens',
  'output_tokens',
  'cache_read_tokens',
  'cache_write_tokens',
] as const;

export const USAGE_TRIGGERS = ['usage_totals_insert', 'usage_totals_update'];

const has = (row: 'NEW' | 'OLD') =>
  `(${row}.input_tokens IS NOT NULL OR ${row}.cost_usd IS NOT NULL)`;

/** The upserts that add (NEW − OLD) to each table; `old` false on insert. */
function addDelta(old: boolean): string {
  const delta = (c: string) =>
    old
      ? `COALESCE(NEW.${c}, 0) - COALESCE(OLD.${c}, 0)`
      : `COALESCE(NEW.${c}, 0)`;
  const runs = old ? `CASE WHEN ${has('OLD')} THEN 0 ELSE 1 END` : '1';
  const vals = [...KINDS.map(delta), runs].join(', ');
  const cols = [...KINDS, 'runs'].join(', ');
  const sets = [...KINDS, 'runs']
    .map((c) => `${c} = ${c} + excluded.${c}`)
    .join(', ');
  const day = `date(COALESCE(NEW.finished_at, NEW.started_at, CAST(strftime('%s', 'now') AS INTEGER) * 1000) / 1000, 'unixepoch', 'localtime')`;
  return `
    INSERT INTO usage_by_issue (issue_id, ${cols}) VALUES (NEW.issue_id, ${vals})
      ON CONFLICT (issue_id) DO UPDATE SET ${sets};
    INSERT INTO usage_by_day (day, model, ${cols}) VALUES (${day}, COALESCE(NEW.model, ''), ${vals})
      ON CONFLICT (day, model) DO UPDATE SET ${sets};
    INSERT INTO usage_by_model (model, ${cols}) VALUES (COALESCE(NEW.model, ''), ${vals})
      ON CONFLICT (model) DO UPDATE SET ${sets};`;
}

const COLS = `
    cost_usd           REAL    NOT NULL DEFAULT 0,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    runs               INTEGER NOT NULL DEFAULT 0`;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS usage_by_issue (issue_id INTEGER PRIMARY KEY, ${COLS});
  CREATE TABLE IF NOT EXISTS usage_by_day (
    day TEXT NOT NULL, model TEXT NOT NULL, ${COLS}, PRIMARY KEY (day, model)) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS usage_by_model (model TEXT PRIMARY KEY, ${COLS}) WITHOUT ROWID;
  CREATE TRIGGER IF NOT EXISTS usage_totals_insert AFTER INSERT ON runs
  WHEN ${has('NEW')} BEGIN ${addDelta(false)}
  END;
  CREATE TRIGGER IF NOT EXISTS usage_totals_update
  AFTER UPDATE OF ${KINDS.join(', ')} ON runs
  WHEN ${has('NEW')} AND (${KINDS.map((c) => `NEW.${c} IS NOT OLD.${c}`).join(' OR ')}) BEGIN ${addDelta(true)}
  END;
`;

const RECOMPUTE = (() => {
  const sums = `${KINDS.map((c) => `COALESCE(SUM(${c}), 0)`).join(', ')}, COUNT(*)`;
  const cols = [...KINDS, 'runs'].join(', ');
  const usage = `FROM runs WHERE input_tokens IS NOT NULL OR cost_usd IS NOT NULL`;
  const day = `date(COALESCE(finished_at, started_at, CAST(strftime('%s', 'now') AS INTEGER) * 1000) / 1000, 'unixepoch', 'localtime')`;
  return `
  DELETE FROM usage_by_issue;
  INSERT INTO usage_by_issue (issue_id, ${cols}) SELECT issue_id, ${sums} ${usage} GROUP BY issue_id;
  DELETE FROM usage_by_day;
  INSERT INTO usage_by_day (day, model, ${cols})
    SELECT ${day}, COALESCE(model, ''), ${sums} ${usage} GROUP BY 1, 2;
  DELETE FROM usage_by_model;
  INSERT INTO usage_by_model (model, ${cols}) SELECT COALESCE(model, ''), ${sums} ${usage} GROUP BY 1;`;
})();

/** The migration that introduced the totals (db.ts MIGRATIONS). */
export const USAGE_TOTALS_MIGRATION = `
  ALTER TABLE runs ADD COLUMN cost_source TEXT;
  ${SCHEMA}
  ${RECOMPUTE}
`;

/** Installs what a rebuilt `runs` table lost (read-model.ts explains why). */
export function ensureUsageTotals(db: Db, present: Set<string>): void {
  if (USAGE_TRIGGERS.every((t) => present.has(t))) return;
  db.transaction(() => {
    db.exec(SCHEMA);
    db.exec(RECOMPUTE);
  }).immediate();
}

/** Recomputes the totals from the runs (`doctor --repair`). */
export function recomputeUsageTotals(db: Db): void {
  db.exec(RECOMPUTE);
}

/** Tokens and cost summed over some runs. */
export interface UsageTotals {
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /** Runs that reported usage. */
  runs: number;
}

const AS = `cost_usd AS costUsd, input_tokens AS inputTokens, output_tokens AS outputTokens,
  cache_read_tokens AS cacheReadTokens, cache_write_tokens AS cacheWriteTokens, runs`;

/** Per issue, for the issues given (those without usage are left out): one indexed read. */
export function usageOfIssues(
  db: Db,
  ids: readonly number[],
): Map<number, UsageTotals> {
  if (!ids.length) return new Map();
  const rows = db
    .prepare(
      `SELECT issue_id AS id, ${AS} FROM usage_by_issue WHERE issue_id IN (SELECT value FROM json_each(?))`,
    )
    .all(JSON.stringify(ids)) as Array<UsageTotals & { id: number }>;
  return new Map(rows.map(({ id, ...u }) => [id, u]));
}

/** Summed over the local days `from`..`to` (YYYY-MM-DD, inclusive): a range of a few rows. */
export function usageOfDays(db: Db, from: string, to: string): UsageTotals {
  const sum = (c: string) => `COALESCE(SUM(${c}), 0)`;
  return db
    .prepare(
      `SELECT ${sum('cost_usd')} AS costUsd, ${sum('input_tokens')} AS inputTokens,
         ${sum('output_tokens')} AS outputTokens, ${sum('cache_read_tokens')} AS cacheReadTokens,
         ${sum('cache_write_tokens')} AS cacheWriteTokens, ${sum('runs')} AS runs
       FROM usage_by_day WHERE day >= ? AND day <= ?`,
    )
    .get(from, to) as UsageTotals;
}

/** Everything so far, per model ('' when the agent named none): the `/metrics` counters. */
export function usageByModel(db: Db): Array<UsageTotals & { model: string }> {
  return db
    .prepare(`SELECT model, ${AS} FROM usage_by_model ORDER BY model`)
    .all() as Array<UsageTotals & { model: string }>;
}

/** The local date of an instant: YYYY-MM-DD (the same day SQLite's 'localtime' gives). */
export function localDay(t: number): string {
  const d = new Date(t);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** The start of the next local day after `t` (epoch ms). */
export function nextLocalMidnight(t: number): number {
  const d = new Date(t);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1).getTime();
}

/** Today and this week (from Monday), local, as `status` and the page show them. */
export function recentUsage(
  db: Db,
  now: number,
): { today: UsageTotals; week: UsageTotals } {
  const d = new Date(now);
  const monday = new Date(
    d.getFullYear(),
    d.getMonth(),
    d.getDate() - ((d.getDay() + 6) % 7),
  ).getTime();
  const today = localDay(now);
  return {
    today: usageOfDays(db, today, today),
    week: usageOfDays(db, localDay(monday), today),
  };
}
