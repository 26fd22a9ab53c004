import { describe, expect, it } from 'vitest';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();
const FAKE = join(ROOT, 'test/fixtures/fake-provider-cli.mjs');

describe('per-agent CPU and memory', () => {
  it('a busy-looping agent shows high CPU, a sleeping one does not; both show their memory', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    chmodSync(FAKE, 0o755);
    const env = testEnv({
      SUPERVISOR_AGENT_COMMAND: `node ${FAKE}`,
      FAKE_STATE_DIR: repo.dir,
      FAKE_WORK_MS: '60000',
    });
    const dir = repo.dir;
    for (const t of ['spin: busy', 'rest: sleep'])
      expect((await runCli(['issue', 'add', t], { cwd: dir, env })).code).toBe(
        0,
      );
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '2',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    // Sampled over 300 ms per `status`; on a loaded machine the busy one gets its share of a core.
    const seen = await waitFor(
      async () => {
        const s = await cliJson<any>(['status'], { cwd: dir, env });
        const busy = s.agents.find((a: any) => a.issue?.title === 'spin: busy');
        const idle = s.agents.find(
          (a: any) => a.issue?.title === 'rest: sleep',
        );
        return busy?.resources &&
          idle?.resources &&
          busy.resources.cpuPercent >= 20 &&
          busy.resources.cpuPercent > 5 * Math.max(1, idle.resources.cpuPercent)
          ? { busy: busy.resources, idle: idle.resources }
          : false;
      },
      { timeoutMs: 60_000, what: 'the busy agent using a CPU' },
    );
    for (const r of [seen.busy, seen.idle]) {
      // Runner + shell wrapper + node agent: tens of MiB, far below a GiB.
      expect(r.memoryBytes).toBeGreaterThan(20 * 1024 ** 2);
      expect(r.memoryBytes).toBeLessThan(1024 ** 3);
      expect(r.processes).toBeGreaterThanOrEqual(3);
    }
    expect(seen.idle.cpuPercent).toBeLessThan(20);
  });

  it('a slot claims nothing while the host has less memory available than the budget ("waiting for memory")', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv({ SUPERVISOR_ADMISSION_MEMORY: '64t' });
    const dir = repo.dir;
    await runCli(['issue', 'add', 'Never claimed'], { cwd: dir, env });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const agent = await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.find(
          (a: any) => a.state === 'blocked',
        ),
      { what: 'the slot waiting for memory' },
    );
    expect(agent.lastError).toMatch(
      /^waiting for memory: [\d.]+ GiB available, 65536\.0 GiB needed per agent$/,
    );
    const shown = await runCli(['status'], { cwd: dir, env });
    expect(shown.stdout).toMatch(/agent-001\s+blocked.*waiting for memory/);
    const [issue] = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
    expect(issue.status).toBe('queued');
  });
});
