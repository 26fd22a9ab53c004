import { describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
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
import { tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();
const FAKE = join(ROOT, 'test/fixtures/fake-provider-cli.mjs');

async function setup(extra: Record<string, string> = {}) {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const dir = tempDir('sup-pre-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  const state = join(dir, 'state');
  mkdirSync(bin);
  mkdirSync(state);
  chmodSync(FAKE, 0o755);
  const env = testEnv({
    PATH: `${bin}:${process.env.PATH}`,
    FAKE_STATE_DIR: state,
    SUPERVISOR_AGENT: 'claude',
    SUPERVISOR_ATTEMPTS: '1',
    ...extra,
  });
  delete env.SUPERVISOR_AGENT_COMMAND;
  const install = () => symlinkSync(FAKE, join(bin, 'claude'));
  const uninstall = () => unlinkSync(join(bin, 'claude'));
  return { dir: repo.dir, env, install, uninstall };
}

async function start(dir: string, env: Record<string, string>, args: string[]) {
  const sup = await startSupervisor(dir, env, [...args, '--no-dashboard']);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

describe('preflight: the agent program must be there', () => {
  it('start refuses (in the foreground and with --detach) with the reason and a hint', async () => {
    const { dir, env } = await setup();
    for (const args of [
      ['--agents', '1'],
      ['--agents', '1', '--detach'],
    ]) {
      const r = await runCli(['start', ...args, '--no-dashboard'], {
        cwd: dir,
        env,
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        'error: the agent program "claude" is not installed on this machine (not found on PATH)',
      );
      expect(r.stderr).toMatch(/hint: install Claude Code \(npm install -g/);
    }
  });

  it('scale refuses when the running supervisor’s program went away; a run that hits exit 127 blocks its slot and loses nothing', async () => {
    const { dir, env, install, uninstall } = await setup();
    install();
    await start(dir, env, ['--agents', '1']);
    // Gone after the runner checked it at its start: only a run can find out.
    await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents[0]?.state ===
        'idle',
      { what: 'the runner idle' },
    );
    uninstall();
    const r = await runCli(['scale', '2'], { cwd: dir, env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the agent program "claude" is not installed');

    // The running slot finds out on its next job: exit 127, the job goes back, the slot blocks.
    await runCli(['issue', 'add', 'Needs claude'], { cwd: dir, env });
    const blocked = await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.find(
          (a: any) => a.state === 'blocked',
        ),
      { what: 'the slot blocked' },
    );
    expect(blocked.lastError).toMatch(
      /agent program "claude" is not installed/,
    );
    const [issue] = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
    expect(issue.status).toBe('queued');
    // Installed again: the slot takes jobs by itself; the one attempt was never spent.
    install();
    await waitFor(
      async () =>
        (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env }))[0]
          .status === 'done',
      { timeoutMs: 60_000, what: 'the issue done once claude is back' },
    );
    const shown = await cliJson<any>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(shown.runs.map((r: any) => r.outcome)).toEqual([
      'released',
      'succeeded',
    ]);
  });
});

describe("the running supervisor's maximum", () => {
  it('scale and status use the maximum the supervisor was started with', async () => {
    const { dir, env, install } = await setup();
    install();
    await start(dir, env, ['--agents', '1', '--max-agents', '8']);
    // This shell's own default would be 1 (100 GiB per agent), not the running 8.
    const shell = { ...env, SUPERVISOR_MEMORY_PER_AGENT: '100g' };
    delete (shell as Record<string, string>).SUPERVISOR_MAX_AGENTS;
    const ok = await runCli(['scale', '4', '--no-wait'], {
      cwd: dir,
      env: shell,
    });
    expect(ok.code).toBe(0);
    const status = await cliJson<any>(['status'], { cwd: dir, env: shell });
    expect(status.platform.maxAgents).toBe(8);
    const over = await runCli(['scale', '9', '--no-wait'], {
      cwd: dir,
      env: shell,
    });
    expect(over.code).toBe(2);
    expect(over.stderr).toContain(
      'above the maximum of 8 the running supervisor was started with',
    );
    expect(over.stderr).toMatch(/hint: .*supervisor start --max-agents 9/);
  });
});
