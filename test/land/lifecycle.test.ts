import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { git, tempDir } from '../helpers/repo.js';
import { openDatabase } from '../../supervisor/store/db.js';
import { issueHistory, withChange } from '../../supervisor/store/history.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

describe('issue lifecycle beyond done', () => {
  it('migrates a database of the earlier schema: rows kept, runs still point at their issues, new states allowed', () => {
    const dir = tempDir('sup-mig-');
    const file = join(dir, 'old.db');
    const old = new Database(file);
    // The schema as version 2 left it (the issues table's CHECK knew five states).
    old.exec(`
      CREATE TABLE issues (
        id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, body BLOB NOT NULL DEFAULT x'',
        priority TEXT NOT NULL CHECK (priority IN ('urgent','high','medium','low')),
        status TEXT NOT NULL DEFAULT 'open'
               CHECK (status IN ('open','queued','in_progress','done','failed')),
        agent TEXT, branch TEXT, commit_sha TEXT, attempts INTEGER NOT NULL DEFAULT 0,
        job_id TEXT UNIQUE, error TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      CREATE INDEX issues_by_status ON issues (status, id);
      CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT,
        issue_id INTEGER NOT NULL REFERENCES issues (id), job_id TEXT NOT NULL, attempt INTEGER NOT NULL,
        agent TEXT, started_at INTEGER, finished_at INTEGER, outcome TEXT NOT NULL DEFAULT 'running',
        exit_code INTEGER, base_sha TEXT, commit_sha TEXT, files_changed INTEGER, insertions INTEGER,
        deletions INTEGER, duration_ms INTEGER, log_path TEXT, error TEXT, UNIQUE (job_id, attempt));
      CREATE TABLE slots (id TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE, worktree TEXT NOT NULL,
        branch TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'stopped', pid INTEGER, container_id TEXT,
        health TEXT, restarts INTEGER NOT NULL DEFAULT 0, last_error TEXT, state_since INTEGER NOT NULL,
        created_at INTEGER NOT NULL);
      CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE env_allocations (slot TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'pending',
        port_start INTEGER UNIQUE, port_count INTEGER, ports TEXT, redis_db INTEGER UNIQUE,
        postgres_db TEXT UNIQUE, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
      INSERT INTO issues (title, priority, status, branch, commit_sha, job_id, created_at, updated_at)
        VALUES ('old one', 'high', 'done', 'issue/1', 'abc', 'issue-1', 1, 2);
      UPDATE sqlite_sequence SET seq = 40 WHERE name = 'issues';
      INSERT INTO runs (issue_id, job_id, attempt, outcome) VALUES (1, 'issue-1', 1, 'succeeded');
      PRAGMA user_version = 2;
    `);
    old.close();
    const db = openDatabase(file);
    try {
      expect(db.pragma('foreign_key_check')).toEqual([]);
      const issues = new IssueStore(db);
      const i = issues.require(1);
      expect(i).toMatchObject({
        title: 'old one',
        status: 'done',
        commit: 'abc',
        landAttempts: 0,
        behind: null,
      });
      // The index went with the old table and came back with the new one.
      expect(
        db
          .prepare(
            `SELECT name FROM sqlite_master WHERE type='index' AND name='issues_by_status'`,
          )
          .get(),
      ).toBeTruthy();
      withChange(db, { actor: 'test', reason: 'landed by hand' }, () =>
        issues.update(1, { status: 'merged' }),
      );
      expect(issues.require(1).status).toBe('merged');
      expect(issueHistory(db, 1)).toEqual([
        expect.objectContaining({
          from: 'done',
          to: 'merged',
          actor: 'test',
          reason: 'landed by hand',
        }),
      ]);
      expect(() => issues.update(1, { status: 'bogus' as 'open' })).toThrow(
        /CHECK/,
      );
      // Ids reserved beyond the highest row stay reserved.
      expect(issues.add({ title: 'next' }).id).toBe(41);
    } finally {
      db.close();
    }
  });

  it('records every state change with who and why, and keeps behind/mergeable of done issues in step with the base', async () => {
    const w = landingWorld(cleanups);
    const a = await w.add('clean one', 'write: a.txt');
    const b = await w.add('will conflict', 'write: shared.txt');
    await w.start(['--agents', '2']);
    await w.waitStatus(a, ['done']);
    await w.waitStatus(b, ['done']);
    let list = await w.list();
    expect(list.find((i) => i.id === a)).toMatchObject({
      behind: 0,
      mergeable: true,
    });
    const updatedAt = (
      await w.json<{ updatedAt: number }>(['issue', 'show', String(a)])
    ).updatedAt;
    // Someone commits on main: both are behind by one; b now conflicts on shared.txt.
    writeFileSync(join(w.dir, 'shared.txt'), 'the base says otherwise\n');
    git(w.dir, 'add', 'shared.txt');
    git(w.dir, 'commit', '-qm', 'base moves');
    const human = await w.cli(['issue', 'list']);
    expect(human.stdout).toMatch(/BEHIND\s+MERGEABLE/);
    expect(human.stdout).toMatch(/CONFLICT/);
    list = await w.list();
    expect(list.find((i) => i.id === a)).toMatchObject({
      status: 'done',
      behind: 1,
      mergeable: true,
      conflictFiles: [],
    });
    expect(list.find((i) => i.id === b)).toMatchObject({
      status: 'done',
      behind: 1,
      mergeable: false,
      conflictFiles: ['shared.txt'],
    });
    // A refresh is no news about the issue: "recent results" keep their order.
    expect(
      (await w.json<{ updatedAt: number }>(['issue', 'show', String(a)]))
        .updatedAt,
    ).toBe(updatedAt);
    // Nothing was checked out or touched to find out.
    expect(git(w.dir, 'status', '--porcelain')).toBe('');
    const shown = await w.show(a);
    expect(shown.history!.map((h) => `${h.from}>${h.to}`)).toEqual([
      'null>open',
      'open>queued',
      'queued>in_progress',
      'in_progress>done',
    ]);
    expect(shown.history![0]!.actor).toBe('cli');
    const done = shown.history![3]!;
    expect(done.actor).toBe('recorder');
    expect(done.reason).toMatch(/agent-00\d attempt 1 committed [0-9a-f]{12}/);
    const text = await w.cli(['issue', 'show', String(b)]);
    expect(text.stdout).toMatch(/conflicts in shared\.txt/);
    expect(text.stdout).toMatch(/in_progress → done\s+recorder/);
  });
});
