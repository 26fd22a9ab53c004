/**
 * Two runners never own one slot: the owner key is renewed by compare-and-set. A runner that
 * finds another runner's id in its slot's owner key (its key lapsed and was taken) never takes it
 * back: it kills its agent, hands its job back unspent and stops taking jobs.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { queueNameFor, supervisorKeys } from '../../contract/job.js';
import { resolveRepo } from '../../supervisor/repo.js';
import { processAlive, readRecord } from '../helpers/agents.js';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

describe('slot ownership', () => {
  it('a runner whose owner key now holds another runner id stops: agent killed, job handed back, key never taken back', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const record = join(tempDir(), 'record.log');
    const gate = join(tempDir(), 'never');
    const env = testEnv({ AGENT_RECORD_FILE: record });
    const dir = repo.dir;
    await runCli(
      ['issue', 'add', 'Long work', '--body', `wait-file: ${gate}`],
      {
        cwd: dir,
        env,
      },
    );
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const agent = await waitFor(
      () => readRecord(record).find((r) => r.what === 'start'),
      { what: 'the agent working' },
    );
    const paths = await resolveRepo(dir);
    const keys = supervisorKeys(
      env.SUPERVISOR_PREFIX!,
      queueNameFor(paths.repoId),
    );
    const owner = `${keys.agent('agent-001')}:owner`;
    const redis = new Redis('redis://127.0.0.1:6379');
    cleanups.push(async () => {
      await redis.del(owner, keys.agent('agent-001'));
      redis.disconnect();
    });
    // Another runner took the slot (as after a lapse while this one was frozen).
    expect(await redis.get(owner)).toMatch(/^[0-9a-f-]{36}$/);
    await redis.set(owner, 'another-runner');
    // …and wrote its registry entry, which the old runner must never overwrite.
    const entry = keys.agent('agent-001');
    await redis.hset(entry, 'host', 'another-host', 'pid', '1');
    await redis.persist(entry);

    await waitFor(() => !processAlive(agent.pid), {
      what: 'the agent killed',
    });
    const issue = await waitFor(
      async () => {
        const i = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
        return i.runs[0]?.outcome === 'released' ? i : false;
      },
      { what: 'the job handed back' },
    );
    expect(issue.status).toBe('queued');
    expect(issue.attempts).toBeLessThanOrEqual(1);
    // The runner stopped renewing before it handed the job back: the key is still the other's.
    expect(await redis.get(owner)).toBe('another-runner');
    expect(await redis.hmget(entry, 'host', 'pid')).toEqual([
      'another-host',
      '1',
    ]);
    const log = join(dir, '.supervisor', 'logs', 'agent-001.log');
    expect(existsSync(log) && readFileSync(log, 'utf8')).toMatch(
      /slot ownership lost/,
    );
  });
});
