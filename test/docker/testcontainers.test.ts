import { afterAll, beforeAll, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queueNameFor } from '../../contract/job.js';
import { useCleanups } from '../helpers/cleanup.js';
import { cliJson, runCli, startSupervisor, waitFor } from '../helpers/cli.js';
import {
  containers,
  describeDocker,
  docker,
  dockerRepo,
  ensureRunnerImage,
} from './helpers.js';

// No reaper container (none can be pulled here); `localhost` reaches mapped ports.
process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
process.env.TESTCONTAINERS_HOST_OVERRIDE = 'localhost';
const { Network } = await import('testcontainers');
const { RedisContainer } = await import('@testcontainers/redis');
type StartedNetwork = Awaited<
  ReturnType<InstanceType<typeof Network>['start']>
>;
type StartedRedis = Awaited<
  ReturnType<InstanceType<typeof RedisContainer>['start']>
>;

const cleanups = useCleanups();

describeDocker(
  'Docker runtime with testcontainers: Redis and runners on a user-defined network',
  () => {
    let network: StartedNetwork;
    let redis: StartedRedis;

    beforeAll(async () => {
      await ensureRunnerImage();
      network = await new Network().start();
      redis = await new RedisContainer('redis:7')
        .withNetwork(network)
        .withNetworkAliases('queue-redis')
        .start();
    }, 200_000);

    afterAll(async () => {
      await redis?.stop();
      await network?.stop();
    });

    it('issues flow from the CLI and a plain BullMQ producer through runner containers to SQLite', async () => {
      const hostUrl = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
      const repo = await dockerRepo({
        config: {
          docker: {
            network: network.getName(),
            redisUrl: 'redis://queue-redis:6379',
          },
        },
        env: { REDIS_URL: hostUrl },
      });
      cleanups.push(repo.cleanup);
      const { dir, env } = repo;
      for (let i = 1; i <= 3; i++)
        await runCli(['issue', 'add', `Issue ${i}`, '--body', 'sleep: 300'], {
          cwd: dir,
          env,
        });
      const sup = await startSupervisor(dir, env, [
        '--agents',
        '2',
        '--no-dashboard',
      ]);
      cleanups.push(async () => void (await sup.stop()));

      // Another producer, speaking only to the Redis container.
      const conn = new Redis(hostUrl, { maxRetriesPerRequest: null });
      const queue = new Queue(queueNameFor(repo.repoId), {
        connection: conn,
        prefix: env.SUPERVISOR_PREFIX,
      });
      cleanups.push(async () => {
        await queue.close();
        conn.disconnect();
      });
      await queue.add(
        'issue',
        { title: 'From a producer', body: 'sleep: 100' },
        { jobId: 'ext-1' },
      );

      // Generous: once (1 of 3 full runs) this took over 60 s with other Docker tests running
      // at once; on a timeout the message says where every issue and agent was.
      let seen = '';
      const list = await waitFor(
        async () => {
          const l = await cliJson<
            Array<{ status: string; title: string; branch: string | null }>
          >(['issue', 'list'], { cwd: dir, env });
          if (l.length === 4 && l.every((i) => i.status === 'done')) return l;
          const st = await cliJson<{ agents: Array<Record<string, unknown>> }>(
            ['status'],
            { cwd: dir, env },
          );
          seen = JSON.stringify({
            issues: l.map((i) => i.status),
            agents: st.agents.map((a) => [
              a.id,
              a.state,
              a.note ?? a.lastError,
            ]),
          });
          return false;
        },
        { timeoutMs: 180_000, what: '4 issues done' },
      ).catch((err: Error) => {
        throw new Error(`${err.message}; last seen ${seen}`);
      });
      expect(list.map((i) => i.title).sort()).toEqual([
        'From a producer',
        'Issue 1',
        'Issue 2',
        'Issue 3',
      ]);

      const running = await containers(repo.repoId, { running: true });
      expect(running).toHaveLength(2);
      for (const c of running) {
        const info = await docker.getContainer(c.Id).inspect();
        expect(info.HostConfig.NetworkMode).toBe(network.getName());
        expect(Object.keys(info.NetworkSettings.Networks)).toEqual([
          network.getName(),
        ]);
        expect(
          JSON.parse(
            info.Config.Env.find((e) =>
              e.startsWith('SUPERVISOR_RUNNER_CONFIG='),
            )!
              .split('=')
              .slice(1)
              .join('='),
          ).redisUrl,
        ).toBe('redis://queue-redis:6379');
      }
      const status = await cliJson<any>(['status'], { cwd: dir, env });
      expect(status.queue.completed).toBe(4);
      expect(status.agents.map((a: any) => a.state)).toEqual(['idle', 'idle']);
      expect(await sup.stop()).toBe(0);
      expect(await containers(repo.repoId, { running: true })).toHaveLength(0);
    });
  },
);
