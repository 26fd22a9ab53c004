import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
import {
  PG_ADMIN,
  REDIS,
  databasesWithPrefix,
  dropDatabasesWithPrefix,
  randomPortBase,
  randomPrefix,
} from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

type Issue = { id: number; status: string; agent: string };
type Run = { logPath: string };

describe('slot state between issues', () => {
  it('flushes the slot Redis DB (never the queue DB), re-syncs .worktreeinclude and removes stray ignored files before each job', async () => {
    const repo = tempRepo({
      files: { '.gitignore': '.env\n*.local\n', 'README.md': '# r\n' },
    });
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    writeFileSync(join(dir, '.worktreeinclude'), '.env\n');
    writeFileSync(join(dir, '.env'), 'SECRET=one\n');
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({
        env: {
          ports: { base: randomPortBase() },
          redis: { resetPerIssue: true },
        },
      }),
    );
    const ns = randomPrefix().slice(0, -1);
    const echo = join(tempDir('sup-echo-'), 'echo');
    const env = testEnv({ AGENT_ECHO_FILE: echo });
    // A key in the queue's DB (0) that a flush of the wrong index would take with it.
    const r = new Redis(REDIS);
    cleanups.push(() => r.disconnect());
    await r.set(`probe:${ns}:queue-db`, 'keep');
    cleanups.push(() => r.del(`probe:${ns}:queue-db`));
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const wt = join(dir, '.worktrees', 'agent-001');

    const run = async (id: number, body: string) => {
      await runCli(['issue', 'add', `issue ${id}`, '--body', body], {
        cwd: dir,
        env,
      });
      await waitFor(
        async () =>
          (await cliJson<Issue[]>(['issue', 'list'], { cwd: dir, env })).find(
            (i) => i.id === id && i.status === 'done',
          ),
        { timeoutMs: 60_000, what: `issue ${id} done` },
      );
      return JSON.parse(readFileSync(`${echo}.${id}.probe`, 'utf8')) as {
        redisBefore: string[];
      };
    };

    // 1: the agent edits its copy of .env and leaves a key in its Redis DB.
    const p1 = await run(1, `env-probe: ${ns}\nwrite: .env`);
    expect(p1.redisBefore).toEqual([]);
    expect(readFileSync(join(wt, '.env'), 'utf8')).toMatch(/resolved 1/);
    // The secret rotates in the main worktree.
    writeFileSync(join(dir, '.env'), 'SECRET=two\n');
    // 2: its Redis DB is empty again; .env is the rotated one; it leaves an ignored file.
    const p2 = await run(2, `env-probe: ${ns}\nwrite: stale.local`);
    expect(p2.redisBefore).toEqual([]);
    expect(readFileSync(join(wt, '.env'), 'utf8')).toBe('SECRET=two\n');
    expect(existsSync(join(wt, 'stale.local'))).toBe(true);
    // 3: the ignored file the last agent left is gone before it starts.
    await run(3, `env-probe: ${ns}\nwrite: none`);
    expect(existsSync(join(wt, 'stale.local'))).toBe(false);
    expect(readFileSync(join(wt, '.env'), 'utf8')).toBe('SECRET=two\n');
    expect(await r.get(`probe:${ns}:queue-db`)).toBe('keep');

    const shown = await cliJson<{ runs: Run[] }>(['issue', 'show', '2'], {
      cwd: dir,
      env,
    });
    const log = readFileSync(shown.runs[0]!.logPath, 'utf8');
    expect(log).toMatch(
      /before job: sync \.worktreeinclude\n\S+ \.worktreeinclude: 1 updated/,
    );
    expect(log).toMatch(
      /before job: flush redis db \d+\n\S+ redis db \d+ flushed/,
    );
  });

  it('remembers the databases it made: cleanup --drop-databases drops those of slots released by an earlier cleanup', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const prefix = randomPrefix();
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    writeFileSync(
      join(dir, 'supervisor.config.json'),
      JSON.stringify({
        env: { ports: { base: randomPortBase() }, postgres: { prefix } },
      }),
    );
    const env = testEnv({ POSTGRES_URL: PG_ADMIN });
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '2',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    await waitFor(
      async () =>
        (
          await cliJson<{ agents: Array<{ state: string }> }>(['status'], {
            cwd: dir,
            env,
          })
        ).agents.filter((a) => a.state === 'idle').length === 2,
      { what: 'two agents idle', timeoutMs: 60_000 },
    );
    expect(await databasesWithPrefix(prefix)).toEqual([
      `${prefix}agent_001`,
      `${prefix}agent_002`,
    ]);
    expect(await sup.stop()).toBe(0);
    // A cleanup that keeps the databases frees the slots…
    const kept = await runCli(['cleanup'], { cwd: dir, env });
    expect(kept.code, kept.stderr).toBe(0);
    expect(await databasesWithPrefix(prefix)).toHaveLength(2);
    // …and a later one with --drop-databases still knows them.
    const dropped = await cliJson<{ databasesDropped: string[] }>(
      ['cleanup', '--drop-databases'],
      { cwd: dir, env },
    );
    expect(dropped.databasesDropped).toEqual([
      `${prefix}agent_001`,
      `${prefix}agent_002`,
    ]);
    expect(await databasesWithPrefix(prefix)).toEqual([]);
  });
});
