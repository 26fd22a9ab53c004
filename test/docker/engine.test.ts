import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { DockerodeEngine } from '../../supervisor/runtimes/docker/engine.js';
import { useCleanups } from '../helpers/cleanup.js';
import { runCli } from '../helpers/cli.js';
import { describeDocker, dockerRepo } from './helpers.js';

const cleanups = useCleanups();
const labels = {
  'dev.agent-supervisor.project': 'agent-supervisor',
  'dev.agent-supervisor.role': 'engine-test',
  'dev.agent-supervisor.repo': `t${process.pid}`,
};

describeDocker('Docker engine interface (against the real engine)', () => {
  it('runs, lists by label, execs, reports exits and removes containers', async () => {
    const engine = new DockerodeEngine();
    cleanups.push(async () => {
      for (const c of await engine.list(labels)) await engine.remove(c.id);
    });
    const spec = {
      image: 'redis:7',
      labels,
      env: ['PROBE=1'],
      user: '999:999',
      mounts: [],
      memoryBytes: 64 * 1024 * 1024,
      nanoCpus: 0.5e9,
      pidsLimit: 64,
      network: 'bridge',
      extraHosts: [],
      stopTimeoutSeconds: 5,
      healthcheck: {
        test: ['redis-cli', 'ping'],
        intervalMs: 500,
        timeoutMs: 2000,
        startPeriodMs: 5000,
        retries: 3,
      },
    };
    const id = await engine.run({
      ...spec,
      name: `engine-test-${process.pid}`,
    });
    const listed = await engine.list(labels);
    expect(listed.map((c) => c.id)).toEqual([id]);
    expect(listed[0]!.state).toBe('running');
    const exec = await engine.exec(id, [
      'sh',
      '-c',
      'id -u; echo $PROBE; echo oops >&2; exit 4',
    ]);
    expect(exec.exitCode).toBe(4);
    expect(exec.output.split('\n').sort()).toEqual(['', '1', '999', 'oops']);
    await expect
      .poll(async () => (await engine.list(labels))[0]?.health, {
        timeout: 15_000,
      })
      .toBe('healthy');
    await engine.stop(id, 5);
    const end = await engine.inspect(id);
    expect(end).toMatchObject({
      running: false,
      oomKilled: false,
      user: '999:999',
    });
    expect(await engine.tail(id, 50)).toMatch(/Ready to accept connections/);
    await engine.remove(id);
    expect(await engine.inspect(id)).toBeUndefined();
    expect(await engine.list(labels)).toEqual([]);
  });

  it('refuses to start clearly: no engine, image missing, memory above the machine', async () => {
    const repo = await dockerRepo();
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    const start = (extra: Record<string, string>) =>
      runCli(['start', '--agents', '1', '--no-dashboard'], {
        cwd: dir,
        env: { ...env, ...extra },
        timeoutMs: 30_000,
      });

    const down = await start({
      DOCKER_HOST: `unix://${join(dir, 'no-such-docker.sock')}`,
    });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(
      /cannot use the Docker runtime: the Docker engine at unix:\/\/.*no-such-docker\.sock is not running/,
    );
    expect(down.stderr).toMatch(/--runtime process/);

    const missing = await start({
      SUPERVISOR_DOCKER_IMAGE: 'agent-supervisor-runner:no-such-tag',
    });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /the runner image agent-supervisor-runner:no-such-tag does not exist/,
    );
    expect(missing.stderr).toMatch(/supervisor image build/);

    // An image whose runner would run its agent as root (no agent-user label): refused.
    const older = await start({ SUPERVISOR_DOCKER_IMAGE: 'redis:7' });
    expect(older.code).toBe(1);
    expect(older.stderr).toMatch(
      /the runner image redis:7 was built by an older agent-supervisor: its runner cannot start the agent under a uid of its own/,
    );

    const huge = await start({ SUPERVISOR_MEMORY_PER_AGENT: '100000g' });
    expect(huge.code).toBe(1);
    expect(huge.stderr).toMatch(
      /memoryPerAgent is 100000\.0 GiB, above the .* GiB the Docker engine's machine has/,
    );

    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({
        runtime: 'docker',
        docker: { network: 'no-such-network' },
      }),
    );
    const net = await start({});
    expect(net.code).toBe(1);
    expect(net.stderr).toMatch(
      /the Docker network "no-such-network" does not exist/,
    );
  });
});
