/**
 * docker/docker-compose.yml, run with a real Compose (Debian's docker-compose 1.x or the docker
 * compose plugin): its runner is root in the container with the Docker runtime's five
 * capabilities and runs its agent under AGENT_UID, so the container attacker of
 * test/security/agent-probe.ts, as the agent, reads neither the runner's configuration nor its
 * log and gets NOAUTH from the queue's Redis. The compose file's external network app_local is
 * replaced by a network of this test's own (an override file), so the shared infrastructure is
 * not touched.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { RUNNER_CAPABILITIES } from '../../supervisor/runtimes/docker.js';
import { RUNNER_LOG_TARGET } from '../../supervisor/runtimes/docker/mounts.js';
import { useCleanups } from '../helpers/cleanup.js';
import { composeCommand } from '../helpers/compose.js';
import { ROOT, runCli, startSupervisor } from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/repo.js';
import {
  commitProbe,
  expectIsolated,
  runProbeIssue,
} from '../security/agent-probe.js';
import {
  IMAGE_BUILD_TIMEOUT_MS,
  RUNNER_IMAGE,
  containers,
  describeDocker,
  docker,
  dockerRepo,
  ensureRunnerImage,
} from './helpers.js';

const cleanups = useCleanups();
const PASSWORD = `pw${randomBytes(12).toString('hex')}`;
const NETWORK = `sup-compose-${randomBytes(4).toString('hex')}`;

let redis: PrivateRedis;
let gateway = '';

describeDocker(
  'docker/docker-compose.yml: the agent apart from its runner',
  () => {
    beforeAll(async () => {
      await ensureRunnerImage();
      execFileSync('docker', ['network', 'create', NETWORK], {
        stdio: 'ignore',
      });
      cleanups.push(() => {
        spawnSync('docker', ['network', 'rm', NETWORK], { stdio: 'ignore' });
      });
      gateway = execFileSync(
        'docker',
        [
          'network',
          'inspect',
          '-f',
          '{{(index .IPAM.Config 0).Gateway}}',
          NETWORK,
        ],
        { encoding: 'utf8' },
      ).trim();
      // The containers reach it at their network's gateway (this host), with a password.
      redis = await PrivateRedis.create('none', {
        password: PASSWORD,
        bind: '0.0.0.0',
      });
      await redis.start();
    }, IMAGE_BUILD_TIMEOUT_MS + 60_000);

    afterAll(() => redis?.stop());

    it('runs its runner as root with five capabilities and its agent under AGENT_UID: the probe finds nothing of the runner and gets NOAUTH', async () => {
      // The supervisor runs only to feed and record (`start --agents 0`, the process runtime):
      // the Docker runtime would take these containers, found by the same labels, for its own.
      const repo = await dockerRepo({ config: { runtime: 'process' } });
      cleanups.push(repo.cleanup);
      const { dir } = repo;
      commitProbe(dir, { host: gateway, port: redis.port });
      const env: Record<string, string> = {
        ...repo.env,
        REDIS_URL: redis.url,
        SUPERVISOR_AGENT_COMMAND: 'sh probe.sh',
      };
      delete env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
      // As the user does: `eval "$(supervisor compose-config …)"` (--json redacts the password).
      const exported = await runCli(
        [
          'compose-config',
          '--agents',
          '3',
          '--redis-url',
          `redis://:${PASSWORD}@${gateway}:${redis.port}`,
        ],
        { cwd: dir, env },
      );
      expect(exported.code, exported.stderr).toBe(0);
      const vars = Object.fromEntries(
        exported.stdout
          .trim()
          .split('\n')
          .map((l) => {
            const m = /^export ([A-Z0-9_]+)='(.*)'$/.exec(l);
            expect(m, l).not.toBeNull();
            return [m![1]!, m![2]!.replaceAll(`'\\''`, `'`)];
          }),
      );
      expect(JSON.parse(vars.AGENT_001_CONFIG!).agentUser).toEqual({
        uid: Number(vars.AGENT_UID),
        gid: Number(vars.AGENT_GID),
      });
      const override = join(tempDir('sup-compose-'), 'network.yml');
      writeFileSync(
        override,
        `networks:\n  app_local:\n    name: ${NETWORK}\n    external: true\n`,
      );
      const project = `sup${repo.repoId.slice(0, 12)}`;
      const [cmd, ...pre] = composeCommand() ?? ['docker-compose'];
      const compose = (args: string[]) =>
        execFileSync(
          cmd!,
          [
            ...pre,
            '-p',
            project,
            '-f',
            join(ROOT, 'docker/docker-compose.yml'),
            '-f',
            override,
            ...args,
          ],
          {
            cwd: ROOT,
            env: { ...process.env, ...vars, RUNNER_IMAGE },
            encoding: 'utf8',
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
      cleanups.push(() => {
        compose(['down', '--timeout', '5']);
      });
      compose(['up', '-d', '--no-build', 'agent-001']);

      const sup = await startSupervisor(dir, env, [
        '--agents',
        '0',
        '--no-dashboard',
      ]);
      cleanups.push(async () => void (await sup.stop()));
      const { report, dump } = await runProbeIssue(dir, env, {
        timeoutMs: 90_000,
        diagnose: async () => `${sup.output}\n${compose(['logs'])}`,
      });
      const lines = expectIsolated(report, dump, [PASSWORD]);
      expect(lines.find((l) => l.startsWith('agent-uid '))).toBe(
        `agent-uid ${vars.AGENT_UID}`,
      );
      expect(lines).toContain(`mounted-file-refused ${RUNNER_LOG_TARGET}`);
      const runnerLog = readFileSync(
        join(dir, '.supervisor/logs/agent-001.log'),
        'utf8',
      );
      expect(runnerLog).toMatch(/\[runner\] ready/);
      expect(runnerLog).not.toContain('forged-by-agent');

      const [c] = await containers(repo.repoId, { running: true });
      const info = await docker.getContainer(c!.Id).inspect();
      expect(info.Config.User).toBe('0:0');
      expect(
        (info.HostConfig.CapAdd ?? [])
          .map((x: string) => x.replace(/^CAP_/, ''))
          .sort(),
      ).toEqual([...RUNNER_CAPABILITIES].sort());
      expect(info.HostConfig.CapDrop).toEqual(['ALL']);
    }, 300_000);
  },
);
