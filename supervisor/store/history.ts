import type { Db } from './db.js';
import { cachedStatement } from './statements.js';

/** One status change of an issue: who or what made it, when, and why. */
export interface IssueEvent {
  at: number;
  from: string | null;
  to: string;
  actor: string;
  reason: string | null;
}

/**
 * Records every status change of an issue, whichever code makes it: a per-connection TEMP
 * trigger writes `issue_events` from the same UPDATE, in its transaction. Who and why come from
 * a per-connection context (`withChange`); without one, the connection's actor and the issue's
 * error. TEMP, so a connection of another tool (sqlite3) is not broken by a missing table.
 */
export function installHistory(db: Db, actor: string): void {
  db.exec(`
    CREATE TEMP TABLE IF NOT EXISTS change_context (
      k      INTEGER PRIMARY KEY CHECK (k IN (0, 1)),
      actor  TEXT NOT NULL,
      reason TEXT
    );
    CREATE TEMP TRIGGER IF NOT EXISTS issue_status_changed
    AFTER UPDATE OF status ON main.issues
    WHEN OLD.status IS NOT NEW.status
    BEGIN
      INSERT INTO main.issue_events (issue_id, at, from_status, to_status, actor, reason)
      VALUES (
        NEW.id, NEW.updated_at, OLD.status, NEW.status,
        (SELECT actor FROM temp.change_context ORDER BY k DESC LIMIT 1),
        COALESCE((SELECT reason FROM temp.change_context WHERE k = 1), NEW.error)
      );
    END;
    CREATE TEMP TRIGGER IF NOT EXISTS issue_created
    AFTER INSERT ON main.issues
    BEGIN
      INSERT INTO main.issue_events (issue_id, at, from_status, to_status, actor, reason)
      VALUES (
        NEW.id, NEW.created_at, NULL, NEW.status,
        (SELECT actor FROM temp.change_context ORDER BY k DESC LIMIT 1),
        (SELECT reason FROM temp.change_context WHERE k = 1)
      );
    END;
  `);
  setActor(db, actor);
}

/** The actor recorded for this connection's changes when no `withChange` says otherwise. */
export function setActor(db: Db, actor: string): void {
  db.prepare(
    `INSERT INTO temp.change_context (k, actor, reason) VALUES (0, ?, NULL)
     ON CONFLICT (k) DO UPDATE SET actor = excluded.actor`,
  ).run(actor);
}

/** Runs `fn` in one transaction whose status changes are recorded as made by `actor` for `reason`. */
export function withChange<T>(
  db: Db,
  change: { actor?: string; reason?: string | null },
  fn: () => T,
): T {
  return db.transaction(() => {
    const prev = cachedStatement(
      db,
      `SELECT actor, reason FROM temp.change_context WHERE k = 1`,
    ).get() as { actor: string; reason: string | null } | undefined;
    const base = cachedStatement(
      db,
      `SELECT actor FROM temp.change_context WHERE k = 0`,
    ).get() as { actor: string } | undefined;
    cachedStatement(
      db,
      `INSERT INTO temp.change_context (k, actor, reason) VALUES (1, ?, ?)
       ON CONFLICT (k) DO UPDATE SET actor = excluded.actor, reason = excluded.reason`,
    ).run(
      change.actor ?? prev?.actor ?? base?.actor ?? 'supervisor',
      change.reason ?? null,
    );
    try {
      return fn();
    } finally {
      if (prev)
        cachedStatement(
          db,
          `UPDATE temp.change_context SET actor = ?, reason = ? WHERE k = 1`,
        ).run(prev.actor, prev.reason);
      else
        cachedStatement(
          db,
          `DELETE FROM temp.change_context WHERE k = 1`,
        ).run();
    }
  })();
}

export function issueHistory(db: Db, issueId: number): IssueEvent[] {
  return (
    db
      .prepare(
        `SELECT at, from_status AS "from", to_status AS "to", actor, reason
         FROM issue_events WHERE issue_id = ? ORDER BY id`,
      )
      .all(issueId) as IssueEvent[]
  ).map((e) => ({ ...e }));
}
