/**
 * What the recorder's idempotence rests on: every write is keyed by (job id, attempt), a report
 * applied twice changes nothing, a final outcome is never rewritten by a late report, and fields
 * an earlier report filled stay. On an in-memory SQLite with the real migrations.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { RunStore } from '../../supervisor/store/runs.js';

let db: Db | undefined;
afterEach(() => db?.close());

function stores() {
  db = openDatabase(':memory:');
  const issues = new IssueStore(db);
  const runs = new RunStore(db);
  const issue = issues.add({ title: 'an issue' });
  return { runs, id: issue.id };
}

const rows = () =>
  (db!.prepare('SELECT count(*) AS n FROM runs').get() as { n: number }).n;

describe('run records (the recorder writes through these)', () => {
  it('the same report twice is one row, and the second write changes nothing', () => {
    const { runs, id } = stores();
    const claim = {
      agent: 'agent-001',
      outcome: 'running' as const,
      startedAt: 1,
    };
    expect(runs.upsert(id, 'issue-1', 1, claim).changed).toBe(true);
    runs.upsert(id, 'issue-1', 1, claim);
    const result = {
      outcome: 'succeeded' as const,
      finishedAt: 5,
      commitSha: 'a'.repeat(40),
      exitCode: 0,
    };
    expect(runs.upsert(id, 'issue-1', 1, result).changed).toBe(true);
    const before = runs.get('issue-1', 1);
    runs.upsert(id, 'issue-1', 1, result);
    expect(runs.get('issue-1', 1)).toEqual(before);
    expect(rows()).toBe(1);
  });

  it('a final outcome is never rewritten by a late report of the same attempt', () => {
    const { runs, id } = stores();
    runs.upsert(id, 'issue-1', 1, { agent: 'agent-001', outcome: 'running' });
    runs.upsert(id, 'issue-1', 1, { outcome: 'lost', error: 'stalled' });
    const late = runs.upsert(id, 'issue-1', 1, {
      outcome: 'succeeded',
      commitSha: 'b'.repeat(40),
    });
    expect(late.changed).toBe(false);
    expect(runs.get('issue-1', 1)).toMatchObject({
      outcome: 'lost',
      commitSha: null,
      error: 'stalled',
    });
  });

  it('fills in what is missing, never overwrites what an earlier report recorded', () => {
    const { runs, id } = stores();
    runs.upsert(id, 'issue-1', 1, {
      agent: 'agent-001',
      outcome: 'running',
      startedAt: 100,
    });
    runs.upsert(id, 'issue-1', 1, {
      agent: 'agent-009',
      startedAt: 999,
      logPath: '/logs/1-attempt-1.log',
    });
    expect(runs.get('issue-1', 1)).toMatchObject({
      agent: 'agent-001',
      startedAt: 100,
      logPath: '/logs/1-attempt-1.log',
    });
  });

  it('attempts are separate rows', () => {
    const { runs, id } = stores();
    runs.upsert(id, 'issue-1', 1, { outcome: 'failed', exitCode: 3 });
    runs.upsert(id, 'issue-1', 2, { outcome: 'succeeded', exitCode: 0 });
    expect(rows()).toBe(2);
    expect(runs.get('issue-1', 1)?.outcome).toBe('failed');
    expect(runs.get('issue-1', 2)?.outcome).toBe('succeeded');
  });
});
