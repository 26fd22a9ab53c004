/**
 * Issue 13 item 1: an agent in a Docker container holds none of the control plane's credentials.
 * - Its runner is root in the container (a few capabilities) and the agent runs under a uid of
 *   its own: it cannot read the runner's configuration (the queue's Redis URL and password) from
 *   its environment, /proc/1/environ or /proc/<runner>/environ, nor signal the runner.
 * - The queue's Redis requires a password: the agent reaches its port (it shares the runner's
 *   network) but every command is refused, so it cannot list or write the queue's keys.
 * - `start` refuses a queue Redis that answers without a password when runners run in
 *   containers, unless that is accepted explicitly; the apps' per-slot Redis is not the queue's.
 * - The containers join the repository's own network by default.
 * - The runner's log file is mounted where the agent cannot write it (or read it).
 * A real engine, a real redis-server with --requirepass, the scripted agent as the attacker
 * (test/security/agent-probe.ts; test/remote/swarm.test.ts runs it in a Swarm task).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../supervisor/config.js';
import { repoNetworkName } from '../../supervisor/runtimes/docker/labels.js';
import { RUNNER_LOG_TARGET } from '../../supervisor/runtimes/docker/mounts.js';
import { useCleanups } from '../helpers/cleanup.js';
import { runCli, startSupervisor } from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/repo.js';
import {
  containers,
  describeDocker,
  docker,
  dockerRepo,
  ensureRunnerImage,
  IMAGE_BUILD_TIMEOUT_MS,
} from '../docker/helpers.js';
import { commitProbe, expectIsolated, runProbeIssue } from './agent-probe.js';

const cleanups = useCleanups();
const PASSWORD = `pw${randomBytes(12).toString('hex')}`;

let redis: PrivateRedis;
let redisPort = 0;

describeDocker(
  "Docker runtime: the agent cannot reach the control plane's credentials or keys",
  () => {
    beforeAll(async () => {
      await ensureRunnerImage();
      // Where containers on the repository's network reach it (host.docker.internal, the
      // host's bridge address): on every address, with a password.
      redis = await PrivateRedis.create('none', {
        password: PASSWORD,
        bind: '0.0.0.0',
      });
      await redis.start();
      redisPort = redis.port;
    }, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    afterAll(() => redis?.stop());

    it('start refuses a queue Redis without a password for runners in containers, unless accepted explicitly', async () => {
      const repo = await dockerRepo();
      cleanups.push(repo.cleanup);
      const env = { ...repo.env };
      delete env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
      const r = await runCli(['start', '--no-dashboard'], {
        cwd: repo.dir,
        env: { ...env, REDIS_URL: 'redis://127.0.0.1:6379' },
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        /error: the queue's Redis at redis:\/\/127\.0\.0\.1:6379 answers without a password, and runners run in Docker containers: every agent can reach it and forge results/,
      );
      expect(r.stderr).toMatch(/hint: `supervisor infra up` starts a Redis/);
      expect(r.stderr).toMatch(/SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS=1/);
      expect((await containers(repo.repoId)).length).toBe(0);
    });

    it('the apps’ per-slot Redis is not the queue’s where runners run in containers or on other hosts', () => {
      const dir = tempDir('sup-qi-cfg-');
      const file = join(dir, 'supervisor.config.json');
      const load = (cfg: object) => {
        writeFileSync(file, JSON.stringify(cfg));
        return loadConfig({ configFile: file, env: {} }).env.redis;
      };
      expect(load({ runtime: 'process' }).enabled).toBe(true);
      expect(load({ runtime: 'docker' }).enabled).toBe(false);
      expect(load({ runtime: 'swarm' }).enabled).toBe(false);
      expect(load({ git: { runners: 'remote' } }).enabled).toBe(false);
      // Named explicitly, it is used (a separate server for the apps).
      expect(
        load({
          runtime: 'docker',
          env: { redis: { url: 'redis://apps:6380' } },
        }),
      ).toMatchObject({ enabled: true, url: 'redis://apps:6380' });
    });

    it("as the agent, inside its container on the repository's network: the runner's configuration is unreadable and the queue's keys unreachable", async () => {
      const repo = await dockerRepo({
        // The default network (the repository's own): the test Redis listens where it reaches.
        config: { docker: { network: undefined } },
      });
      cleanups.push(repo.cleanup);
      const { dir } = repo;
      commitProbe(dir, { host: 'host.docker.internal', port: redisPort });
      const env: Record<string, string> = {
        ...repo.env,
        REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${redisPort}`,
        SUPERVISOR_AGENT_COMMAND: 'sh probe.sh',
      };
      delete env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
      const sup = await startSupervisor(dir, env, [
        '--agents',
        '1',
        '--no-dashboard',
      ]);
      cleanups.push(async () => void (await sup.stop()));
      const { report, dump } = await runProbeIssue(dir, env, {
        diagnose: async () =>
          `${sup.output}\n${(await runCli(['logs', '--lines', '50'], { cwd: dir, env })).stdout}`,
      });

      const [c] = await containers(repo.repoId, { running: true });
      const info = await docker.getContainer(c!.Id).inspect();
      expect(info.HostConfig.NetworkMode).toBe(repoNetworkName(repo.repoId));

      const lines = expectIsolated(report, dump, [PASSWORD]);
      // The runner's own log is mounted where only the runner reaches it.
      expect(lines).toContain(`mounted-file-refused ${RUNNER_LOG_TARGET}`);
      expect(
        readFileSync(join(dir, '.supervisor/logs/agent-001.log'), 'utf8'),
      ).not.toContain('forged-by-agent');

      // The repository's network goes with its last container (cleanup, no supervisor running).
      await sup.stop();
      const cleaned = await runCli(['cleanup'], { cwd: dir, env });
      expect(cleaned.code, cleaned.stderr).toBe(0);
      await expect(
        docker.getNetwork(repoNetworkName(repo.repoId)).inspect(),
      ).rejects.toMatchObject({ statusCode: 404 });
    });
  },
);
