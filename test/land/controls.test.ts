import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { repoQueue } from '../helpers/queue.js';
import { waitFor } from '../helpers/cli.js';
import { git, tempDir } from '../helpers/repo.js';
import { openSupervisor } from '../../supervisor/api.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

/** Runs a CLI command that must succeed; a failure says what the command printed. */
async function succeeds(
  w: { cli(args: string[]): Promise<{ code: number | null; stderr: string }> },
  args: string[],
): Promise<void> {
  const r = await w.cli(args);
  expect(r.code, `supervisor ${args.join(' ')}: ${r.stderr}`).toBe(0);
}

function queueOf(dir: string, prefix: string) {
  return repoQueue(dir, prefix, (fn) => cleanups.push(fn), {
    obliterate: true,
  });
}

describe('issue controls', () => {
  it('CLI: retry a failed issue, cancel a running one (stopped, its late result refused), edit a waiting one in place, reopen a done one', async () => {
    const state = tempDir('sup-state-');
    const w = landingWorld(cleanups, {
      SUPERVISOR_ATTEMPTS: '1',
      AGENT_STATE_DIR: state,
    });
    const flaky = await w.add('fails once', 'fail-attempts: 1\nwrite: f.txt');
    const slow = await w.add('runs long', 'sleep: 60000\nwrite: s.txt');
    await w.start(['--agents', '2']);
    const failed = await w.waitStatus(flaky, ['failed']);
    // The error says what the agent said last, not only its exit code.
    expect(failed.error).toMatch(
      /last lines of the agent's output ---\n(.*\n)*.*failing attempt 1 on purpose/,
    );
    expect(failed.runs![0].error).toMatch(/failing attempt 1 on purpose/);
    await w.waitStatus(slow, ['in_progress']);

    const bad = await w.cli(['issue', 'retry', String(slow)]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/#2 is in_progress: it cannot be retried/);
    expect(bad.stderr).toMatch(/hint:/);
    const edit = await w.cli(['issue', 'edit', String(slow), '--title', 'x']);
    expect(edit.code).toBe(1);
    expect(edit.stderr).toMatch(/cannot be edited while an agent works on it/);

    await succeeds(w, ['issue', 'retry', String(flaky)]);
    const retried = await w.waitStatus(flaky, ['done']);
    expect(retried.runs!.map((r: any) => [r.attempt, r.outcome])).toEqual([
      [1, 'failed'],
      [2, 'succeeded'],
    ]);

    await succeeds(w, ['issue', 'cancel', String(slow)]);
    const cancelled = await waitFor(
      async () => {
        const i = await w.show(slow);
        return i.runs!.every((r: any) => r.outcome !== 'running') ? i : false;
      },
      { what: 'the running attempt stopped' },
    );
    expect(cancelled.status).toBe('cancelled');
    expect(cancelled.runs![0].error).toMatch(/cancelled/);
    expect(cancelled.history!.at(-1)).toMatchObject({
      to: 'cancelled',
      actor: 'cli',
    });
    // Nothing of the cancelled attempt is published.
    expect(() =>
      git(w.dir, 'rev-parse', '--verify', '-q', `issue/${slow}`),
    ).toThrow();

    // Reopen a done issue: worked again.
    await succeeds(w, ['issue', 'reopen', String(flaky)]);
    const again = await w.waitStatus(flaky, ['done']);
    expect(again.runs!.length).toBe(3);
    expect(again.history!.map((h) => h.to)).toContain('open');
    const st = await w.show(slow);
    expect(st.status).toBe('cancelled');
  });

  it('API and Bull Board: a waiting job edited in place, a removed waiting job cancels its issue (never re-fed), a retried failed job is queued at once', async () => {
    const w = landingWorld(cleanups, { SUPERVISOR_ATTEMPTS: '1' });
    await w.start(['--agents', '0']);
    const queue = await queueOf(w.dir, w.env.SUPERVISOR_PREFIX!);
    const sup = await openSupervisor({
      repo: w.dir,
      env: { ...w.env, REDIS_URL: 'redis://127.0.0.1:6379' },
    });
    cleanups.push(() => sup.close());
    const a = sup.addIssue({ title: 'to edit', body: 'write: a.txt' });
    const b = sup.addIssue({ title: 'to remove', body: 'write: b.txt' });
    const c = sup.addIssue({ title: 'fails', body: 'exit: 2' });
    await w.waitStatus(a.id, ['queued']);
    await w.waitStatus(b.id, ['queued']);
    // A waiting job's priority and data change in place.
    await sup.editIssue(a.id, { title: 'edited title', priority: 'urgent' });
    const job = (await queue.getJob(`issue-${a.id}`))!;
    expect(job.priority).toBe(1);
    expect(job.data.title).toBe('edited title');
    expect(await job.getState()).toBe('prioritized');

    // Bull Board's delete of a waiting job: the issue is cancelled, and stays so.
    await (await queue.getJob(`issue-${b.id}`))!.remove();
    await w.waitStatus(b.id, ['cancelled']);
    const rec = await w.show(b.id);
    expect(rec.history!.at(-1)).toMatchObject({
      to: 'cancelled',
      actor: 'queue',
    });
    await succeeds(w, ['scale', '1']);
    await w.waitStatus(c.id, ['failed']);
    await w.waitStatus(a.id, ['done']);
    expect((await w.show(b.id)).status).toBe('cancelled');
    expect(await queue.getJob(`issue-${b.id}`)).toBeUndefined();

    // Bull Board's retry of a failed job: queued at once, attempts go on.
    const failed = (await queue.getJob(`issue-${c.id}`))!;
    await failed.retry('failed');
    const q = await w.waitStatus(c.id, ['queued', 'in_progress', 'failed']);
    expect(q.history!.find((h) => h.actor === 'queue')).toMatchObject({
      from: 'failed',
      to: 'queued',
    });
    const twice = await waitFor(
      async () => {
        const i = await w.show(c.id);
        return i.status === 'failed' && i.runs!.length === 2 ? i : false;
      },
      { what: 'the retried attempt' },
    );
    expect(twice.runs!.map((r: any) => r.attempt)).toEqual([1, 2]);

    // The API's controls end in the same states as the CLI's.
    expect(sup.retryIssue(c.id).status).toBe('open');
    expect((await sup.cancelIssue(c.id)).status).toBe('cancelled');
    expect(sup.reopenIssue(c.id).status).toBe('open');
  });
});
