import type Database from 'better-sqlite3';

/** Every issue status since landing (docs/landing.md). */
export const LANDING_STATUSES = [
  'open',
  'queued',
  'in_progress',
  'done',
  'failed',
  'landing',
  'merged',
  'conflict',
  'check-failed',
  'cancelled',
  'blocked',
] as const;

const OLD_CHECK =
  /CHECK\s*\(\s*status\s+IN\s*\(\s*'open','queued','in_progress','done','failed'\s*\)\s*\)/;

/**
 * Rebuilds `issues` with the wider status CHECK (SQLite cannot alter a constraint), keeping
 * whatever columns, indexes and triggers other migrations gave it: the new table is the old
 * one's own CREATE statement with only the CHECK replaced. Foreign keys (runs → issues) are
 * deferred to the commit, when the rebuilt table holds every id again.
 */
export function landingMigration(db: Database.Database): void {
  const table = db
    .prepare(
      `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'issues'`,
    )
    .get() as { sql: string };
  if (!OLD_CHECK.test(table.sql))
    throw new Error('issues table: the status CHECK is not the expected one');
  const dependents = db
    .prepare(
      `SELECT sql FROM sqlite_master WHERE tbl_name = 'issues' AND type IN ('index','trigger') AND sql IS NOT NULL`,
    )
    .all() as Array<{ sql: string }>;
  const list = LANDING_STATUSES.map((s) => `'${s}'`).join(',');
  const create = table.sql.replace(OLD_CHECK, `CHECK (status IN (${list}))`);
  const columns = (
    db.prepare(`PRAGMA table_info(issues)`).all() as Array<{ name: string }>
  )
    .map((c) => `"${c.name}"`)
    .join(', ');
  // Ids above the highest row may be reserved (an earlier database's issues): kept.
  const seq = db
    .prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'issues'`)
    .get() as { seq: number } | undefined;
  // The rows leave and come back under the same table name, so the deferred foreign-key
  // counter that DROP raised for runs falls back to zero as each issue row returns.
  db.pragma('defer_foreign_keys = ON');
  db.exec(`CREATE TEMP TABLE issues_copy AS SELECT ${columns} FROM issues`);
  db.exec('DROP TABLE issues');
  db.exec(create);
  db.exec(`INSERT INTO issues (${columns}) SELECT ${columns} FROM issues_copy`);
  db.exec('DROP TABLE temp.issues_copy');
  if (seq)
    db.prepare(
      `UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'issues'`,
    ).run(seq.seq);
  for (const d of dependents) db.exec(d.sql);
  db.exec(`
    ALTER TABLE issues ADD COLUMN landed_sha TEXT;
    ALTER TABLE issues ADD COLUMN land_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE issues ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE issues ADD COLUMN behind INTEGER;
    ALTER TABLE issues ADD COLUMN mergeable INTEGER;
    ALTER TABLE issues ADD COLUMN conflict_files TEXT;
    ALTER TABLE issues ADD COLUMN checked_base TEXT;
    ALTER TABLE issues ADD COLUMN checked_commit TEXT;

    -- Every status change: who or what made it, when, and why.
    CREATE TABLE issue_events (
      id          INTEGER PRIMARY KEY AUTOINCREMENT,
      issue_id    INTEGER NOT NULL,
      at          INTEGER NOT NULL,
      from_status TEXT,
      to_status   TEXT    NOT NULL,
      actor       TEXT    NOT NULL,
      reason      TEXT
    );
    CREATE INDEX issue_events_by_issue ON issue_events (issue_id, id);

    -- One row per landing attempt, written before git is touched: a supervisor killed in the
    -- middle finds here what it was doing (and git tells it how far it got).
    CREATE TABLE landings (
      id             INTEGER PRIMARY KEY AUTOINCREMENT,
      issue_id       INTEGER NOT NULL REFERENCES issues (id),
      attempt        INTEGER NOT NULL,
      state          TEXT    NOT NULL DEFAULT 'started'
                     CHECK (state IN ('started','merged','conflict','check-failed','interrupted','refused')),
      strategy       TEXT    NOT NULL,
      base_branch    TEXT    NOT NULL,
      base_before    TEXT,
      source_sha     TEXT,
      candidate_sha  TEXT,
      landed_sha     TEXT,
      conflict_files TEXT,
      check_log      TEXT,
      error          TEXT,
      started_at     INTEGER NOT NULL,
      finished_at    INTEGER,
      UNIQUE (issue_id, attempt)
    );

    CREATE TABLE issue_deps (
      issue_id   INTEGER NOT NULL REFERENCES issues (id),
      depends_on INTEGER NOT NULL REFERENCES issues (id),
      PRIMARY KEY (issue_id, depends_on)
    );
  `);
}
