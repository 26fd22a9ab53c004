/**
 * A completed job's branch is written before SQLite records the issue done: when git cannot
 * write `issue/<id>` (another process holds its lock), the issue is not done, and the next
 * reconcile publishes and records it once the lock is gone. The reverse order would leave a
 * done issue whose branch does not exist.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { JobResult } from '../../contract/job.js';
import { git } from '../helpers/repo.js';
import { claimedIssue, recorderWorld } from '../helpers/recorder-world.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('a completed job', () => {
  it('is recorded done only after its branch is written', async () => {
    const w = recorderWorld('issues-branch-first', cleanups);
    const { issues, runs, recorder } = w;
    git(w.dir, 'init', '-q', '-b', 'main');
    writeFileSync(join(w.dir, 'a.txt'), 'a\n');
    git(w.dir, 'add', 'a.txt');
    git(w.dir, 'commit', '-qm', 'a');
    const sha = git(w.dir, 'rev-parse', 'HEAD');
    const { id, job, token } = await claimedIssue(w, 'commits', cleanups);
    const lock = join(w.dir, '.git', 'refs', 'heads', 'issue', `${id}.lock`);
    mkdirSync(join(lock, '..'), { recursive: true });
    writeFileSync(lock, '');
    const res: JobResult = {
      agentId: 'agent-001',
      attempt: 1,
      exitCode: 0,
      baseSha: sha,
      commitSha: sha,
      filesChanged: 1,
      insertions: 1,
      deletions: 0,
      durationMs: 5,
      logPath: '/dev/null',
      startedAt: Date.now() - 5,
      finishedAt: Date.now(),
    };
    await job.moveToCompleted(res, token, false);
    // The reconcile reads the completed set (the queue events may be still connecting).
    const refused = await recorder.reconcile().then(
      () => undefined,
      (err: Error) => err,
    );
    expect(refused?.message).toMatch(/lock/);
    expect(issues.get(id)!.status).not.toBe('done');
    expect(runs.get(job.id!, 1)?.outcome).not.toBe('succeeded');

    rmSync(lock);
    await recorder.reconcile();
    const done = issues.get(id)!;
    expect(done.status).toBe('done');
    expect(done.branch).toBe(`issue/${id}`);
    expect(git(w.dir, 'rev-parse', `issue/${id}`)).toBe(sha);
  });
});
