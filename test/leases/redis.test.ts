import { describe, expect, it } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readRecord } from '../helpers/agents.js';
import {
  cliJson,
  runCli,
  spawnSupervisor,
  startSupervisor,
  testEnv,
  waitFor,
  waitReady,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

async function setup(persistence: 'aof' | 'none') {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const redis = await PrivateRedis.create(persistence);
  cleanups.push(() => redis.stop());
  const record = join(tempDir(), 'record.log');
  return {
    dir: repo.dir,
    redis,
    record,
    env: testEnv({ REDIS_URL: redis.url, AGENT_RECORD_FILE: record }),
  };
}

async function start(
  dir: string,
  env: Record<string, string>,
  args: string[],
): Promise<RunningSupervisor> {
  const sup = await startSupervisor(dir, env, args);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

const allDone = (dir: string, env: Record<string, string>, n: number) =>
  waitFor(
    async () => {
      const l = await cliJson<any[]>(['issue', 'list'], { cwd: dir, env });
      return l.length === n && l.every((i) => i.status === 'done') ? l : false;
    },
    { timeoutMs: 90_000, what: `${n} issues done` },
  );

describe('Redis outages', () => {
  it('waits for an unreachable Redis at start and goes on when it appears', async () => {
    const { dir, env, redis } = await setup('aof');
    await runCli(['issue', 'add', 'Before Redis'], { cwd: dir, env });
    const sup = spawnSupervisor(dir, env, ['--agents', '1', '--no-dashboard']);
    cleanups.push(async () => void (await sup.stop()));
    // It says it is waiting, keeps waiting, and goes on once Redis appears.
    await waitFor(() => /waiting for Redis/.test(sup.output), {
      what: 'waiting for Redis',
    });
    expect(sup.child.exitCode).toBeNull();
    await redis.start();
    await waitReady(sup, dir);
    await allDone(dir, env, 1);
  });

  it('survives a Redis restart (AOF) while agents work: nothing lost, nothing done twice', async () => {
    const { dir, env, redis, record } = await setup('aof');
    await redis.start();
    for (let i = 1; i <= 6; i++)
      await runCli(['issue', 'add', `Job ${i}`, '--body', 'sleep: 1500'], {
        cwd: dir,
        env,
      });
    await start(dir, env, ['--agents', '2', '--no-dashboard']);
    await waitFor(
      () => readRecord(record).filter((r) => r.what === 'start').length >= 2,
      { what: 'agents working' },
    );
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1000));
    await redis.start();
    const list = await allDone(dir, env, 6);
    for (const i of list) {
      const s = await cliJson<any>(['issue', 'show', String(i.id)], {
        cwd: dir,
        env,
      });
      expect(s.runs.filter((r: any) => r.outcome === 'succeeded')).toHaveLength(
        1,
      );
    }
  });

  it('re-feeds from SQLite when Redis comes back empty (no persistence)', async () => {
    const { dir, env, redis, record } = await setup('none');
    await redis.start();
    for (let i = 1; i <= 4; i++)
      await runCli(['issue', 'add', `Job ${i}`, '--body', 'sleep: 1500'], {
        cwd: dir,
        env,
      });
    await start(dir, env, ['--agents', '2', '--no-dashboard']);
    await waitFor(
      () => readRecord(record).filter((r) => r.what === 'start').length >= 2,
      { what: 'agents working' },
    );
    await redis.stop();
    await redis.start();
    const list = await allDone(dir, env, 4);
    for (const i of list) {
      const s = await cliJson<any>(['issue', 'show', String(i.id)], {
        cwd: dir,
        env,
      });
      expect(s.runs.filter((r: any) => r.outcome === 'succeeded')).toHaveLength(
        1,
      );
    }
  });

  it('an issue whose claim was recorded before the feeder marked it (the supervisor died between adding and marking) keeps its job id, and is fed again when Redis loses its data', async () => {
    const { dir, env, redis, record } = await setup('none');
    await redis.start();
    const gate = join(tempDir(), 'go');
    // The seam: this supervisor dies 3 s after adding a batch, before marking it queued; its
    // runner takes the job at once and the claim is recorded meanwhile.
    const first = await start(
      dir,
      { ...env, SUPERVISOR_FAULT_KILL_AFTER_FEED_ADD: '3000' },
      ['--agents', '1', '--no-dashboard'],
    );
    await waitFor(
      async () =>
        (await cliJson<any>(['status'], { cwd: dir, env })).agents.some(
          (a: any) => a.state === 'idle',
        ),
      { what: 'an idle runner' },
    );
    await runCli(
      ['issue', 'add', 'Added, then died', '--body', `wait-file: ${gate}`],
      {
        cwd: dir,
        env,
      },
    );
    await first.exited;
    expect(readRecord(record).filter((r) => r.what === 'start')).toHaveLength(
      1,
    );
    const claimed = await cliJson<any>(['issue', 'show', '1'], {
      cwd: dir,
      env,
    });
    expect(claimed.status).toBe('in_progress');
    await start(dir, env, ['--agents', '1', '--no-dashboard']);
    // Redis loses everything: only the job id lets the reconcile see its job vanished.
    await redis.stop();
    await redis.start();
    writeFileSync(gate, '');
    const [done] = await allDone(dir, env, 1);
    const shown = await cliJson<any>(['issue', 'show', String(done.id)], {
      cwd: dir,
      env,
    });
    expect(
      shown.runs.filter((r: any) => r.outcome === 'succeeded'),
    ).toHaveLength(1);
  });
});
