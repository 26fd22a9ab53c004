import { createServer, type Server } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, testEnv } from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function repo(): string {
  const r = tempRepo();
  cleanups.push(r.cleanup);
  return r.dir;
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('start fails clearly, never silently', () => {
  it('an unreachable Redis: start fails with the reason and a hint instead of waiting for ever', async () => {
    const dir = repo();
    const env = testEnv({ REDIS_URL: `redis://127.0.0.1:${await deadPort()}` });
    for (const args of [['start'], ['start', '--detach']]) {
      const r = await runCli([...args, '--no-dashboard'], {
        cwd: dir,
        env,
        timeoutMs: 90_000,
      });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(
        /error: (the supervisor exited during start[\s\S]*)?Redis at redis:\/\/127\.0\.0\.1:\d+ did not answer within 15 s \(connect ECONNREFUSED/,
      );
      expect(r.stderr).toMatch(/--wait-redis/);
    }
  });

  it('the losers of concurrent starts say which supervisor is already running', async () => {
    const dir = repo();
    const env = testEnv();
    cleanups.push(() => runCli(['stop'], { cwd: dir, env }));
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        runCli(['start', '--detach', '--no-dashboard'], { cwd: dir, env }),
      ),
    );
    const won = results.filter((r) => r.code === 0);
    const lost = results.filter((r) => r.code !== 0);
    expect(won).toHaveLength(1);
    const pid = /supervisor running \(pid (\d+)\)/.exec(won[0]!.stdout)?.[1];
    expect(pid).toBeDefined();
    for (const r of lost) {
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `error: a supervisor is already running for this repository \\(pid ${pid}\\)`,
        ),
      );
      expect(r.stderr).not.toMatch(/exited during start/);
    }
  });

  it('a taken dashboard port is an error naming it', async () => {
    const dir = repo();
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => blocker.close(() => r())));
    const port = (blocker.address() as { port: number }).port;
    const env = testEnv();
    const r = await runCli(['start', '--dashboard-port', String(port)], {
      cwd: dir,
      env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `error: the dashboard port 127\\.0\\.0\\.1:${port} is taken by another program`,
      ),
    );
    expect(r.stderr).toMatch(/hint: .*--dashboard-port/);
  });

  it('configuration errors are always the friendly list, never a validator dump', async () => {
    const dir = repo();
    // The file's values must count: no environment overrides for them.
    const {
      SUPERVISOR_LOCK_DURATION: _l,
      SUPERVISOR_HEARTBEAT: _h,
      ...env
    } = testEnv();
    for (const [cfg, want] of [
      [
        { lease: { lockDuration: 0 } },
        /lease\.lockDuration: must be at least 200 ms/,
      ],
      [
        { lease: { progressTimeout: '0s' } },
        /lease\.progressTimeout: must be at least 100 ms/,
      ],
      [{ heartbeat: 0 }, /heartbeat: must be at least 50 ms/],
      [{ logs: { keep: 'soon' } }, /logs\.keep: not a duration: "soon"/],
    ] as const) {
      writeFileSync(join(dir, 'supervisor.config.json'), JSON.stringify(cfg));
      const r = await runCli(['start', '--no-dashboard'], {
        cwd: dir,
        env,
      });
      expect(r.code, JSON.stringify(cfg)).toBe(1);
      expect(r.stderr).toMatch(/^error: invalid configuration:\n/);
      expect(r.stderr).toMatch(want);
      expect(r.stderr).not.toMatch(/"code":|too_small|\[\s*\{/);
    }
  });
});
