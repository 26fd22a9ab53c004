import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { repoQueue } from '../helpers/queue.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  processAlive,
  readRecord,
  status,
  workingOn,
} from '../helpers/agents.js';
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

function setup(extra: Record<string, string> = {}) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const record = join(tempDir(), 'record.log');
  return {
    dir: repo.dir,
    env: testEnv({ AGENT_RECORD_FILE: record, ...extra }),
    record,
  };
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

async function show(
  dir: string,
  env: Record<string, string>,
  id: number,
): Promise<any> {
  return cliJson(['issue', 'show', String(id)], { cwd: dir, env });
}

async function doneOrFailed(
  dir: string,
  env: Record<string, string>,
  id: number,
): Promise<any> {
  return waitFor(
    async () => {
      const i = await show(dir, env, id);
      return i.status === 'done' || i.status === 'failed' ? i : false;
    },
    { timeoutMs: 60_000, what: `issue #${id} finished` },
  );
}

function queueOf(dir: string, prefix: string) {
  return repoQueue(dir, prefix, (fn) => cleanups.push(fn));
}

describe('leases', () => {
  it('kill -9 of a runner mid-job: its agent dies with it, the issue is re-claimed and recorded once', async () => {
    const { dir, env, record } = setup();
    await runCli(['issue', 'add', 'Long job', '--body', 'sleep: 10000'], {
      cwd: dir,
      env,
    });
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const agent = await workingOn(dir, env, 1);
    const firstAgentPid = (
      await waitFor(() => readRecord(record).find((r) => r.what === 'start'), {
        what: 'agent started',
      })
    ).pid;
    process.kill(agent.pid, 'SIGKILL');
    // The orphaned agent is killed before the job is offered again.
    await waitFor(() => !processAlive(firstAgentPid), {
      timeoutMs: 5000,
      what: 'orphaned agent killed',
    });
    await waitFor(
      () => readRecord(record).filter((r) => r.what === 'start').length === 2,
      { timeoutMs: 60_000, what: 're-claim' },
    );
    const issue = await doneOrFailed(dir, env, 1);
    expect(issue.status).toBe('done');
    const outcomes = issue.runs.map((r: any) => r.outcome);
    expect(outcomes.filter((o: string) => o === 'succeeded')).toHaveLength(1);
    expect(outcomes[0]).toMatch(/released|lost/);
    expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue.commit);
  });

  it('SIGSTOP of a runner past its lock: the issue is re-claimed, the frozen agent killed, its late result refused', async () => {
    const { dir, env, record } = setup();
    await runCli(['issue', 'add', 'Freeze me', '--body', 'sleep: 5000'], {
      cwd: dir,
      env,
    });
    await start(dir, env, ['--agents', '2', '--no-dashboard']);
    const frozen = await workingOn(dir, env, 1);
    const frozenAgentPid = (
      await waitFor(() => readRecord(record).find((r) => r.what === 'start'), {
        what: 'agent started',
      })
    ).pid;
    process.kill(frozen.pid, 'SIGSTOP');
    let resumed = false;
    cleanups.push(() => {
      if (!resumed) process.kill(frozen.pid, 'SIGCONT');
    });
    await waitFor(
      () => readRecord(record).filter((r) => r.what === 'start').length === 2,
      { timeoutMs: 20_000, what: 're-claim by the other runner' },
    );
    const reclaim = readRecord(record).filter((r) => r.what === 'start')[1]!;
    expect(reclaim.agent).not.toBe(frozen.id);
    // Killed by the supervisor while its runner is still stopped (how fast: bench/ and chaos).
    await waitFor(() => !processAlive(frozenAgentPid), {
      timeoutMs: 30_000,
      what: 'frozen agent killed',
    });
    process.kill(frozen.pid, 'SIGCONT');
    resumed = true;
    const issue = await doneOrFailed(dir, env, 1);
    expect(issue.status).toBe('done');
    expect(issue.agent).toBe(reclaim.agent);
    const byAttempt = issue.runs.map((r: any) => [r.agent, r.outcome]);
    expect(byAttempt).toEqual([
      [frozen.id, 'lost'],
      [reclaim.agent, 'succeeded'],
    ]);
    // The resumed runner's late report changes nothing: once it has found its lease lost,
    // the runs and the branch are as they were.
    const runnerLog = join(dir, '.supervisor', 'logs', `${frozen.id}.log`);
    await waitFor(
      () =>
        existsSync(runnerLog) &&
        /lease lost/.test(readFileSync(runnerLog, 'utf8')),
      { timeoutMs: 30_000, what: 'the resumed runner finds its lease lost' },
    );
    const again = await show(dir, env, 1);
    expect(again.runs).toEqual(issue.runs);
    expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue.commit);
    // The frozen runner is still a working slot after it resumes.
    await waitFor(
      async () =>
        (await status(dir, env)).agents.filter((a: any) => a.state === 'idle')
          .length === 2,
      { what: 'both agents idle' },
    );
  });

  it('SIGTERM (scale 0) hands the job back to waiting without spending an attempt', async () => {
    const { dir, env } = setup();
    await runCli(['issue', 'add', 'Interrupted', '--body', 'sleep: 20000'], {
      cwd: dir,
      env,
    });
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    await workingOn(dir, env, 1);
    const r = await runCli(['scale', '0'], { cwd: dir, env });
    expect(r.code).toBe(0);
    const queue = await queueOf(dir, env.SUPERVISOR_PREFIX!);
    const job = await queue.getJob('issue-1');
    expect(await job!.getState()).toMatch(/waiting|prioritized/);
    expect(job!.attemptsMade).toBe(0);
    const issue = await waitFor(
      async () => {
        const i = await show(dir, env, 1);
        return i.status === 'queued' && i.runs[0]?.outcome === 'released'
          ? i
          : false;
      },
      { what: 'issue queued again' },
    );
    expect(issue.runs).toHaveLength(1);
  });

  it('an agent with no output and no file change past the progress timeout is killed and its attempt fails', async () => {
    const { dir, env } = setup({
      SUPERVISOR_PROGRESS_TIMEOUT: '800',
      SUPERVISOR_ATTEMPTS: '1',
    });
    await runCli(['issue', 'add', 'Hangs', '--body', 'silent-sleep: 60000'], {
      cwd: dir,
      env,
    });
    await runCli(
      [
        'issue',
        'add',
        'Busy but alive',
        '--body',
        'sleep: 2500',
        '--priority',
        'low',
      ],
      { cwd: dir, env },
    );
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    const hung = await doneOrFailed(dir, env, 1);
    expect(hung.status).toBe('failed');
    expect(hung.error).toMatch(/no output and no file change/);
    // Output keeps a long-running agent's claim alive past the timeout.
    const busy = await doneOrFailed(dir, env, 2);
    expect(busy.status).toBe('done');
  });

  it('reconciles results that completed while the supervisor was down (kill -9 and restart)', async () => {
    const { dir, env, record } = setup();
    // The agents work until the supervisor is down (a file), however slow the machine is.
    const release = join(tempDir(), 'supervisor-is-down');
    for (let i = 1; i <= 3; i++)
      await runCli(
        ['issue', 'add', `Job ${i}`, '--body', `wait-file: ${release}`],
        { cwd: dir, env },
      );
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '3',
      '--no-dashboard',
    ]);
    await waitFor(
      () => readRecord(record).filter((r) => r.what === 'start').length === 3,
      { timeoutMs: 120_000, what: 'three agents started' },
    );
    const working = await waitFor(
      async () => {
        const s = await status(dir, env);
        return s.agents.filter((a: any) => a.state === 'working').length === 3
          ? s
          : false;
      },
      { timeoutMs: 60_000, what: 'three agents working' },
    );
    const runnerPids = working.agents.map((a: any) => a.pid).sort();
    sup.child.kill('SIGKILL');
    await sup.exited;
    // Runners finish their jobs meanwhile; nobody records them yet.
    writeFileSync(release, '');
    const queue = await queueOf(dir, env.SUPERVISOR_PREFIX!);
    await waitFor(
      async () => (await queue.getJobCounts('completed')).completed === 3,
      { timeoutMs: 60_000, what: 'jobs completed' },
    );
    expect(
      (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env })).filter(
        (i) => i.status === 'done',
      ),
    ).toHaveLength(0);
    await start(dir, env, ['--no-dashboard']);
    const list = await waitFor(
      async () => {
        const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
        return l.every((i) => i.status === 'done') ? l : false;
      },
      { what: 'results reconciled' },
    );
    for (const i of list) {
      const s = await show(dir, env, i.id);
      expect(s.runs.map((r: any) => r.outcome)).toEqual(['succeeded']);
      expect(git(dir, 'rev-parse', `issue/${i.id}`)).toBe(i.commit);
    }
    // The runners that outlived the supervisor were adopted, not duplicated.
    const after = await waitFor(
      async () => {
        const s = await status(dir, env);
        return s.agents.length === 3 &&
          s.agents.every((a: any) => a.state === 'idle')
          ? s
          : false;
      },
      { what: 'agents idle' },
    );
    expect(after.agents.map((a: any) => a.pid).sort()).toEqual(runnerPids);
  });
});
