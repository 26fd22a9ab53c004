/**
 * The two-host proof. A second "host" is a network namespace joined by two veth links (one for
 * Redis, one for git + the dashboard) with /tmp hidden under a tmpfs, so the supervisor's
 * repository (a /tmp/sup-repo-* directory) is not there. A remote-mode runner runs in it and
 * reaches Redis and the git remote only over the links. Runs as root; fails (never skips) when
 * the namespace cannot be built.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { join } from 'node:path';
import { queueNameFor } from '../../contract/job.js';
import { resolveRepo } from '../../supervisor/repo.js';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { freePort } from '../helpers/redis-server.js';
import { git, tempRepo } from '../helpers/repo.js';
import {
  plainRunnerConfig,
  startWrappedRunner,
  type RunnerProcess,
} from './helpers.js';
import { BoundRedis, CODE_UNDER_TMP, SecondHost } from './netns.js';

const GIT_TOKEN = 'git-token-for-the-second-host-0123';
const DASHBOARD_TOKEN = 'dashboard-token-0123456789abcdef';

let host: SecondHost | undefined;
let redis: BoundRedis | undefined;
let sup: RunningSupervisor | undefined;
let repo: { dir: string; cleanup: () => void } | undefined;
let env: Record<string, string>;
let gitUrl: string;
let queueName: string;
let resultsRepo: string;
let queue: Queue;
let queueConn: Redis;
const runners: RunnerProcess[] = [];

beforeAll(async () => {
  host = SecondHost.create();
  redis = new BoundRedis(host.hostAddress('redis'), await freePort());
  await redis.start();
  repo = tempRepo();
  env = testEnv({
    REDIS_URL: redis.url,
    SUPERVISOR_DASHBOARD_HOST: host.hostAddress('git'),
    SUPERVISOR_DASHBOARD_TOKEN: DASHBOARD_TOKEN,
    SUPERVISOR_GIT_TOKEN: GIT_TOKEN,
  });
  sup = await startSupervisor(repo.dir, env, ['--agents', '0']);
  const s = await cliJson(['status'], { cwd: repo.dir, env });
  gitUrl = new URL('git/repo.git', s.supervisor.dashboardUrl).toString();
  const paths = await resolveRepo(repo.dir);
  queueName = queueNameFor(paths.repoId);
  resultsRepo = join(paths.stateDir, 'results.git');
  queueConn = new Redis(redis.url, { maxRetriesPerRequest: null });
  queueConn.on('error', () => undefined);
  queue = new Queue(queueName, {
    connection: queueConn,
    prefix: env.SUPERVISOR_PREFIX!,
  });
  queue.on('error', () => undefined);
}, 60_000);

afterAll(async () => {
  try {
    for (const r of runners) await r.stop('SIGKILL');
    await queue?.close().catch(() => undefined);
    queueConn?.disconnect();
    await sup?.stop();
    await redis?.stop();
  } finally {
    host?.destroy();
    repo?.cleanup();
  }
}, 60_000);

function startRemote(agentId = 'agent-101', token = GIT_TOKEN): RunnerProcess {
  const config = plainRunnerConfig({
    agentId,
    host: 'second-host',
    redisUrl: redis!.url,
    prefix: env.SUPERVISOR_PREFIX!,
    queueName,
    gitUrl,
    cacheDir: '/tmp/runner-cache',
    gitTimeoutMs: 3000,
  });
  const r = startWrappedRunner(host!.wrapper(), config, {
    SUPERVISOR_GIT_TOKEN: token,
  });
  runners.push(r);
  return r;
}

const status = () => cliJson(['status'], { cwd: repo!.dir, env });
/**
 * Waits until the remote runner starts an attempt on an issue, from the runner's own output: polling
 * `status` through the CLI can be slower than a short agent on a loaded machine.
 */
const remoteWorkingOn = async (issue: number) => {
  const r = runners.at(-1)!;
  try {
    return await waitFor(
      // The attempt's start line (the agent's own output goes to its attempt log only).
      () =>
        new RegExp(`--- agent-101 issue-${issue} attempt \\d+ \\[`).test(
          r.output,
        ),
      { timeoutMs: 30_000, what: `agent-101 working on #${issue}` },
    );
  } catch (err) {
    throw new Error(
      `${(err as Error).message}\n--- remote runner output (last 4000 chars):\n${r.output.slice(-4000)}\n--- status: ${JSON.stringify((await status()).agents)}`,
    );
  }
};
const agent = async (id: string) =>
  ((await status()).agents as any[]).find((a) => a.id === id);
const show = (id: number) =>
  cliJson(['issue', 'show', String(id)], { cwd: repo!.dir, env });
const add = async (title: string, body: string) => {
  const r = await runCli(['issue', 'add', title, '--body', body], {
    cwd: repo!.dir,
    env,
  });
  expect(r.code, r.stderr).toBe(0);
};
const done = (id: number, timeoutMs = 30_000) =>
  waitFor(
    async () => {
      const i = await show(id);
      return i.status === 'done' || i.status === 'failed' ? i : false;
    },
    { timeoutMs, what: `issue #${id} finished` },
  );
const scale = async (n: number) => {
  const r = await runCli(['scale', String(n)], { cwd: repo!.dir, env });
  expect(r.code, r.stderr).toBe(0);
};
const resultRefs = () =>
  git(
    resultsRepo,
    'for-each-ref',
    '--format=%(refname)',
    'refs/supervisor/results/',
  )
    .split('\n')
    .filter(Boolean);
const idle = (id: string, timeoutMs = 20_000) =>
  waitFor(async () => (await agent(id))?.state === 'idle', {
    timeoutMs,
    what: `${id} idle`,
  });

describe('two hosts: a remote-mode runner in a network namespace', () => {
  it('the second host cannot see the repository and reaches Redis only over its link', async () => {
    expect((await host!.run(['test', '-e', repo!.dir])).code).toBe(1);
    // Nothing of the host's /tmp is there, but for the project's own code when it lives in /tmp.
    expect((await host!.run(['ls', '-A', '/tmp'])).out.trim()).toBe(
      CODE_UNDER_TMP ? ROOT.split('/')[2] : '',
    );
    expect(
      (await host!.run(['redis-cli', '-h', '127.0.0.1', '-p', '6379', 'ping']))
        .out,
    ).not.toContain('PONG');
    expect(
      (
        await host!.run([
          'redis-cli',
          '-h',
          redis!.host,
          '-p',
          String(redis!.port),
          'ping',
        ])
      ).out,
    ).toContain('PONG');
  });

  it('issues flow to done, with issue/<id> branches on the supervisor side', async () => {
    startRemote();
    await idle('agent-101');
    expect(await agent('agent-101')).toMatchObject({
      host: 'second-host',
      external: true,
    });
    for (let i = 1; i <= 3; i++) await add(`Remote ${i}`, 'sleep: 200');
    for (let i = 1; i <= 3; i++) {
      const issue = await done(i);
      expect(issue).toMatchObject({
        status: 'done',
        agent: 'agent-101',
        branch: `issue/${i}`,
      });
      expect(git(repo!.dir, 'rev-parse', `issue/${i}`)).toBe(issue.commit);
      expect(git(repo!.dir, 'show', `issue/${i}:issue-${i}.txt`)).toContain(
        `agent-101 resolved ${i}`,
      );
    }
    expect(resultRefs()).toEqual([]);
    expect(git(repo!.dir, 'for-each-ref', 'refs/supervisor/')).toBe('');
  });

  it('kill -9 of the remote runner: a local runner re-claims its issue', async () => {
    await add('Killed remotely', 'sleep: 4000');
    await remoteWorkingOn(4);
    await runners.at(-1)!.stop('SIGKILL');
    await scale(1);
    const issue = await done(4).finally(() => scale(0));
    expect(issue).toMatchObject({ status: 'done', agent: 'agent-001' });
    const outcomes = issue.runs.map((r: any) => `${r.agent}:${r.outcome}`);
    expect(outcomes.filter((o: string) => o.endsWith(':succeeded'))).toEqual([
      'agent-001:succeeded',
    ]);
    expect(outcomes[0]).toMatch(/^agent-101:(lost|released)$/);
    expect(git(repo!.dir, 'rev-parse', 'issue/4')).toBe(issue.commit);
  });

  it('the second host cut off past its lease: its late result is refused, the issue done exactly once', async () => {
    startRemote();
    await idle('agent-101');
    // Long enough that the cut comes before the agent ends, however slow the status polls are.
    await add('Cut off', 'sleep: 4000');
    await remoteWorkingOn(5);
    host!.down('redis');
    host!.down('git');
    try {
      await scale(1);
      const issue = await done(5);
      expect(issue).toMatchObject({ status: 'done', agent: 'agent-001' });
      // The remote agent has finished meanwhile; its runner could reach nobody.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      host!.up('redis');
      host!.up('git');
      await scale(0);
    }
    await waitFor(
      () =>
        /lease lost|no longer holds|Missing lock|could not renew lock/i.test(
          runners.at(-1)!.output,
        ),
      { timeoutMs: 30_000, what: 'the remote runner learns it lost the lease' },
    );
    await idle('agent-101', 30_000);
    await waitFor(() => resultRefs().length === 0, {
      timeoutMs: 10_000,
      what: 'no result ref left',
    });
    const issue = await show(5);
    expect(
      issue.runs
        .filter((r: any) => r.outcome === 'succeeded')
        .map((r: any) => r.agent),
    ).toEqual(['agent-001']);
    expect(issue.runs.find((r: any) => r.agent === 'agent-101').outcome).toBe(
      'lost',
    );
    expect(git(repo!.dir, 'rev-parse', 'issue/5')).toBe(issue.commit);
  });

  it('Redis cut off, git reachable: the result ref pushed under a lost lease is refused', async () => {
    await add('Pushed too late', 'sleep: 3000');
    await remoteWorkingOn(6);
    host!.down('redis');
    let pushed: string | undefined;
    try {
      // The agent finishes, its runner commits and pushes over the git link, then cannot complete.
      // The endpoint refuses the push once its lock has lapsed (the claim is no longer held);
      // a push that still made it in time is refused later by the recorder.
      const late = await waitFor(
        () =>
          resultRefs().find((r) =>
            r.startsWith('refs/supervisor/results/6/'),
          ) ??
          /git endpoint: push refused.*refs\/supervisor\/results\/6\//.test(
            sup!.output,
          ),
        { timeoutMs: 15_000, what: 'the remote result pushed or refused' },
      );
      if (typeof late === 'string') pushed = late;
      await scale(1);
      const issue = await done(6);
      expect(issue).toMatchObject({ status: 'done', agent: 'agent-001' });
    } finally {
      host!.up('redis');
      await scale(0);
    }
    await waitFor(
      () =>
        !resultRefs().some((r) => r.startsWith('refs/supervisor/results/6/')),
      { timeoutMs: 15_000, what: 'no late ref left' },
    );
    if (pushed)
      expect(sup!.output).toMatch(
        new RegExp(`refused a result ref nobody will publish.*${pushed}`),
      );
    const issue = await show(6);
    expect(
      issue.runs
        .filter((r: any) => r.outcome === 'succeeded')
        .map((r: any) => r.agent),
    ).toEqual(['agent-001']);
    expect(git(repo!.dir, 'rev-parse', 'issue/6')).toBe(issue.commit);
    expect(git(repo!.dir, 'show', 'issue/6:issue-6.txt')).toContain(
      'agent-001 resolved 6',
    );
    await idle('agent-101', 30_000);
  });

  it('git remote unreachable: the job goes back without spending an attempt, status says why, work resumes when it answers', async () => {
    host!.down('git');
    try {
      await add('No git', 'sleep: 200');
      const blocked = await waitFor(
        async () => {
          const a = await agent('agent-101');
          return a?.state === 'blocked' ? a : false;
        },
        { timeoutMs: 20_000, what: 'agent-101 blocked' },
      );
      expect(blocked.lastError).toMatch(
        /git remote http:\/\/.* is unreachable/,
      );
      const job = await waitFor(
        async () => {
          const j = await queue.getJob('issue-7');
          return j && (await j.getState()) !== 'active' ? j : false;
        },
        { what: 'job handed back' },
      );
      expect(job.attemptsMade).toBe(0);
      expect(['waiting', 'prioritized']).toContain(await job.getState());
    } finally {
      host!.up('git');
    }
    const issue = await done(7, 60_000);
    expect(issue).toMatchObject({ status: 'done', agent: 'agent-101' });
    expect(issue.runs.map((r: any) => r.outcome)).toEqual([
      'released',
      'succeeded',
    ]);
    expect(issue.runs[0].error).toMatch(/unreachable/);
  });

  it('credentials refused: the runner reports it in status and takes no job; the token never shows', async () => {
    const wrong = 'wrong-token-must-never-be-shown-4242';
    const r = startRemote('agent-102', wrong);
    const a = await waitFor(
      async () => {
        const x = await agent('agent-102');
        return x?.state === 'blocked' ? x : false;
      },
      { timeoutMs: 20_000, what: 'agent-102 blocked' },
    );
    expect(a.lastError).toMatch(/refused the credentials/);
    expect(JSON.stringify(await status())).not.toContain(wrong);
    expect(r.output).not.toContain(wrong);
    expect(r.output).toMatch(/git remote unavailable: not taking jobs/);
    await r.stop();
  });

  it('Redis briefly unreachable from the second host: the runner reconnects and goes on', async () => {
    await redis!.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await redis!.start();
    await add('After the outage', 'sleep: 200');
    const issue = await done(8, 60_000);
    expect(issue).toMatchObject({ status: 'done', agent: 'agent-101' });
    expect(git(repo!.dir, 'rev-parse', 'issue/8')).toBe(issue.commit);
  });
});
