import { beforeAll, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queueNameFor } from '../../contract/job.js';
import { RUNNER_CAPABILITIES } from '../../supervisor/runtimes/docker.js';
import { LABELS } from '../../supervisor/runtimes/docker/labels.js';
import {
  RUNNER_DIR,
  RUNNER_LOG_TARGET,
} from '../../supervisor/runtimes/docker/mounts.js';
import { useCleanups } from '../helpers/cleanup.js';
import { cliJson, runCli, startSupervisor, waitFor } from '../helpers/cli.js';
import { git } from '../helpers/repo.js';
import {
  containers,
  describeDocker,
  docker,
  dockerRepo,
  ensureRunnerImage,
  IMAGE_BUILD_TIMEOUT_MS,
} from './helpers.js';

const cleanups = useCleanups();
const GiB = 1024 ** 3;

type IssueJson = {
  id: number;
  status: string;
  branch: string | null;
  commit: string | null;
  agent: string | null;
  error?: string;
  runs?: Array<{ outcome: string; agent: string; error: string | null }>;
};

describeDocker('Docker runtime: end to end', () => {
  beforeAll(ensureRunnerImage, IMAGE_BUILD_TIMEOUT_MS + 60_000);

  it('start --runtime docker --agents 3 takes issues to done in labelled, limited, non-root containers; scale 0 hands a job back and leaves none running', async () => {
    const repo = await dockerRepo({
      config: { memoryPerAgent: '1g', env: { enabled: true } },
    });
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    for (let i = 1; i <= 5; i++)
      expect(
        (
          await runCli(
            [
              'issue',
              'add',
              `Issue ${i}`,
              '--body',
              `sleep: ${300 + (i % 3) * 200}`,
            ],
            { cwd: dir, env },
          )
        ).code,
      ).toBe(0);
    // An agent that deletes its worktree's .git: the runner repairs the worktree in place (it is a bind mount).
    await runCli(
      [
        'issue',
        'add',
        'Vandal',
        '--body',
        'delete-git: yes',
        '--priority',
        'low',
      ],
      { cwd: dir, env },
    );
    const sup = await startSupervisor(dir, env, [
      '--runtime',
      'docker',
      '--agents',
      '3',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));

    const issues = await waitFor(
      async () => {
        const l = await cliJson<IssueJson[]>(['issue', 'list'], {
          cwd: dir,
          env,
        });
        return l.length === 6 &&
          l.every((i) => i.status === 'done' || i.status === 'failed')
          ? l
          : false;
      },
      { timeoutMs: 90_000, what: '6 issues finished' },
    );
    for (const i of issues.filter((x) => x.id <= 5)) {
      expect(i.status, JSON.stringify(i)).toBe('done');
      expect(git(dir, 'rev-parse', `refs/heads/issue/${i.id}`)).toBe(i.commit);
      expect(git(dir, 'show', `${i.commit}:issue-${i.id}.txt`)).toContain(
        `resolved ${i.id}`,
      );
    }
    const vandal = await cliJson<IssueJson>(['issue', 'show', '6'], {
      cwd: dir,
      env,
    });
    expect(vandal.status).toBe('failed');
    expect(vandal.error).toMatch(/damaged its worktree/);

    // Every issue went to a container that is one of ours, found by label.
    const list = await containers(repo.repoId, { running: true });
    expect(list).toHaveLength(3);
    expect(list.map((c) => c.Labels[LABELS.slot]).sort()).toEqual([
      'agent-001',
      'agent-002',
      'agent-003',
    ]);
    for (const c of list) {
      expect(c.Labels).toMatchObject({
        [LABELS.project]: 'agent-supervisor',
        [LABELS.repo]: repo.repoId,
        [LABELS.role]: 'runner',
      });
      const info = await docker.getContainer(c.Id).inspect();
      expect(info.HostConfig.Memory).toBe(1 * GiB);
      expect(info.HostConfig.MemorySwap).toBe(1 * GiB);
      // 4 CPUs by default on Linux, clamped to what the machine has.
      const { NCPU } = await docker.info();
      expect(info.HostConfig.NanoCpus).toBe(Math.min(4, NCPU) * 1e9);
      expect(info.HostConfig.RestartPolicy?.Name).toBe('no');
      expect(info.HostConfig.SecurityOpt).toContain('no-new-privileges:true');
      // The runner is root with a few capabilities; its agent runs as a uid of its own
      // (test/security/queue-isolation.test.ts).
      expect(info.Config.User).toBe('0:0');
      expect(info.HostConfig.CapDrop).toEqual(['ALL']);
      expect(
        (info.HostConfig.CapAdd ?? [])
          .map((c: string) => c.replace(/^CAP_/, ''))
          .sort(),
      ).toEqual([...RUNNER_CAPABILITIES].sort());
      const mounts = info.Mounts.map(
        (m) => `${m.Source}->${m.Destination}${m.RW ? '' : ':ro'}`,
      );
      expect(mounts.join('\n')).not.toMatch(/docker\.sock/);
      expect(mounts).toContain(`${dir}/.git->${dir}/.git:ro`);
      expect(mounts).toContain(
        `${dir}/.worktrees/${c.Labels[LABELS.slot]}->${dir}/.worktrees/${c.Labels[LABELS.slot]}`,
      );
      // Other slots' worktrees are not mounted.
      expect(mounts.filter((m) => m.includes('/.worktrees/'))).toHaveLength(1);
      // The runner's log, in a directory only root enters (the agent cannot forge its lines).
      expect(mounts).toContain(
        `${dir}/.supervisor/logs/${c.Labels[LABELS.slot]}.log->${RUNNER_LOG_TARGET}`,
      );
      expect(info.HostConfig.Tmpfs?.[RUNNER_DIR]).toMatch(/\bmode=0700\b/);
    }

    // status --json: container id and health per agent (the image's health check, every 1 s here).
    const status = await waitFor(
      async () => {
        const s = await cliJson<any>(['status'], { cwd: dir, env });
        return s.agents.length === 3 &&
          s.agents.every(
            (a: any) => a.health === 'healthy' && a.state === 'idle',
          )
          ? s
          : false;
      },
      { timeoutMs: 30_000, what: 'three healthy idle agents' },
    );
    expect(status.agents.map((a: any) => a.containerId).sort()).toEqual(
      list.map((c) => c.Id).sort(),
    );
    expect(status.agents.every((a: any) => a.pid === null)).toBe(true);

    // `supervisor logs` shows what the runner in the container printed.
    const logs = await runCli(['logs', 'agent-001', '-n', '500'], {
      cwd: dir,
      env,
    });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/\[runner\] ready/);

    // scale 0 while an agent works: SIGTERM, the job goes back to waiting with no attempt spent.
    await runCli(['issue', 'add', 'Long one', '--body', 'sleep: 30000'], {
      cwd: dir,
      env,
    });
    await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.some(
          (a: any) => a.state === 'working' && a.issue?.id === 7,
        ),
      {
        timeoutMs: 20_000,
        what: 'an agent working on #7',
      },
    );
    const scaled = await runCli(['scale', '0'], {
      cwd: dir,
      env,
      timeoutMs: 90_000,
    });
    expect(scaled.code).toBe(0);
    expect(await containers(repo.repoId, { running: true })).toHaveLength(0);
    const redis = new Redis('redis://127.0.0.1:6379', {
      maxRetriesPerRequest: null,
    });
    const queue = new Queue(queueNameFor(repo.repoId), {
      connection: redis,
      prefix: env.SUPERVISOR_PREFIX,
    });
    try {
      const job = await queue.getJob('issue-7');
      expect(await job!.getState()).toMatch(/waiting|prioritized/);
      expect(job!.attemptsMade).toBe(0);
    } finally {
      await queue.close();
      redis.disconnect();
    }
    const seven = await waitFor(
      async () => {
        const i = await cliJson<IssueJson>(['issue', 'show', '7'], {
          cwd: dir,
          env,
        });
        return i.status === 'queued' && i.runs?.[0]?.outcome === 'released'
          ? i
          : false;
      },
      { what: 'issue 7 handed back' },
    );
    expect(seven.runs).toHaveLength(1);
    expect(await sup.stop()).toBe(0);
  });
});
