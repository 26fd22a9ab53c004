/**
 * A completed job's branch is written before SQLite records the issue done: when git cannot
 * write `issue/<id>` (another process holds its lock), the issue is not done, and the next
 * reconcile publishes and records it once the lock is gone. The reverse order would leave a
 * done issue whose branch does not exist.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { git } from '../helpers/repo.js';
import {
  claimedIssue,
  committedRepo,
  recorderWorld,
  resultAt,
} from '../helpers/recorder-world.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('a completed job', () => {
  it('is recorded done only after its branch is written', async () => {
    const w = recorderWorld('issues-branch-first', cleanups);
    const { issues, runs, recorder } = w;
    const sha = committedRepo(w);
    const { id, job, token } = await claimedIssue(w, 'commits', cleanups);
    const lock = join(w.dir, '.git', 'refs', 'heads', 'issue', `${id}.lock`);
    mkdirSync(join(lock, '..'), { recursive: true });
    writeFileSync(lock, '');
    await job.moveToCompleted(resultAt(sha), token, false);
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
