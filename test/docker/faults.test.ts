import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { cliJson, runCli, startSupervisor, waitFor } from '../helpers/cli.js';
import { git } from '../helpers/repo.js';
import {
  RUNNER_IMAGE,
  containers,
  describeDocker,
  docker,
  dockerRepo,
  ensureRunnerImage,
  IMAGE_BUILD_TIMEOUT_MS,
} from './helpers.js';

const cleanups = useCleanups();
const CRASH_IMAGE = 'agent-supervisor-test-crash:latest';

type Run = {
  attempt: number;
  outcome: string;
  agent: string;
  error: string | null;
};
type IssueJson = {
  id: number;
  status: string;
  commit: string | null;
  error?: string;
  runs: Run[];
};

const show = (dir: string, env: Record<string, string>, id: number) =>
  cliJson<IssueJson>(['issue', 'show', String(id)], { cwd: dir, env });
const status = (dir: string, env: Record<string, string>) =>
  cliJson<any>(['status'], { cwd: dir, env });

async function finished(
  dir: string,
  env: Record<string, string>,
  id: number,
  timeoutMs = 60_000,
): Promise<IssueJson> {
  return waitFor(
    async () => {
      const i = await show(dir, env, id);
      return i.status === 'done' || i.status === 'failed' ? i : false;
    },
    { timeoutMs, what: `issue #${id} finished` },
  );
}

describeDocker('Docker runtime: faults', () => {
  beforeAll(async () => {
    await ensureRunnerImage();
    // A runner image whose entry point fails at once: the crash-loop case.
    execFileSync('docker', ['build', '-q', '-t', CRASH_IMAGE, '-'], {
      input: `FROM ${RUNNER_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "echo 'runner: cannot start (test image)' >&2; exit 3"]\n`,
      stdio: ['pipe', 'ignore', 'inherit'],
    });
  }, IMAGE_BUILD_TIMEOUT_MS + 60_000);

  afterAll(async () => {
    await docker
      .getImage(CRASH_IMAGE)
      .remove()
      .catch(() => undefined);
  });

  it('a container killed mid-job is restarted and its issue re-claimed and finished, recorded once; a container removed by hand is recreated', async () => {
    const repo = await dockerRepo();
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    await runCli(['issue', 'add', 'Long job', '--body', 'sleep: 4000'], {
      cwd: dir,
      env,
    });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const before = await waitFor(
      async () =>
        (await status(dir, env)).agents.find(
          (a: any) => a.state === 'working' && a.issue?.id === 1,
        ),
      { timeoutMs: 30_000, what: 'agent working on #1' },
    );
    await docker.getContainer(before.containerId).kill({ signal: 'SIGKILL' });

    const issue = await finished(dir, env, 1);
    expect(issue.status).toBe('done');
    expect(issue.runs.filter((r) => r.outcome === 'succeeded')).toHaveLength(1);
    expect(issue.runs[0]!.outcome).toMatch(/released|lost/);
    expect(git(dir, 'rev-parse', 'issue/1')).toBe(issue.commit);
    const after = (await status(dir, env)).agents[0];
    expect(after.containerId).not.toBe(before.containerId);
    expect(after.restarts).toBe(1);
    // (A successful restart clears lastError; the supervisor's log keeps the reason.)
    expect(sup.output).toMatch(
      /agent-001: container killed \(SIGKILL, exit code 137\); restarting/,
    );

    // Removed by hand (docker rm -f): the reconciler starts a new container for the slot.
    const idle = await waitFor(
      async () =>
        (await status(dir, env)).agents.find((a: any) => a.state === 'idle'),
      { what: 'agent idle' },
    );
    await docker.getContainer(idle.containerId).remove({ force: true });
    const recreated = await waitFor(
      async () =>
        (await status(dir, env)).agents.find(
          (a: any) => a.state === 'idle' && a.containerId !== idle.containerId,
        ),
      { timeoutMs: 30_000, what: 'a new container for agent-001' },
    );
    expect(recreated.restarts).toBe(2);
    expect(sup.output).toMatch(/agent-001: container removed; restarting/);
    expect(await containers(repo.repoId, { running: true })).toHaveLength(1);
    await runCli(['issue', 'add', 'After the removal'], { cwd: dir, env });
    expect((await finished(dir, env, 2)).status).toBe('done');
  });

  it('a supervisor killed with -9 leaves its containers running, and the next one adopts them', async () => {
    const repo = await dockerRepo();
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    const first = await startSupervisor(dir, env, [
      '--agents',
      '2',
      '--no-dashboard',
    ]);
    const idle = (s: any) =>
      s.agents.length === 2 && s.agents.every((a: any) => a.state === 'idle');
    const before = await waitFor(
      async () => {
        const s = await status(dir, env);
        return idle(s) ? s.agents.map((a: any) => a.containerId).sort() : false;
      },
      { timeoutMs: 30_000, what: 'two idle agents' },
    );
    first.child.kill('SIGKILL');
    await first.exited;
    await runCli(['issue', 'add', 'While nobody watches'], { cwd: dir, env });
    expect(
      (await containers(repo.repoId, { running: true }))
        .map((c) => c.Id)
        .sort(),
    ).toEqual(before);
    const second = await startSupervisor(dir, env, ['--no-dashboard']);
    cleanups.push(async () => void (await second.stop()));
    expect((await finished(dir, env, 1)).status).toBe('done');
    const s = await waitFor(
      async () => {
        const st = await status(dir, env);
        return idle(st) ? st : false;
      },
      { what: 'adopted agents idle' },
    );
    expect(s.agents.map((a: any) => a.containerId).sort()).toEqual(before);
    expect(s.agents.map((a: any) => a.restarts)).toEqual([0, 0]);
    expect(second.output).toMatch(
      /adopted a runner that outlived the previous supervisor/,
    );
  });

  it('a container that exits at once is quarantined after a crash loop and a repair, not restarted forever; cleanup removes it', async () => {
    const repo = await dockerRepo({
      config: { docker: { image: CRASH_IMAGE } },
    });
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const agent = await waitFor(
      async () =>
        (await status(dir, env)).agents.find(
          (a: any) =>
            a.state === 'quarantined' && /crash loop/.test(a.lastError ?? ''),
        ),
      {
        timeoutMs: 120_000,
        what: 'the slot quarantined after a crash loop',
      },
    );
    expect(agent.lastError).toMatch(
      /container exited with code 3: runner: cannot start \(test image\)/,
    );
    const restarts = agent.restarts;
    // `scale` with the same count revives the quarantined slot (issue 12: no `scale 0` needed):
    // it gets a new round of restarts, and `scale` says it keeps crashing instead of waiting
    // forever (the scaler's give-up rule itself: test/unit/scaler).
    const scaled = await runCli(['scale', '1'], {
      cwd: dir,
      env,
      timeoutMs: 150_000,
    });
    expect(scaled.code).toBe(1);
    expect(scaled.stderr).toMatch(/keep crashing/);
    expect((await status(dir, env)).agents[0].restarts).toBeGreaterThan(
      restarts,
    );
    expect(await sup.stop()).toBe(0);
    // The last exited container stays for `docker logs` until cleanup removes it (by label).
    expect((await containers(repo.repoId)).length).toBeGreaterThan(0);
    const cleaned = await cliJson<any>(['cleanup'], { cwd: dir, env });
    expect(cleaned.containersRemoved.length).toBeGreaterThan(0);
    expect(await containers(repo.repoId)).toHaveLength(0);
  });

  it('an agent that runs out of memory fails its attempt with "out of memory", and the issue is retried per policy', async () => {
    const repo = await dockerRepo({
      config: { memoryPerAgent: '256m', attempts: 2 },
    });
    cleanups.push(repo.cleanup);
    const { dir, env } = repo;
    await runCli(['issue', 'add', 'hog memory'], { cwd: dir, env });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const issue = await finished(dir, env, 1);
    expect(issue.status).toBe('failed');
    expect(issue.error).toMatch(
      /out of memory \(the container's memory limit is 256 MiB\)/,
    );
    expect(issue.runs.map((r) => r.outcome)).toEqual(['failed', 'failed']);
    for (const r of issue.runs) expect(r.error).toMatch(/out of memory/);
    // The kernel killed the agent, not the runner: the container lives on and takes the next issue.
    const [c] = await containers(repo.repoId, { running: true });
    expect((await docker.getContainer(c!.Id).inspect()).HostConfig.Memory).toBe(
      256 * 1024 * 1024,
    );
    await runCli(['issue', 'add', 'Fine after that'], { cwd: dir, env });
    expect((await finished(dir, env, 2)).status).toBe('done');
    expect((await status(dir, env)).agents[0].restarts).toBe(0);

    // Engines that set Docker's OOMKilled flag for an agent child keep it set for the
    // container's run: a plain `docker kill` later is still not "out of memory" (attribution
    // comes from the engine's events at the end of this run, not the flag).
    await docker.getContainer(c!.Id).kill();
    await waitFor(() => /container ended.*exit code 137/.test(sup.output), {
      timeoutMs: 30_000,
      what: 'the container end noticed',
    });
    expect(sup.output).toMatch(
      /container ended.*container killed \(SIGKILL, exit code 137\)/,
    );
    expect(sup.output).not.toMatch(/container ended.*out of memory/);
  }, 240_000);
});
