/**
 * Job data from a foreign producer (a plain BullMQ `queue.add`) with wrong shapes: each job fails
 * once (no retry) with a reason that names the field, no issue row is adopted for it, the runner
 * that refused it keeps running (same pid, no restart) and goes on with valid work.
 * (test/pipeline covers one `{nope: true}` job; this covers the shapes one by one.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { MAX_TITLE_LENGTH, MAX_BODY_BYTES } from '../../contract/job.js';
import { cliJson, runCli, waitFor } from '../helpers/cli.js';
import { repoQueue } from '../helpers/queue.js';
import { cleanupList, isolatedRepo, issues, start } from './util.js';
import { readRecord } from '../helpers/agents.js';
import { git, tempDir } from '../helpers/repo.js';

const cleanups = cleanupList();
afterEach(() => cleanups.run());

const BAD: Array<[id: string, data: unknown, reason: RegExp]> = [
  ['no-title', { body: 'only a body' }, /title: Required/],
  ['title-number', { title: 42 }, /title: Expected string, received number/],
  ['title-blank', { title: ' \n\t ' }, /title: title must not be empty/],
  [
    'title-huge',
    { title: 't'.repeat(MAX_TITLE_LENGTH + 1) },
    /title: String must contain at most 1000/,
  ],
  [
    'title-nul',
    { title: 'a\u0000b' },
    /title: title must not contain NUL bytes/,
  ],
  [
    'body-object',
    { title: 'ok', body: { text: 'nested' } },
    /body: Expected string, received object/,
  ],
  [
    'body-huge',
    { title: 'ok', body: 'b'.repeat(Math.ceil((MAX_BODY_BYTES * 4) / 3) + 5) },
    /body: String must contain at most/,
  ],
  [
    'unknown-key',
    { title: 'ok', assignee: 'someone' },
    /Unrecognized key\(s\) in object: 'assignee'/,
  ],
  [
    'priority',
    { title: 'ok', priority: 'critical' },
    /priority: Invalid enum value/,
  ],
  [
    'encoding',
    { title: 'ok', bodyEncoding: 'rot13' },
    /bodyEncoding: Invalid enum value/,
  ],
  [
    'issue-id',
    { title: 'ok', issueId: -3 },
    /issueId: Number must be greater than 0/,
  ],
  ['data-null', null, /data: Expected object, received null/],
  ['data-string', 'just a string', /data: Expected object, received string/],
  [
    'data-array',
    [{ title: 'in an array' }],
    /data: Expected object, received array/,
  ],
];

describe('foreign producer job data', () => {
  it('fails each malformed job clearly, adopts none of them, and the runner goes on', async () => {
    const { dir, env } = isolatedRepo(cleanups, { SUPERVISOR_ATTEMPTS: '3' });
    await start(cleanups, dir, env);
    const queue = await repoQueue(dir, env.SUPERVISOR_PREFIX!, cleanups.add, {
      obliterate: true,
    });
    const runnerPid = (await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.find(
          (a: any) => a.state === 'idle',
        )?.pid,
      { what: 'idle runner' },
    )) as number;
    // Bad jobs between good ones, with retries allowed: a contract breach must not be retried.
    await queue.add('issue', { title: 'good before' }, { jobId: 'ext-good-1' });
    for (const [id, data] of BAD)
      await queue.add('issue', data as never, {
        jobId: `ext-${id}`,
        attempts: 3,
      });
    await queue.add(
      'issue',
      { title: 'good after', body: 'still works' },
      { jobId: 'ext-good-2' },
    );

    for (const [id, , reason] of BAD) {
      await waitFor(
        async () => (await queue.getJobState(`ext-${id}`)) === 'failed',
        { what: `job ext-${id} failed` },
      );
      // Read after it failed (a job read while active has no failedReason yet).
      const job = (await queue.getJob(`ext-${id}`))!;
      expect(job.failedReason, id).toMatch(/^invalid job data \(/);
      expect(job.failedReason, id).toMatch(reason);
      expect(job.failedReason, id).toMatch(
        /see the job contract in the README/,
      );
      expect(job.attemptsMade, `${id} is not retried`).toBe(1);
    }
    await runCli(['issue', 'add', 'from the CLI afterwards'], {
      cwd: dir,
      env,
    });
    const list = await waitFor(
      async () => {
        const l = await issues(dir, env);
        return l.length === 3 && l.every((i) => i.status === 'done')
          ? l
          : false;
      },
      { what: 'the valid issues done' },
    );
    // Only the valid jobs became issues: nothing adopted for invalid data.
    expect(list.map((i) => i.title).sort()).toEqual([
      'from the CLI afterwards',
      'good after',
      'good before',
    ]);
    const status = await cliJson<any>(['status'], { cwd: dir, env });
    expect(status.agents).toHaveLength(1);
    expect(status.agents[0]).toMatchObject({
      id: 'agent-001',
      pid: runnerPid,
      restarts: 0,
    });
    expect(status.queue.failed).toBe(BAD.length);
  });
});

describe('foreign producer job ids', () => {
  // A job's BullMQ id is not its issue id: job "5" adopted as issue #4 runs as #4.
  it('runs an adopted job as its own issue: ISSUE_ID, commit message and log name, also when the runner takes it before the adoption', async () => {
    const out = tempDir();
    const { dir, env } = isolatedRepo(cleanups, {
      AGENT_ECHO_FILE: join(out, 'echo'),
      AGENT_RECORD_FILE: join(out, 'record.log'),
    });
    const show = (id: number) =>
      cliJson<any>(['issue', 'show', String(id)], { cwd: dir, env });
    const done = (id: number) =>
      waitFor(async () => (await show(id)).status === 'done' && show(id), {
        timeoutMs: 60_000,
        what: `issue #${id} done`,
      });
    // Real issues #1-#3 first. BullMQ numbers plain adds from the queue's counter, which every
    // add (ours too) counts up, and a job that is never adopted takes a number too.
    for (const n of [1, 2, 3])
      await runCli(['issue', 'add', `a real issue ${n}`], { cwd: dir, env });
    const first = await start(cleanups, dir, env);
    for (const n of [1, 2, 3]) await done(n);
    const queue = await repoQueue(dir, env.SUPERVISOR_PREFIX!, cleanups.add, {
      obliterate: true,
    });
    await queue.add('issue', { nope: true } as never);
    const up = await queue.add('issue', { title: 'foreign while up' });
    expect(up.id).not.toBe('4');
    await done(4);

    // The supervisor dies (its runner lives on): the runner takes the next foreign job before
    // anyone adopted it, and must wait for the adoption rather than run it as its job id.
    first.child.kill('SIGKILL');
    await first.exited;
    const down = await queue.add('issue', { title: 'foreign while down' });
    expect(down.id).not.toBe('5');
    await waitFor(
      async () => (await queue.getJobState(down.id!)) === 'active',
      { what: 'the runner took the unadopted job' },
    );
    await start(cleanups, dir, env);
    await done(5);

    const expected: Array<[number, string, string]> = [
      [1, 'issue-1', 'a real issue 1'],
      [4, up.id!, 'foreign while up'],
      [5, down.id!, 'foreign while down'],
    ];
    for (const [id, jobId, title] of expected) {
      const issue = await show(id);
      const seen = JSON.parse(
        readFileSync(join(out, `echo.${id}.env`), 'utf8'),
      ) as Record<string, string>;
      expect(seen.ISSUE_ID, `#${id}`).toBe(String(id));
      expect(seen.ISSUE_TITLE, `#${id}`).toBe(title);
      expect(git(dir, 'log', '-1', '--format=%s', `issue/${id}`)).toBe(
        `issue #${id}: ${title}`,
      );
      expect(issue.runs).toHaveLength(1);
      expect(issue.runs[0].jobId, `#${id}`).toBe(jobId);
      expect(basename(issue.runs[0].logPath)).toBe(
        `issue-${id}-attempt-${issue.runs[0].attempt}.log`,
      );
      expect(existsSync(issue.runs[0].logPath)).toBe(true);
    }
    // Each agent run saw its own issue id, once.
    expect(
      readRecord(join(out, 'record.log'))
        .filter((r) => r.what === 'start')
        .map((r) => r.issue),
    ).toEqual(['1', '2', '3', '4', '5']);
  });
});
