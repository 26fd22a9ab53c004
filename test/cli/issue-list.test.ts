/**
 * `issue list` pages (issue 16): the newest --limit in id order, --before as the cursor, --status
 * and --since filters, --limit 0 streamed; and `supervisor doctor`, which is where the integrity
 * check and the aggregate check live now that other commands skip them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { openDatabase } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { cliJson, runCli, testEnv } from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function repoWith(n: number) {
  const { dir, cleanup } = tempRepo();
  cleanups.push(cleanup);
  const env = testEnv();
  expect((await runCli(['init'], { cwd: dir, env })).code).toBe(0);
  const db = openDatabase(join(dir, '.supervisor', 'supervisor.db'));
  let t = 1_000;
  const issues = new IssueStore(db, () => t);
  for (let k = 1; k <= n; k++) {
    t = k * 1000;
    issues.add({ title: `issue ${k}`, priority: k % 2 ? 'high' : 'low' });
  }
  t = Date.now();
  issues.update(3, { status: 'done' });
  issues.update(5, { status: 'done' });
  db.close();
  return { dir, env };
}

const ids = (l: Array<{ id: number }>) => l.map((i) => i.id);

describe('supervisor issue list', () => {
  it('pages back from the newest with --limit and --before, filters by --status and --since', async () => {
    const { dir, env } = await repoWith(7);
    const opts = { cwd: dir, env };
    expect(ids(await cliJson(['issue', 'list', '--limit', '3'], opts))).toEqual(
      [5, 6, 7],
    );
    const page = await runCli(['issue', 'list', '--limit', '3'], opts);
    expect(page.stdout).toMatch(/^ID\s+PRIORITY/);
    expect(page.stderr).toContain(
      'older issues: supervisor issue list --before 5 --limit 3',
    );
    expect(
      ids(
        await cliJson(['issue', 'list', '--limit', '3', '--before', '5'], opts),
      ),
    ).toEqual([2, 3, 4]);
    const last = await runCli(
      ['issue', 'list', '--limit', '3', '--before', '2'],
      opts,
    );
    expect(last.stdout).toMatch(/#1\s+high\s+open/);
    expect(last.stderr).toBe('');
    expect(
      ids(await cliJson(['issue', 'list', '--status', 'done'], opts)),
    ).toEqual([3, 5]);
    // Updated in the last hour: only the two marked done just now.
    expect(
      ids(await cliJson(['issue', 'list', '--since', '1h'], opts)),
    ).toEqual([3, 5]);
    expect(
      ids(
        await cliJson(
          ['issue', 'list', '--since', new Date(4500).toISOString()],
          opts,
        ),
      ),
    ).toEqual([3, 5, 6, 7]);
    // --limit 0: everything, streamed in id order.
    expect(ids(await cliJson(['issue', 'list', '--limit', '0'], opts))).toEqual(
      [1, 2, 3, 4, 5, 6, 7],
    );
    const all = await runCli(['issue', 'list', '--limit', '0'], opts);
    expect(all.stdout.trim().split('\n')).toHaveLength(8);
    expect(
      await cliJson(['issue', 'list', '--status', 'failed'], opts),
    ).toEqual([]);
  });

  it('refuses a bad --limit, --before or --since with a usage error', async () => {
    const { dir, env } = await repoWith(1);
    for (const [args, says] of [
      [['--limit', 'ten'], /--limit must be a whole number/],
      [['--before', '-3'], /issue id must be a positive whole number/],
      [['--since', 'yesterday-ish'], /--since must be a date\/time or an age/],
    ] as const) {
      const r = await runCli(['issue', 'list', ...args], { cwd: dir, env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(says);
      expect(r.stderr).toMatch(/^hint: /m);
      expect(r.stdout).toBe('');
    }
  });
});

describe('supervisor doctor', () => {
  it('checks integrity and the aggregates, and --repair recomputes them', async () => {
    const { dir, env } = await repoWith(4);
    const ok = await cliJson(['doctor'], { cwd: dir, env });
    expect(ok).toMatchObject({ integrity: 'ok', aggregates: [], ok: true });
    const db = openDatabase(join(dir, '.supervisor', 'supervisor.db'));
    db.exec(`UPDATE issue_counts SET n = n + 2 WHERE status = 'open'`);
    db.close();
    const bad = await runCli(['doctor'], { cwd: dir, env });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /issues in status "open": aggregate says 5, the table has 3/,
    );
    expect(bad.stderr).toMatch(/hint: run `supervisor doctor --repair`/);
    const repaired = await cliJson(['doctor', '--repair'], { cwd: dir, env });
    expect(repaired).toMatchObject({ repaired: true, ok: true });
    expect((await runCli(['doctor'], { cwd: dir, env })).code).toBe(0);
  });
});
