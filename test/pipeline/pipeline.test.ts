import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { repoQueue } from '../helpers/queue.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

async function setup(extraEnv: Record<string, string> = {}) {
  const repo = tempRepo();
  const env = testEnv(extraEnv);
  cleanups.push(repo.cleanup);
  return { dir: repo.dir, env };
}

async function start(
  dir: string,
  env: Record<string, string>,
  args: string[],
): Promise<RunningSupervisor> {
  const sup = await startSupervisor(dir, env, args);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

type IssueJson = {
  id: number;
  status: string;
  branch: string | null;
  commit: string | null;
  agent: string | null;
  attempts: number;
  runs?: any[];
  error?: string;
};

async function issues(
  dir: string,
  env: Record<string, string>,
): Promise<IssueJson[]> {
  return cliJson<IssueJson[]>(['issue', 'list'], { cwd: dir, env });
}

async function allFinished(
  dir: string,
  env: Record<string, string>,
  n: number,
): Promise<IssueJson[] | false> {
  const list = await issues(dir, env);
  return list.length === n &&
    list.every((i) => i.status === 'done' || i.status === 'failed')
    ? list
    : false;
}

/** A repository with one issue (title, scripted-agent body), run by one agent until it settles. */
async function oneIssue(
  title: string,
  body: string,
  extraEnv: Record<string, string> = {},
) {
  const { dir, env } = await setup(extraEnv);
  await runCli(['issue', 'add', title, '--body', body], { cwd: dir, env });
  await start(dir, env, ['--agents', '1', '--no-dashboard']);
  const [issue] = await waitFor(() => allFinished(dir, env, 1), {
    what: `issue "${title}" settled`,
  });
  return { dir, env, issue: issue! };
}

describe('core pipeline', () => {
  it('takes 8 issues to done with 3 agents, each on its issue/<id> branch', async () => {
    const { dir, env } = await setup();
    for (let i = 1; i <= 8; i++) {
      const r = await runCli(
        [
          'issue',
          'add',
          `Issue ${i}`,
          '--body',
          `sleep: ${200 + (i % 3) * 150}`,
        ],
        { cwd: dir, env },
      );
      expect(r.code).toBe(0);
    }
    const sup = await start(dir, env, ['--agents', '3', '--no-dashboard']);
    const done = await waitFor(() => allFinished(dir, env, 8), {
      timeoutMs: 60_000,
      what: '8 issues finished',
    });
    expect(done.map((i) => i.status)).toEqual(Array(8).fill('done'));
    const agents = new Set(done.map((i) => i.agent));
    expect(agents.size).toBeGreaterThan(1);
    for (const i of done) {
      expect(i.branch).toBe(`issue/${i.id}`);
      expect(git(dir, 'rev-parse', `refs/heads/issue/${i.id}`)).toBe(i.commit);
      expect(git(dir, 'show', `${i.commit}:issue-${i.id}.txt`)).toContain(
        `resolved ${i.id}`,
      );
      const shown = await cliJson<IssueJson>(['issue', 'show', String(i.id)], {
        cwd: dir,
        env,
      });
      expect(shown.runs!.filter((r) => r.outcome === 'succeeded')).toHaveLength(
        1,
      );
      expect(shown.runs![0].filesChanged).toBe(1);
      expect(existsSync(shown.runs![0].logPath)).toBe(true);
    }
    const status = await cliJson<any>(['status'], { cwd: dir, env });
    expect(status.agents).toHaveLength(3);
    expect(status.agents.map((a: any) => a.state).sort()).toEqual([
      'idle',
      'idle',
      'idle',
    ]);
    expect(status.queue.completed).toBe(8);
    expect(status.platform.maxAgents).toBe(10);
    expect(await sup.stop()).toBe(0);
    // Worktrees were created once per slot and kept for reuse.
    expect(existsSync(join(dir, '.worktrees/agent-001/.git'))).toBe(true);
  });

  it('fails an issue after its attempts when the agent keeps exiting non-zero, keeping the error', async () => {
    const { dir, env, issue } = await oneIssue('Always fails', 'exit: 7', {
      SUPERVISOR_ATTEMPTS: '2',
    });
    expect(issue.status).toBe('failed');
    const shown = await cliJson<IssueJson>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(shown.error).toMatch(/exited with code 7/);
    expect(shown.runs!.map((r) => r.outcome)).toEqual(['failed', 'failed']);
    expect(shown.runs!.map((r) => r.exitCode)).toEqual([7, 7]);
    expect(shown.attempts).toBe(2);
  });

  it('retries a failed attempt and succeeds on the next one', async () => {
    const state = tempDir();
    const { dir, env, issue } = await oneIssue('Flaky', 'fail-attempts: 1', {
      AGENT_STATE_DIR: state,
    });
    expect(issue.status).toBe('done');
    const shown = await cliJson<IssueJson>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(shown.runs!.map((r) => r.outcome)).toEqual(['failed', 'succeeded']);
    // Why the attempt failed, as a stable code, in --json and in the human view.
    expect(shown.runs!.map((r: any) => r.errorKind)).toEqual([
      'agent-exit',
      null,
    ]);
    const text = await runCli(['issue', 'show', '1'], { cwd: dir, env });
    const header = text.stdout.split('\n').find((l) => /^ATTEMPT\s/.test(l));
    expect(header, text.stdout).toMatch(/\sOUTCOME\s+KIND\s+EXIT\s/);
    expect(text.stdout).toMatch(/^1\s+agent-001\s+failed\s+agent-exit\s+3\s/m);
  });

  it('records an agent that changes nothing as done with no commit', async () => {
    const { dir, issue } = await oneIssue('Nothing to do', 'write: none');
    expect(issue).toMatchObject({ status: 'done', commit: null, branch: null });
    expect(() =>
      git(dir, 'rev-parse', '--verify', '--quiet', 'refs/heads/issue/1'),
    ).toThrow();
  });

  it('keeps commits an agent made itself', async () => {
    const { dir, issue } = await oneIssue('Self-committing', 'commit: yes');
    expect(issue.status).toBe('done');
    expect(git(dir, 'log', '-1', '--format=%s', issue.commit!)).toBe(
      'agent commit 1',
    );
  });

  it('refuses to start when the agent command does not exist, losing nothing', async () => {
    const { dir, env } = await setup({
      SUPERVISOR_AGENT_COMMAND: 'definitely-not-a-command-xyz',
      SUPERVISOR_ATTEMPTS: '1',
    });
    await runCli(['issue', 'add', 'Anything'], { cwd: dir, env });
    const r = await runCli(['start', '--agents', '1', '--no-dashboard'], {
      cwd: dir,
      env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /agent program "definitely-not-a-command-xyz" is not installed/,
    );
    const list = await issues(dir, env);
    expect(list.map((i) => i.status)).toEqual(['open']);
  });

  it('repairs a worktree whose .git file the agent deleted, and goes on', async () => {
    const { dir, env } = await setup({ SUPERVISOR_ATTEMPTS: '1' });
    const mainBefore = git(dir, 'rev-parse', 'main');
    await runCli(['issue', 'add', 'Vandal', '--body', 'delete-git: yes'], {
      cwd: dir,
      env,
    });
    await runCli(['issue', 'add', 'Next one', '--priority', 'low'], {
      cwd: dir,
      env,
    });
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const list = await waitFor(() => allFinished(dir, env, 2), {
      what: 'issues finished',
    });
    expect(list[0]!.status).toBe('failed');
    const vandal = await cliJson<IssueJson>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(vandal.error).toMatch(/damaged its worktree/);
    expect(list[1]!.status).toBe('done');
    expect(git(dir, 'rev-parse', 'main')).toBe(mainBefore);
    expect(git(dir, 'show', `${list[1]!.commit}:issue-2.txt`)).toContain(
      'resolved 2',
    );
    // The main worktree and its branch are untouched.
    expect(git(dir, 'status', '--porcelain')).toBe('');
  });

  it('takes issues in priority order with one agent', async () => {
    const { dir, env } = await setup();
    const add = (t: string, p: string) =>
      runCli(['issue', 'add', t, '--priority', p], { cwd: dir, env });
    await add('low one', 'low');
    await add('medium one', 'medium');
    await add('urgent one', 'urgent');
    await add('high one', 'high');
    await add('second urgent', 'urgent');
    // Queue everything first, then let one agent drain it.
    const sup = await start(dir, env, ['--agents', '0', '--no-dashboard']);
    await waitFor(
      async () => (await issues(dir, env)).every((i) => i.status === 'queued'),
      { what: 'issues queued' },
    );
    const r = await runCli(['scale', '1'], { cwd: dir, env });
    expect(r.code).toBe(0);
    await waitFor(() => allFinished(dir, env, 5), { what: 'issues finished' });
    const runs = await Promise.all(
      [1, 2, 3, 4, 5].map((id) =>
        cliJson<IssueJson>(['issue', 'show', String(id)], { cwd: dir, env }),
      ),
    );
    const order = runs
      .sort((a, b) => a.runs![0].startedAt - b.runs![0].startedAt)
      .map((i) => i.id);
    expect(order).toEqual([3, 5, 4, 2, 1]);
    await sup.stop();
  });

  it('adopts a job added with plain BullMQ by another producer', async () => {
    const { dir, env } = await setup();
    const sup = await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const status = await cliJson<any>(['status'], { cwd: dir, env });
    expect(status.supervisor.running).toBe(true);
    const queue = await repoQueue(dir, env.SUPERVISOR_PREFIX!, (fn) =>
      cleanups.push(fn),
    );
    await queue.add(
      'issue',
      { title: 'From a foreign producer', body: 'hello' },
      { jobId: 'ext-1' },
    );
    const list = await waitFor(
      async () => {
        const l = await issues(dir, env);
        return l.length === 1 && l[0]!.status === 'done' ? l : false;
      },
      { what: 'foreign job done' },
    );
    expect(list[0]!.branch).toBe(`issue/${list[0]!.id}`);
    // A job that breaks the contract fails with a clear error and the runner keeps working.
    const bad = await queue.add('issue', { nope: true } as never, {
      jobId: 'ext-bad',
    });
    await waitFor(async () => (await bad.getState()) === 'failed', {
      what: 'bad job failed',
    });
    const failed = await queue.getJob('ext-bad');
    expect(failed!.failedReason).toMatch(/invalid job data/);
    await runCli(['issue', 'add', 'After the bad one'], { cwd: dir, env });
    await waitFor(
      async () =>
        (await issues(dir, env)).filter((i) => i.status === 'done').length ===
        2,
      { what: 'runner still works' },
    );
    await sup.stop();
  });
});
