import type { Db } from './db.js';
import {
  USAGE_TRIGGERS,
  ensureUsageTotals,
  recomputeUsageTotals,
} from './usage-totals.js';

/**
 * What status, the page, `/metrics` and `issue list` read, kept so that each read costs the same
 * with 100,000 finished issues as with 1,000 (issue 16): indexes for the bounded reads, and
 * aggregates that SQLite triggers keep up to date on every write, whichever code writes.
 *
 * - `issue_counts`: issues by status (status, the page, `/api/issues`).
 * - `run_totals`: attempts by final outcome, counted once when a run leaves `running` (a counter).
 * - `run_durations`: finished runs (succeeded/failed) by duration bucket, with the sum (a histogram).
 * - `landing_totals`: finished landings by outcome (merged, conflict, check-failed, …).
 *
 * Triggers live on the tables: a later migration that rebuilds `issues` or `runs` (the usual
 * SQLite way to change a CHECK) drops them with the old table. `ensureReadModel` sees that on the
 * next open and installs them again, recomputing the aggregates from the tables in one pass.
 */

/** Upper bounds (seconds) of the run duration histogram; agent runs take seconds to hours. */
export const DURATION_BUCKETS = [
  1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
] as const;

/** Bucket index of a duration in milliseconds (DURATION_BUCKETS.length: above the last bound). */
function bucketOf(ms: string): string {
  const whens = DURATION_BUCKETS.map(
    (le, i) => `WHEN ${ms} <= ${le * 1000} THEN ${i}`,
  ).join(' ');
  return `CASE ${whens} ELSE ${DURATION_BUCKETS.length} END`;
}

const RUN_MS = (row: 'NEW' | 'r') =>
  `COALESCE(${row}.duration_ms, ${row}.finished_at - ${row}.started_at)`;

const TRIGGERS = [
  'issue_counts_insert',
  'issue_counts_delete',
  'issue_counts_status',
  'run_totals_insert',
  'run_totals_finish',
  'issues_commit_unchecked',
  'landing_totals_finish',
] as const;
const INDEXES = [
  'issues_by_status_updated',
  'issues_by_status_priority',
  'issues_by_updated',
  'runs_by_outcome',
  'issues_merge_check',
] as const;

/** Tables, indexes and triggers; every statement idempotent. */
const SCHEMA = `
  CREATE INDEX IF NOT EXISTS issues_by_status_updated ON issues (status, updated_at, id);
  CREATE INDEX IF NOT EXISTS issues_by_status_priority ON issues (status, priority, id);
  CREATE INDEX IF NOT EXISTS issues_by_updated ON issues (updated_at, id);
  CREATE INDEX IF NOT EXISTS runs_by_outcome ON runs (outcome, job_id);
  -- Done issues whose behind/mergeable are stale (supervisor/land/merge-state.ts).
  CREATE INDEX IF NOT EXISTS issues_merge_check ON issues (checked_base)
    WHERE status = 'done' AND commit_sha IS NOT NULL;

  CREATE TABLE IF NOT EXISTS issue_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS run_totals (
    outcome TEXT PRIMARY KEY,
    n       INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS run_durations (
    outcome TEXT    NOT NULL,
    bucket  INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    sum_ms  INTEGER NOT NULL,
    PRIMARY KEY (outcome, bucket)
  ) WITHOUT ROWID;

  CREATE TABLE IF NOT EXISTS landing_totals (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE TRIGGER IF NOT EXISTS landing_totals_finish AFTER UPDATE OF state ON landings
  WHEN OLD.state = 'started' AND NEW.state <> 'started' BEGIN
    INSERT INTO landing_totals (state, n) VALUES (NEW.state, 1)
      ON CONFLICT (state) DO UPDATE SET n = n + 1;
  END;

  CREATE TRIGGER IF NOT EXISTS issue_counts_insert AFTER INSERT ON issues BEGIN
    INSERT INTO issue_counts (status, n) VALUES (NEW.status, 1)
      ON CONFLICT (status) DO UPDATE SET n = n + 1;
  END;
  CREATE TRIGGER IF NOT EXISTS issue_counts_delete AFTER DELETE ON issues BEGIN
    UPDATE issue_counts SET n = n - 1 WHERE status = OLD.status;
  END;
  CREATE TRIGGER IF NOT EXISTS issue_counts_status AFTER UPDATE OF status ON issues
  WHEN NEW.status IS NOT OLD.status BEGIN
    UPDATE issue_counts SET n = n - 1 WHERE status = OLD.status;
    INSERT INTO issue_counts (status, n) VALUES (NEW.status, 1)
      ON CONFLICT (status) DO UPDATE SET n = n + 1;
  END;

  -- A new commit makes the merge state stale: found by the index above, not by a scan.
  CREATE TRIGGER IF NOT EXISTS issues_commit_unchecked AFTER UPDATE OF commit_sha ON issues
  WHEN NEW.commit_sha IS NOT OLD.commit_sha AND NEW.checked_base IS NOT NULL BEGIN
    UPDATE issues SET checked_base = NULL WHERE id = NEW.id;
  END;

  CREATE TRIGGER IF NOT EXISTS run_totals_insert AFTER INSERT ON runs
  WHEN NEW.outcome <> 'running' BEGIN
    INSERT INTO run_totals (outcome, n) VALUES (NEW.outcome, 1)
      ON CONFLICT (outcome) DO UPDATE SET n = n + 1;
    INSERT INTO run_durations (outcome, bucket, n, sum_ms)
      SELECT NEW.outcome, ${bucketOf(RUN_MS('NEW'))}, 1, ${RUN_MS('NEW')}
      WHERE NEW.outcome IN ('succeeded', 'failed') AND ${RUN_MS('NEW')} IS NOT NULL
      ON CONFLICT (outcome, bucket) DO UPDATE SET n = n + 1, sum_ms = sum_ms + excluded.sum_ms;
  END;
  CREATE TRIGGER IF NOT EXISTS run_totals_finish AFTER UPDATE OF outcome ON runs
  WHEN OLD.outcome = 'running' AND NEW.outcome <> 'running' BEGIN
    INSERT INTO run_totals (outcome, n) VALUES (NEW.outcome, 1)
      ON CONFLICT (outcome) DO UPDATE SET n = n + 1;
    INSERT INTO run_durations (outcome, bucket, n, sum_ms)
      SELECT NEW.outcome, ${bucketOf(RUN_MS('NEW'))}, 1, ${RUN_MS('NEW')}
      WHERE NEW.outcome IN ('succeeded', 'failed') AND ${RUN_MS('NEW')} IS NOT NULL
      ON CONFLICT (outcome, bucket) DO UPDATE SET n = n + 1, sum_ms = sum_ms + excluded.sum_ms;
  END;
`;

/** The aggregates from the tables themselves: one pass over each (at install, or `doctor --repair`). */
const RECOMPUTE = `
  DELETE FROM issue_counts;
  INSERT INTO issue_counts (status, n) SELECT status, COUNT(*) FROM issues GROUP BY status;
  DELETE FROM run_totals;
  INSERT INTO run_totals (outcome, n)
    SELECT outcome, COUNT(*) FROM runs WHERE outcome <> 'running' GROUP BY outcome;
  DELETE FROM landing_totals;
  INSERT INTO landing_totals (state, n)
    SELECT state, COUNT(*) FROM landings WHERE state <> 'started' GROUP BY state;
  DELETE FROM run_durations;
  INSERT INTO run_durations (outcome, bucket, n, sum_ms)
    SELECT outcome, ${bucketOf('ms')}, COUNT(*), SUM(ms)
    FROM (SELECT r.outcome AS outcome, ${RUN_MS('r')} AS ms FROM runs r
          WHERE r.outcome IN ('succeeded', 'failed'))
    WHERE ms IS NOT NULL GROUP BY 1, 2;
`;

/** The migration that introduced the read model (db.ts MIGRATIONS). */
export const READ_MODEL_MIGRATION = SCHEMA + RECOMPUTE;

/**
 * Installs what a rebuilt table lost (see above). One look at sqlite_master per open; the rest
 * only when something is missing.
 */
export function ensureReadModel(db: Db): void {
  const present = new Set(
    (
      db
        .prepare(
          `SELECT name FROM sqlite_master WHERE type IN ('trigger','index') AND name IN (${[
            ...TRIGGERS,
            ...INDEXES,
            ...USAGE_TRIGGERS,
          ]
            .map((n) => `'${n}'`)
            .join(',')})`,
        )
        .all() as Array<{ name: string }>
    ).map((r) => r.name),
  );
  ensureUsageTotals(db, present);
  if (
    TRIGGERS.every((t) => present.has(t)) &&
    INDEXES.every((i) => present.has(i))
  )
    return;
  db.transaction(() => {
    db.exec(SCHEMA);
    if (TRIGGERS.some((t) => !present.has(t))) db.exec(RECOMPUTE);
  }).immediate();
}

/** Aggregates that differ from the tables (empty when consistent): what `doctor` reports. */
export function checkReadModel(db: Db): string[] {
  const problems: string[] = [];
  const compare = (
    what: string,
    stored: Array<{ k: string; n: number }>,
    actual: Array<{ k: string; n: number }>,
  ) => {
    const a = new Map(actual.map((r) => [r.k, r.n]));
    const s = new Map(stored.filter((r) => r.n !== 0).map((r) => [r.k, r.n]));
    for (const k of new Set([...a.keys(), ...s.keys()]))
      if ((a.get(k) ?? 0) !== (s.get(k) ?? 0))
        problems.push(
          `${what} "${k}": aggregate says ${s.get(k) ?? 0}, the table has ${a.get(k) ?? 0}`,
        );
  };
  const rows = (sql: string) => db.prepare(sql).all() as never;
  compare(
    'issues in status',
    rows('SELECT status AS k, n FROM issue_counts'),
    rows('SELECT status AS k, COUNT(*) AS n FROM issues GROUP BY status'),
  );
  compare(
    'runs with outcome',
    rows('SELECT outcome AS k, n FROM run_totals'),
    rows(
      `SELECT outcome AS k, COUNT(*) AS n FROM runs WHERE outcome <> 'running' GROUP BY outcome`,
    ),
  );
  return problems;
}

/** Recomputes every aggregate from the tables (`doctor --repair`). */
export function recomputeReadModel(db: Db): void {
  db.transaction(() => {
    db.exec(RECOMPUTE);
    recomputeUsageTotals(db);
  }).immediate();
}

export interface DurationHistogram {
  /** Per outcome: count per bucket (not cumulative; index DURATION_BUCKETS.length is +Inf), sum in ms. */
  byOutcome: Map<string, { counts: number[]; sumMs: number }>;
}

/** The run duration histogram and the finished-run totals: a read of a few dozen rows. */
export function readRunAggregates(db: Db): {
  totals: Record<string, number>;
  durations: DurationHistogram;
  started: number;
  landings: Record<string, number>;
} {
  const totals: Record<string, number> = {};
  for (const r of db
    .prepare('SELECT outcome, n FROM run_totals')
    .all() as Array<{ outcome: string; n: number }>)
    totals[r.outcome] = r.n;
  const byOutcome = new Map<string, { counts: number[]; sumMs: number }>();
  for (const r of db
    .prepare('SELECT outcome, bucket, n, sum_ms AS sumMs FROM run_durations')
    .all() as Array<{
    outcome: string;
    bucket: number;
    n: number;
    sumMs: number;
  }>) {
    let h = byOutcome.get(r.outcome);
    if (!h) {
      h = {
        counts: new Array<number>(DURATION_BUCKETS.length + 1).fill(0),
        sumMs: 0,
      };
      byOutcome.set(r.outcome, h);
    }
    h.counts[r.bucket] = r.n;
    h.sumMs += r.sumMs;
  }
  // Runs are never deleted, so the AUTOINCREMENT high-water mark counts every attempt started.
  const seq = db
    .prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'runs'`)
    .get() as { seq: number } | undefined;
  const landings: Record<string, number> = {};
  for (const r of db
    .prepare('SELECT state, n FROM landing_totals')
    .all() as Array<{ state: string; n: number }>)
    landings[r.state] = r.n;
  return {
    totals,
    durations: { byOutcome },
    started: seq?.seq ?? 0,
    landings,
  };
}
