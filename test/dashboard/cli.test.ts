import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import {
  CLI,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { dashboardUrlOf, http } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function repo() {
  const r = tempRepo();
  cleanups.push(r.cleanup);
  return r.dir;
}

describe('dashboard from the CLI', () => {
  it('supervisor start prints the dashboard URL and records it for status', async () => {
    const dir = repo();
    const env = testEnv();
    const sup: RunningSupervisor = await startSupervisor(dir, env, [
      '--agents',
      '0',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const url = await waitFor(() => dashboardUrlOf(dir), {
      what: 'dashboard URL in the pid file',
    });
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(sup.output).toContain(`dashboard: ${url}`);
    const status = JSON.parse(
      (await runCli(['status', '--json'], { cwd: dir, env })).stdout,
    );
    expect(status.supervisor.dashboardUrl).toBe(url);
    const api = await http('GET', `${url}api/status`);
    expect(api.json().supervisor.running).toBe(true);
    expect(await sup.stop()).toBe(0);
  });

  it('refuses a non-loopback dashboard without a token before starting anything', async () => {
    const dir = repo();
    const env = testEnv();
    const r = await runCli(
      ['start', '--agents', '1', '--dashboard-host', '0.0.0.0'],
      { cwd: dir, env },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: the dashboard would listen on 0\.0\.0\.0/);
    expect(r.stderr).toMatch(/hint: set SUPERVISOR_DASHBOARD_TOKEN/);
    expect(r.stderr).not.toMatch(/runner started/);
    const alone = await runCli(['dashboard', '--host', '0.0.0.0'], {
      cwd: dir,
      env,
    });
    expect(alone.code).toBe(1);
    expect(alone.stderr).toMatch(/hint: set SUPERVISOR_DASHBOARD_TOKEN/);
  });

  it('supervisor dashboard serves a repository alone and scales the running supervisor', async () => {
    const dir = repo();
    const env = testEnv();
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '0',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const child = spawn(process.execPath, [CLI, 'dashboard', '--port', '0'], {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) =>
      child.once('exit', (code) => r(code)),
    );
    cleanups.push(async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    });
    const url = await waitFor(
      () => /dashboard: (http:\/\/\S+)/.exec(out)?.[1],
      { what: `dashboard URL in: ${out}` },
    );
    const session = (await http('GET', `${url}api/session`)).json();
    expect(session.inProcess).toBe(false);
    const scaled = await http('POST', `${url}api/scale`, {
      body: { count: 1 },
      headers: {
        origin: url.replace(/\/$/, ''),
        'x-supervisor-csrf': session.csrfToken,
      },
    });
    expect(scaled.status).toBe(200);
    await waitFor(
      async () =>
        (await http('GET', `${url}api/status`))
          .json()
          .agents.some((a: any) => a.state === 'idle'),
      { what: 'an idle agent', timeoutMs: 30_000 },
    );
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});
