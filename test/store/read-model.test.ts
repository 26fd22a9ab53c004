/**
 * Flat reads (issue 16 item 1): the aggregates SQLite keeps (issue counts, run totals, the
 * duration histogram) always equal what the tables say, survive a table rebuild, and every read
 * of status, the page, /api/issues and `issue list` walks an index instead of the history.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { RunStore } from '../../supervisor/store/runs.js';
import {
  checkReadModel,
  readRunAggregates,
  recomputeReadModel,
} from '../../supervisor/store/read-model.js';
import { seededRandom } from '../helpers/random.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function fresh(): { db: Db; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'sup-readmodel-'));
  dirs.push(dir);
  const file = join(dir, 'supervisor.db');
  return { db: openDatabase(file), file };
}

/** A history written the way the recorder writes it: claims, then results, some lost. */
function history(db: Db, n: number, seed = 7): void {
  const issues = new IssueStore(db);
  const runs = new RunStore(db);
  const rnd = seededRandom(seed);
  db.transaction(() => {
    for (let k = 0; k < n; k++) {
      const i = issues.add({ title: `issue ${k}` });
      const jobId = `issue-${i.id}`;
      issues.update(i.id, { status: 'in_progress' });
      runs.upsert(i.id, jobId, 1, { outcome: 'running', startedAt: 1000 });
      const r = rnd();
      if (r < 0.6) {
        runs.upsert(i.id, jobId, 1, {
          outcome: 'succeeded',
          finishedAt: 1000 + k * 700,
          durationMs: k * 700,
        });
        issues.update(i.id, { status: 'done' });
        // The same result reported twice (QueueEvents and the reconcile both see it).
        runs.upsert(i.id, jobId, 1, { outcome: 'succeeded', durationMs: 1 });
      } else if (r < 0.8) {
        runs.upsert(i.id, jobId, 1, {
          outcome: 'failed',
          finishedAt: 1000 + k * 13_000,
        });
        issues.update(i.id, { status: 'failed' });
      } else if (r < 0.9) {
        runs.upsert(i.id, jobId, 1, { outcome: 'lost' });
        issues.update(i.id, { status: 'open' });
      }
      // A late or repeated report never counts twice.
      runs.upsert(i.id, jobId, 1, { outcome: 'running' });
    }
  })();
}

describe('kept aggregates', () => {
  it('equal the tables after a mixed history, and a second report of a result counts once', () => {
    const { db } = fresh();
    history(db, 500);
    expect(checkReadModel(db)).toEqual([]);
    const grouped = db
      .prepare('SELECT status, COUNT(*) AS n FROM issues GROUP BY status')
      .all() as Array<{ status: string; n: number }>;
    const counts = new IssueStore(db).counts();
    for (const g of grouped) expect(counts[g.status as 'open']).toBe(g.n);
    const { totals, durations, started } = readRunAggregates(db);
    const finished = db
      .prepare(
        `SELECT outcome, COUNT(*) AS n FROM runs WHERE outcome <> 'running' GROUP BY outcome`,
      )
      .all() as Array<{ outcome: string; n: number }>;
    expect(totals).toEqual(
      Object.fromEntries(finished.map((r) => [r.outcome, r.n])),
    );
    expect(started).toBe(500);
    // The histogram holds every finished run with a duration, and their sum.
    const ok = db
      .prepare(
        `SELECT COUNT(*) AS n, SUM(duration_ms) AS s FROM runs WHERE outcome = 'succeeded'`,
      )
      .get() as { n: number; s: number };
    const h = durations.byOutcome.get('succeeded')!;
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(ok.n);
    expect(h.sumMs).toBe(ok.s);
    // Failed runs had no duration_ms: finished_at - started_at stands in.
    const failed = durations.byOutcome.get('failed')!;
    expect(failed.counts.reduce((a, b) => a + b, 0)).toBe(totals.failed);
  });

  it('are rebuilt when a migration rebuilds the issues table (its triggers go with it)', () => {
    const { db, file } = fresh();
    history(db, 50);
    // The usual SQLite way to change a CHECK: a new table, a copy, drop, rename.
    db.pragma('foreign_keys = OFF');
    const ddl = (
      db
        .prepare(`SELECT sql FROM sqlite_master WHERE name = 'issues'`)
        .get() as { sql: string }
    ).sql.replace(/CREATE TABLE issues/, 'CREATE TABLE issues_new');
    db.exec(`
      ${ddl};
      INSERT INTO issues_new SELECT * FROM issues;
      DROP TABLE issues;
      ALTER TABLE issues_new RENAME TO issues;
      UPDATE issue_counts SET n = 999;
    `);
    db.close();
    const again = openDatabase(file);
    expect(checkReadModel(again)).toEqual([]);
    new IssueStore(again).add({ title: 'after the rebuild' });
    expect(checkReadModel(again)).toEqual([]);
    again.close();
  });

  it('disagreeing with the tables is found by the check and repaired by recomputing', () => {
    const { db } = fresh();
    history(db, 30);
    db.exec(`UPDATE run_totals SET n = n + 5 WHERE outcome = 'succeeded'`);
    expect(checkReadModel(db).join('\n')).toMatch(
      /runs with outcome "succeeded": aggregate says \d+, the table has \d+/,
    );
    recomputeReadModel(db);
    expect(checkReadModel(db)).toEqual([]);
  });
});

describe('reads that stay flat in history', () => {
  /** The query plans of the reads status, the page and /api/issues make: no full scan of a history table. */
  it('walk indexes, never a full scan of issues or runs', () => {
    const { db } = fresh();
    history(db, 200);
    const plans: string[] = [];
    const original = db.prepare.bind(db);
    (db as unknown as { prepare: Db['prepare'] }).prepare = ((sql: string) => {
      if (/^\s*SELECT/i.test(sql) && !/sqlite_master|sqlite_sequence/.test(sql))
        plans.push(
          `${sql}\n  ${(
            original(`EXPLAIN QUERY PLAN ${sql}`).all(
              ...Array.from(sql.matchAll(/\?/g), () => 1),
            ) as Array<{ detail: string }>
          )
            .map((r) => r.detail)
            .join('\n  ')}`,
        );
      return original(sql);
    }) as Db['prepare'];
    const issues = new IssueStore(db);
    const runs = new RunStore(db);
    issues.counts();
    issues.pending(50);
    issues.recentlyFinished(15);
    issues.oldestWaitingSince();
    issues.staleMergeStates('abc', 200);
    void [...issues.page({ limit: 101 })];
    void [...issues.page({ limit: 101, status: 'done', before: 100 })];
    runs.forIssue(3);
    runs.running();
    runs.countByOutcome();
    readRunAggregates(db);
    expect(plans.length).toBeGreaterThan(8);
    for (const p of plans) {
      // A plain scan is bounded only when it walks the rowid in the asked order up to a LIMIT.
      if (
        !/^SELECT \* FROM issues ORDER BY id (ASC|DESC) LIMIT \?$/.test(
          p.split('\n')[0]!,
        )
      )
        expect(p, p).not.toMatch(/SCAN (issues|runs)\b(?! USING)/);
      expect(p, p).not.toMatch(/USE TEMP B-TREE FOR ORDER BY/);
      // Stale merge states: a range of the partial index, not `status = 'done'`, which walks
      // every done issue without showing as a scan (the landing service asks once a second).
      if (p.includes('checked_base'))
        expect(p, p).toMatch(
          /USING INDEX issues_merge_check \(checked_base[=<>]/,
        );
    }
    expect(plans.filter((p) => p.includes('checked_base'))).toHaveLength(3);
  });

  it('pending() keeps queue order (priority, then id) from per-priority index ranges', () => {
    const { db } = fresh();
    const issues = new IssueStore(db);
    const prios = ['low', 'urgent', 'medium', 'high'];
    for (let k = 0; k < 40; k++)
      issues.add({ title: `p${k}`, priority: prios[k % 4]! });
    issues.update(2, { status: 'queued' });
    issues.update(3, { status: 'done' });
    const got = issues.pending(10).map((i) => [i.priority, i.id]);
    const want = (
      db
        .prepare(
          `SELECT priority, id FROM issues WHERE status IN ('open','queued')
           ORDER BY CASE priority WHEN 'urgent' THEN 1 WHEN 'high' THEN 2 WHEN 'medium' THEN 3 ELSE 4 END, id LIMIT 10`,
        )
        .all() as Array<{ priority: string; id: number }>
    ).map((r) => [r.priority, r.id]);
    expect(got).toEqual(want);
  });
});
