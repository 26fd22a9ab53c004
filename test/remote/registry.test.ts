import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { queueNameFor, supervisorKeys } from '../../contract/job.js';
import { readRegistry } from '../../supervisor/registry.js';
import { resolveRepo } from '../../supervisor/repo.js';
import { useCleanups } from '../helpers/cleanup.js';
import {
  CLI,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import {
  RunnerProcess,
  plainRunnerConfig,
  startPlainRunner,
} from './helpers.js';

const cleanups = useCleanups();
const REDIS = 'redis://127.0.0.1:6379';

async function setup() {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const env = testEnv({ REDIS_URL: REDIS });
  const sup = await startSupervisor(repo.dir, env, ['--agents', '0']);
  cleanups.push(async () => void (await sup.stop()));
  const paths = await resolveRepo(repo.dir);
  const base = {
    redisUrl: REDIS,
    prefix: env.SUPERVISOR_PREFIX!,
    queueName: queueNameFor(paths.repoId),
    gitUrl: repo.dir,
    pushUrl: join(paths.stateDir, 'results.git'),
  };
  return { dir: repo.dir, env, base };
}

function runner(config: Record<string, unknown>): RunnerProcess {
  const r = startPlainRunner(config);
  cleanups.push(async () => void (await r.stop('SIGKILL')));
  return r;
}

const agentsOf = async (dir: string, env: Record<string, string>) =>
  (await cliJson(['status'], { cwd: dir, env })).agents as any[];

describe('runner registry', () => {
  it('shows runners started elsewhere with their host in status and the dashboard; stale entries age out', async () => {
    const { dir, env, base } = await setup();
    const r = runner(
      plainRunnerConfig({
        ...base,
        agentId: 'agent-101',
        host: 'build-server',
        cacheDir: tempDir('sup-cache-'),
      }),
    );
    const seen = await waitFor(
      async () =>
        (await agentsOf(dir, env)).find(
          (a) => a.id === 'agent-101' && a.state === 'idle',
        ),
      { what: 'agent-101 registered' },
    );
    expect(seen).toMatchObject({
      host: 'build-server',
      external: true,
      pid: r.pid,
    });

    const s = await cliJson(['status'], { cwd: dir, env });
    const api = await fetch(
      new URL('api/status', s.supervisor.dashboardUrl),
    ).then((res) => res.json() as Promise<any>);
    expect(api.agents.find((a: any) => a.id === 'agent-101')).toMatchObject({
      host: 'build-server',
      state: 'idle',
    });
    const page = await fetch(s.supervisor.dashboardUrl).then((res) =>
      res.text(),
    );
    expect(page).toContain('on build-server');
    // Text status lists it too, and `scale 0` still converges: it is not this supervisor's runner.
    expect((await runCli(['status'], { cwd: dir, env })).stdout).toMatch(
      /agent-101 +idle .*on build-server/,
    );
    expect((await runCli(['scale', '0'], { cwd: dir, env })).code).toBe(0);

    // It works like any runner: its result arrives by a result ref and lands on issue/1.
    await runCli(['issue', 'add', 'From the build server'], { cwd: dir, env });
    const issue = await waitFor(
      async () => {
        const i = await cliJson(['issue', 'show', '1'], { cwd: dir, env });
        return i.status === 'done' ? i : false;
      },
      { what: 'issue 1 done' },
    );
    expect(issue.agent).toBe('agent-101');
    expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue.commit);

    // Killed without a goodbye: its entry stops counting once its heartbeat is stale (3 s here).
    await r.stop('SIGKILL');
    await waitFor(
      async () => !(await agentsOf(dir, env)).some((a) => a.id === 'agent-101'),
      { timeoutMs: 60_000, what: 'agent-101 aged out' },
    );

    // Entries of long-gone runners leave the index too.
    const redis = new Redis(REDIS);
    cleanups.push(() => void redis.disconnect());
    const keys = supervisorKeys(base.prefix, base.queueName);
    await redis.zadd(keys.agents, Date.now() - 3_600_000, 'agent-777');
    await readRegistry(redis, base.prefix, base.queueName, 3000);
    expect(await redis.zscore(keys.agents, 'agent-777')).toBeNull();
  });

  it('refuses a second runner claiming a slot id a live runner holds, across processes (runners started with `supervisor runner`)', async () => {
    const { dir, env, base } = await setup();
    // What a user does: print the configuration on the supervisor's host, start runners elsewhere.
    const printed = await runCli(
      [
        'runner-config',
        '--git-url',
        base.gitUrl,
        '--push-url',
        base.pushUrl,
        '--redis-url',
        REDIS,
        '--cache-dir',
        tempDir('sup-cache-'),
      ],
      { cwd: dir, env },
    );
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stderr).toMatch(
      /warning: the Redis URL redis:\/\/127\.0\.0\.1:6379 is a loopback address/,
    );
    const file = join(tempDir('sup-conf-'), 'runner.json');
    writeFileSync(file, printed.stdout);
    expect(JSON.parse(printed.stdout)).toMatchObject({
      queueName: base.queueName,
      prefix: base.prefix,
      git: { mode: 'remote', url: base.gitUrl },
    });
    const cli = (agentId: string, host: string) => {
      const r = new RunnerProcess(
        spawn(
          process.execPath,
          [CLI, 'runner', '--config', file, '--agent-id', agentId],
          {
            env: { ...process.env, SUPERVISOR_HOST: host },
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        ),
      );
      // SIGTERM, which `supervisor runner` forwards: a SIGKILL would end only the CLI and leave
      // its runner child working for the rest of the test run.
      cleanups.push(async () => void (await r.stop('SIGTERM')));
      return r;
    };
    const a = cli('102', 'host-a');
    await waitFor(
      async () =>
        (await agentsOf(dir, env)).find(
          (x) => x.id === 'agent-102' && x.state === 'idle',
        ),
      { what: 'first agent-102' },
    );
    const b = cli('agent-102', 'host-b');
    expect(await b.exited).toBe(1);
    expect(b.output).toMatch(
      /slot agent-102 is already held by a live runner on host-a; refusing to start a second one/,
    );
    expect(b.output).toMatch(/error: the runner exited with code 1/);
    expect(a.running).toBe(true);
    const agents = (await agentsOf(dir, env)).filter(
      (x) => x.id === 'agent-102',
    );
    expect(agents).toHaveLength(1);
    expect(agents[0]).toMatchObject({ host: 'host-a', state: 'idle' });

    // `supervisor runner` killed with SIGKILL: the runner it started stops too (no orphan).
    const child = Number(
      execFileSync('pgrep', ['-P', String(a.pid)], { encoding: 'utf8' })
        .trim()
        .split('\n')[0],
    );
    expect(child).toBeGreaterThan(1);
    await a.stop('SIGKILL');
    await waitFor(
      () => {
        try {
          process.kill(child, 0);
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 60_000, what: "the killed command's runner gone" },
    );
    await waitFor(
      async () =>
        !(await agentsOf(dir, env)).some(
          (x) => x.id === 'agent-102' && x.state === 'idle',
        ),
      { timeoutMs: 60_000, what: 'agent-102 no longer idle' },
    );
  });
});
