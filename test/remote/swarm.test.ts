/**
 * `--runtime swarm` on a single-node swarm on this machine: the service, its tasks as slots,
 * issues to done through remote-mode runners, logs, a rolling update when the image changes,
 * `scale 0` and `cleanup`. The tasks are hardened as the Docker runtime's containers are (issue
 * 13): the runner is root with a few capabilities, its agent runs under a uid of its own, and
 * the attacker of test/security/agent-probe.ts, run as the agent of a task, can read neither the
 * runner's configuration nor the git token and gets NOAUTH from the queue's Redis. The swarm is initialised here when it is not (and left afterwards
 * only then). Needs the Docker engine and the runner image (test/docker/setup-engine.sh);
 * fails, never skips, without them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { execFileSync } from 'node:child_process';
import {
  cpSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { checkSwarm, serviceName } from '../../supervisor/runtimes/swarm.js';
import { RUNNER_CAPABILITIES } from '../../supervisor/runtimes/docker.js';
import { resolveRepo } from '../../supervisor/repo.js';
import { SupervisorError } from '../../supervisor/errors.js';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import {
  expectIsolated,
  probeScript,
  runProbeIssue,
} from '../security/agent-probe.js';
import {
  IMAGE_BUILD_TIMEOUT_MS,
  RUNNER_IMAGE,
  ensureRunnerImage,
} from '../docker/helpers.js';

// The runner image the Docker tests build (on a fresh machine it does not exist before them).
const BASE_IMAGE = RUNNER_IMAGE;
const docker = new Docker();
const id = Math.random().toString(36).slice(2, 8);
const TAG = `agent-supervisor-runner:swarm-test-${id}`;
const TAG_B = `${TAG}-b`;
let createdSwarm = false;
let swarmWasInactive = false;
const cleanups: Array<() => unknown> = [];
const PASSWORD = `pw${Math.random().toString(36).slice(2, 14)}`;
const GIT_TOKEN = 'swarm-git-token-0123456789';
/** CapEff of root with exactly RUNNER_CAPABILITIES: CHOWN 0, DAC_OVERRIDE 1, KILL 5, SETGID 6, SETUID 7. */
const RUNNER_CAP_EFF = (1n | (1n << 1n) | (1n << 5n) | (1n << 6n) | (1n << 7n))
  .toString(16)
  .padStart(16, '0');

/**
 * One swarm test at a time on this engine: a concurrent run (another checkout's `npm test`)
 * would otherwise leave the swarm it initialised under this one's service.
 */
const LOCK = '/tmp/agent-supervisor-swarm-test.lock';
async function lockSwarm(): Promise<() => void> {
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch {
      let holder = 0;
      try {
        holder = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
        process.kill(holder, 0);
      } catch {
        if (holder) rmSync(LOCK, { recursive: true, force: true }); // its holder is gone
      }
      if (Date.now() > deadline)
        throw new Error(
          `another swarm test (pid ${holder}) holds ${LOCK} for over 5 minutes`,
        );
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function sh(cmd: string, args: string[], cwd?: string): string {
  return execFileSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** The runner image with this build's dist/ (the base may predate it). */
function buildImage(tag: string, marker: string): string {
  const ctxDir = tempDir('sup-image-');
  cpSync(join(ROOT, 'dist'), join(ctxDir, 'dist'), { recursive: true });
  writeFileSync(
    join(ctxDir, 'Dockerfile'),
    `FROM ${BASE_IMAGE}\nCOPY dist /app/dist\nLABEL dev.agent-supervisor.test=${marker}\n`,
  );
  sh('docker', ['build', '-q', '-t', tag, ctxDir]);
  return sh('docker', ['image', 'inspect', '-f', '{{.Id}}', tag]);
}

beforeAll(async () => {
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(
      `the swarm test needs the Docker engine (test/docker/setup-engine.sh starts one): ${(err as Error).message}`,
    );
  }
  const unlock = await lockSwarm();
  cleanups.push(unlock);
  const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string } };
  swarmWasInactive = info.Swarm?.LocalNodeState !== 'active';
  // Built FROM the runner image: make sure it exists and is current (a fresh machine has none,
  // and the engine would then try to pull it from a registry this machine cannot reach).
  await ensureRunnerImage();
  buildImage(TAG, 'a');
  cleanups.push(() => sh('docker', ['image', 'rm', '-f', TAG, TAG_B]));
}, IMAGE_BUILD_TIMEOUT_MS + 120_000);

afterAll(async () => {
  const [unlock, ...rest] = cleanups;
  for (const c of rest.reverse()) {
    try {
      await c();
    } catch {
      /* best effort */
    }
  }
  try {
    if (createdSwarm) sh('docker', ['swarm', 'leave', '--force']);
  } finally {
    unlock?.();
  }
}, 120_000);

async function ensureSwarm(): Promise<void> {
  const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string } };
  if (info.Swarm?.LocalNodeState === 'active') return;
  sh('docker', ['swarm', 'init', '--advertise-addr', '127.0.0.1']);
  createdSwarm = true;
}

describe('--runtime swarm', () => {
  it('swarm not initialised: a clear error with the command to run', async () => {
    const inactive = {
      info: async () => ({ Swarm: { LocalNodeState: 'inactive' } }),
    } as unknown as Docker;
    const err = await checkSwarm(inactive).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SupervisorError);
    expect((err as SupervisorError).message).toMatch(/not in swarm mode/);
    expect((err as SupervisorError).hint).toMatch(
      /docker swarm init --advertise-addr/,
    );
    const worker = {
      info: async () => ({
        Swarm: { LocalNodeState: 'active', ControlAvailable: false },
      }),
    } as unknown as Docker;
    expect(
      ((await checkSwarm(worker).catch((e: unknown) => e)) as Error).message,
    ).toMatch(/swarm worker, not a manager/);
    if (swarmWasInactive) {
      // The real engine, before this test makes it a swarm: `start` refuses and says how.
      const repo = tempRepo();
      cleanups.push(repo.cleanup);
      const r = await runCli(
        ['start', '--runtime', 'swarm', '--agents', '1', '--no-dashboard'],
        {
          cwd: repo.dir,
          env: testEnv({ REDIS_URL: 'redis://127.0.0.1:6379' }),
        },
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/not in swarm mode/);
      expect(r.stderr).toMatch(/docker swarm init --advertise-addr/);
    }
  });

  it('scale N runs a service of remote-mode runners: tasks are slots, issues reach done, logs stream, the image rolls, scale 0 and cleanup remove it', async () => {
    await ensureSwarm();
    // The queue's Redis with a password, as runners in containers require (the tasks share the
    // node's network: they reach its port, and the agent does too).
    const redis = await PrivateRedis.create('none', { password: PASSWORD });
    await redis.start();
    cleanups.push(() => redis.stop());
    const repo = tempRepo({
      files: {
        'probe.sh': probeScript({ host: '127.0.0.1', port: redis.port }),
      },
    });
    cleanups.push(repo.cleanup);
    const paths = await resolveRepo(repo.dir);
    const name = serviceName(paths.repoId);
    writeFileSync(
      join(repo.dir, 'supervisor.config.json'),
      JSON.stringify({ docker: { healthInterval: '1s' } }),
    );
    cleanups.push(() => sh('docker', ['service', 'rm', name]));
    const env = testEnv({
      REDIS_URL: redis.url,
      SUPERVISOR_RUNTIME: 'swarm',
      SUPERVISOR_DOCKER_IMAGE: TAG,
      SUPERVISOR_AGENT_COMMAND:
        'if [ "$ISSUE_TITLE" = Probe ]; then sh probe.sh; else echo "$AGENT_ID resolved $ISSUE_ID" > "issue-$ISSUE_ID.txt"; fi',
      SUPERVISOR_MEMORY_PER_AGENT: '512m',
      SUPERVISOR_STOP_GRACE: '5000',
      SUPERVISOR_GIT_TOKEN: GIT_TOKEN,
    });
    delete env.SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS;
    let sup: RunningSupervisor | undefined = await startSupervisor(
      repo.dir,
      env,
      ['--agents', '0'],
    );
    cleanups.push(() => sup?.stop());

    const scaled = await runCli(['scale', '2', '--timeout', '90'], {
      cwd: repo.dir,
      env,
      timeoutMs: 100_000,
    });
    expect(scaled.code, scaled.stderr + scaled.stdout).toBe(0);
    const svc = (await docker.getService(name).inspect()) as any;
    expect(svc.Spec.Labels).toMatchObject({
      'dev.agent-supervisor.repo': paths.repoId,
      'dev.agent-supervisor.role': 'swarm-runners',
    });
    expect(svc.Spec.Mode.Replicated.Replicas).toBe(2);
    expect(svc.Spec.TaskTemplate.Resources.Limits.MemoryBytes).toBe(
      512 * 1024 ** 2,
    );
    expect(svc.Spec.TaskTemplate.ContainerSpec.Env).toContain(
      'SUPERVISOR_AGENT_ID=agent-{{.Task.Slot}}',
    );
    expect(svc.Spec.UpdateConfig).toMatchObject({
      Parallelism: 1,
      Order: 'stop-first',
    });
    // The runner's configuration and the git token: secrets only root (the runner) reads.
    expect(
      svc.Spec.TaskTemplate.ContainerSpec.Secrets.map((s: any) => s.File).sort(
        (a: any, b: any) => a.Name.localeCompare(b.Name),
      ),
    ).toEqual([
      { Name: 'git-token', UID: '0', GID: '0', Mode: 0o400 },
      { Name: 'runner-config.json', UID: '0', GID: '0', Mode: 0o400 },
    ]);
    expect(JSON.stringify(svc.Spec)).not.toContain(GIT_TOKEN);
    expect(JSON.stringify(svc.Spec)).not.toContain(PASSWORD);
    // The Docker runtime's hardening, on the task containers themselves.
    const tasks = await waitFor(
      async () => {
        const l = await docker.listContainers({
          filters: JSON.stringify({
            label: [`com.docker.swarm.service.name=${name}`],
            status: ['running'],
          }),
        });
        return l.length === 2 ? l : false;
      },
      { timeoutMs: 60_000, what: 'two running task containers' },
    );
    for (const t of tasks) {
      const c = docker.getContainer(t.Id);
      const info = (await c.inspect()) as any;
      // The runner is root with only the capabilities it needs to run its agent as another uid.
      expect(info.Config.User).toBe('0:0');
      expect(info.HostConfig.CapDrop).toEqual(['ALL']);
      expect(
        (info.HostConfig.CapAdd ?? [])
          .map((x: string) => x.replace(/^CAP_/, ''))
          .sort(),
      ).toEqual([...RUNNER_CAPABILITIES].sort());
      expect(info.Config.Env.join('\n')).not.toContain(PASSWORD);
      expect(info.HostConfig.PidsLimit).toBe(4096);
      expect(info.HostConfig.Memory).toBe(512 * 1024 ** 2);
      expect(info.Mounts.find((m: any) => m.Destination === '/tmp')?.Type).toBe(
        'tmpfs',
      );
      // no_new_privs (HostConfig.SecurityOpt only on engines with API >= 1.46; the image's
      // entrypoint sets it on every engine): what the kernel says about the runner.
      const exec = await c.exec({
        Cmd: [
          'sh',
          '-c',
          'grep -E "^(NoNewPrivs|CapEff)" /proc/1/status; id -u',
        ],
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = await exec.start({});
      const out = await new Promise<string>((resolve) => {
        let buf = '';
        stream.on('data', (d: Buffer) => (buf += d.toString('latin1')));
        stream.on('end', () => resolve(buf));
      });
      expect(out).toMatch(/NoNewPrivs:\s+1/);
      expect(out).toMatch(new RegExp(`CapEff:\\s+${RUNNER_CAP_EFF}\\b`));
    }

    const status = await cliJson(['status'], { cwd: repo.dir, env });
    const agents = status.agents.map((a: any) => [
      a.id,
      a.state,
      Boolean(a.containerId),
      a.external ?? false,
    ]);
    expect(agents).toEqual([
      ['agent-001', 'idle', true, false],
      ['agent-002', 'idle', true, false],
    ]);

    for (let i = 1; i <= 3; i++)
      await runCli(['issue', 'add', `Swarm ${i}`], { cwd: repo.dir, env });
    const list = await waitFor(
      async () => {
        const l = await cliJson<any[]>(['issue', 'list'], {
          cwd: repo.dir,
          env,
        });
        return l.length === 3 && l.every((x) => x.status === 'done')
          ? l
          : false;
      },
      { timeoutMs: 60_000, what: '3 issues done' },
    );
    for (const i of list) {
      expect(['agent-001', 'agent-002']).toContain(i.agent);
      expect(git(repo.dir, 'show', `issue/${i.id}:issue-${i.id}.txt`)).toBe(
        `${i.agent} resolved ${i.id}`,
      );
    }
    expect(
      git(
        join(paths.stateDir, 'results.git'),
        'for-each-ref',
        'refs/supervisor/',
      ),
    ).toBe('');

    // The attacker, as the agent of a task: nothing of the runner's, no credential, no queue.
    const { report, dump } = await runProbeIssue(repo.dir, env, {
      title: 'Probe',
      timeoutMs: 60_000,
      diagnose: async () =>
        (await runCli(['logs', '--lines', '100'], { cwd: repo.dir, env }))
          .stdout,
    });
    const lines = expectIsolated(report, dump, [PASSWORD, GIT_TOKEN]);
    expect(lines).toContain('secret-refused /run/secrets/runner-config.json');
    expect(lines).toContain('secret-refused /run/secrets/git-token');

    const logs = await runCli(['logs', '--lines', '200'], {
      cwd: repo.dir,
      env,
    });
    expect(logs.code, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/^agent-00[12] \| .*ready/m);

    // A new image under the same tag rolls the service, one task at a time.
    const before = (
      await docker.listTasks({
        filters: { service: [name], 'desired-state': ['running'] },
      })
    )
      .map((t: any) => t.ID)
      .sort();
    const imageB = buildImage(TAG_B, 'b');
    sh('docker', ['tag', TAG_B, TAG]);
    await waitFor(
      async () => {
        const s = (await docker.getService(name).inspect()) as any;
        return (
          s.Spec.TaskTemplate.ContainerSpec.Labels[
            'dev.agent-supervisor.image-id'
          ] === imageB && s.UpdateStatus?.State === 'completed'
        );
      },
      { timeoutMs: 90_000, what: 'rolling update completed' },
    );
    const after = (
      await docker.listTasks({
        filters: { service: [name], 'desired-state': ['running'] },
      })
    )
      .map((t: any) => t.ID)
      .sort();
    expect(after).toHaveLength(2);
    expect(after.filter((t: string) => before.includes(t))).toEqual([]);
    const again = await runCli(['scale', '2', '--timeout', '90'], {
      cwd: repo.dir,
      env,
      timeoutMs: 100_000,
    });
    expect(again.code, again.stderr).toBe(0);

    const zero = await runCli(['scale', '0', '--timeout', '60'], {
      cwd: repo.dir,
      env,
      timeoutMs: 70_000,
    });
    expect(zero.code, zero.stderr).toBe(0);
    expect(
      await docker.listServices({ filters: { name: [name] } }),
    ).toHaveLength(0);
    await waitFor(
      async () =>
        (
          await docker.listSecrets({
            filters: { label: [`dev.agent-supervisor.repo=${paths.repoId}`] },
          })
        ).length === 0,
      { timeoutMs: 30_000, what: 'secrets removed' },
    );

    // A supervisor that dies leaves its service; cleanup removes it.
    expect(
      (
        await runCli(['scale', '1', '--timeout', '90'], {
          cwd: repo.dir,
          env,
          timeoutMs: 100_000,
        })
      ).code,
    ).toBe(0);
    sup.child.kill('SIGKILL');
    await sup.exited;
    sup = undefined;
    expect(
      await docker.listServices({ filters: { name: [name] } }),
    ).toHaveLength(1);
    const cleaned = await cliJson(['cleanup'], { cwd: repo.dir, env });
    expect(cleaned.swarmServiceRemoved).toBe(true);
    expect(
      await docker.listServices({ filters: { name: [name] } }),
    ).toHaveLength(0);
  }, 240_000);
});
