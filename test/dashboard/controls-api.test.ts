import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issueHistory } from '../../supervisor/store/history.js';
import { git } from '../helpers/repo.js';
import { http, startTestDashboard, type TestDashboard } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dashboard(
  o: Parameters<typeof startTestDashboard>[0] = {},
): Promise<TestDashboard> {
  const t = await startTestDashboard(o);
  cleanups.push(() => t.close());
  return t;
}

/** A done issue whose result is a commit on `issue/<id>` adding `file` (what an agent leaves). */
function doneIssue(t: TestDashboard, title: string, file: string): number {
  const dir = t.ctx.paths.root;
  const i = t.ctx.issues.add({ title });
  git(dir, 'checkout', '-q', '-b', `issue/${i.id}`, 'main');
  writeFileSync(join(dir, file), `${title}\n`);
  git(dir, 'add', file);
  git(dir, 'commit', '-qm', title);
  const sha = git(dir, 'rev-parse', 'HEAD');
  git(dir, 'checkout', '-q', 'main');
  t.ctx.issues.update(i.id, {
    status: 'done',
    branch: `issue/${i.id}`,
    commit: sha,
  });
  return i.id;
}

describe('issue controls in the JSON API', () => {
  it('retry, cancel, edit, reopen and land by POST with the CSRF token, each recorded as the dashboard; wrong states are 409 with a hint', async () => {
    const t = await dashboard();
    const csrf = (await http('GET', `${t.url}/api/session`)).json().csrfToken;
    const post = (path: string, body: object = {}, csrfToken = csrf) =>
      http('POST', `${t.url}/api/issues/${path}`, {
        body,
        headers: { origin: t.url, 'x-supervisor-csrf': csrfToken },
      });

    const open = t.ctx.issues.add({ title: 'waiting' }).id;
    const refused = await post(`${open}/cancel`, {}, 'wrong');
    expect(refused.status).toBe(403);
    expect(refused.json().code).toBe('ERR_DASHBOARD_CSRF');
    expect(t.ctx.issues.require(open).status).toBe('open');

    const cancelled = await post(`${open}/cancel`);
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(cancelled.json()).toMatchObject({ id: open, status: 'cancelled' });
    const retried = await post(`${open}/retry`);
    expect(retried.json()).toMatchObject({ id: open, status: 'open' });
    const edited = await post(`${open}/edit`, {
      title: 'waiting, renamed',
      priority: 'urgent',
    });
    expect(edited.status, edited.text).toBe(200);
    expect(t.ctx.issues.require(open)).toMatchObject({
      title: 'waiting, renamed',
      priority: 'urgent',
    });
    const badEdit = await post(`${open}/edit`, { priority: 'whenever' });
    expect(badEdit.status).toBe(400);
    const badType = await post(`${open}/edit`, { title: 7 });
    expect(badType.status).toBe(400);
    expect(badType.json().error).toMatch(/"title" must be a string/);

    const reopen = await post(`${open}/reopen`);
    expect(reopen.status).toBe(409);
    expect(reopen.json()).toMatchObject({
      code: 'ERR_SUP_ISSUE_STATE',
      error: expect.stringMatching(/#\d+ is open: it cannot be reopened/),
      hint: expect.any(String),
    });
    const notDone = await post(`${open}/land`);
    expect(notDone.status).toBe(409);
    expect(notDone.json().error).toMatch(/only done issues land/);
    expect((await post('999/retry')).status).toBe(404);
    expect((await post('abc/retry')).status).toBe(400);

    // Land: the merge queue of `supervisor land`, its outcome as the answer.
    const a = doneIssue(t, 'add a', 'a.txt');
    const before = git(t.ctx.paths.root, 'rev-parse', 'main');
    const landed = await post(`${a}/land`);
    expect(landed.status, landed.text).toBe(200);
    expect(landed.json()).toMatchObject({ issueId: a, result: 'merged' });
    const tip = git(t.ctx.paths.root, 'rev-parse', 'main');
    expect(tip).not.toBe(before);
    expect(landed.json().landedSha).toBe(tip);
    expect(t.ctx.issues.require(a).status).toBe('merged');
    const reopened = await post(`${a}/reopen`);
    expect(reopened.json()).toMatchObject({ id: a, status: 'open' });

    expect(
      issueHistory(t.ctx.db, open).map((h) => `${h.to} ${h.actor} ${h.reason}`),
    ).toEqual([
      'open cli null',
      'cancelled dashboard cancelled on the dashboard',
      'open dashboard retried',
    ]);
  });

  it('a read-only dashboard refuses every control and disables the review buttons', async () => {
    const t = await dashboard({ readOnly: true });
    const csrf = (await http('GET', `${t.url}/api/session`)).json().csrfToken;
    const id = doneIssue(t, 'done already', 'd.txt');
    for (const verb of ['retry', 'cancel', 'edit', 'reopen', 'land']) {
      const r = await http('POST', `${t.url}/api/issues/${id}/${verb}`, {
        body: {},
        headers: { origin: t.url, 'x-supervisor-csrf': csrf },
      });
      expect(r.status, verb).toBe(403);
      expect(r.json().code).toBe('ERR_DASHBOARD_READ_ONLY');
    }
    expect(t.ctx.issues.require(id).status).toBe('done');
    const page = await http('GET', `${t.url}/`);
    expect(page.text).toMatch(
      new RegExp(`data-review="land" data-issue="${id}"[^>]* disabled>`),
    );
  });
});
