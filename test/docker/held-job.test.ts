import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { supervisorKeys } from '../../contract/job.js';
import { failHeldJob } from '../../supervisor/held-job.js';
import { useCleanups } from '../helpers/cleanup.js';

const cleanups = useCleanups();
const URL = 'redis://127.0.0.1:6379';

/** A job held by a "runner" that then died with its container (the lock and held key stay). */
async function heldJob(attempts: number) {
  const prefix = `t${randomBytes(5).toString('hex')}`;
  const queueName = 'issues-heldtest';
  const redis = new Redis(URL, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection: redis, prefix });
  const worker = new Worker(queueName, null, {
    connection: redis.duplicate({ maxRetriesPerRequest: null }),
    prefix,
    lockDuration: 30_000,
  });
  cleanups.push(async () => {
    await worker.close(true);
    await queue.obliterate({ force: true });
    await queue.close();
    redis.disconnect();
  });
  await queue.add(
    'issue',
    { title: 'Eats memory' },
    { jobId: 'issue-1', attempts, backoff: { type: 'fixed', delay: 50 } },
  );
  const token = 'lock-token-of-the-dead-runner';
  const job = await worker.getNextJob(token);
  expect(job?.id).toBe('issue-1');
  const keys = supervisorKeys(prefix, queueName);
  await redis.set(
    keys.held('agent-001'),
    JSON.stringify({ jobId: 'issue-1', token, attempt: 1 }),
  );
  return { address: { redisUrl: URL, prefix, queueName }, queue, redis, keys };
}

describe('failing the attempt of a runner whose container ran out of memory', () => {
  it('fails the held attempt with its lock token (retried per policy) and records why', async () => {
    const { address, queue, redis, keys } = await heldJob(2);
    const error =
      "out of memory: agent-001's container was killed at its 256 MiB memory limit";
    expect(await failHeldJob(address, 'agent-001', error)).toBe('issue-1');
    const job = (await queue.getJob('issue-1'))!;
    expect(await job.getState()).toMatch(/delayed|waiting/);
    expect(job.attemptsMade).toBe(1);
    expect(job.failedReason).toBe(error);
    expect(await redis.get(keys.held('agent-001'))).toBeNull();
    const events = await redis.xrange(keys.events, '-', '+');
    expect(JSON.parse(events[0]![1][1]!)).toMatchObject({
      type: 'attempt-failed',
      jobId: 'issue-1',
      attempt: 1,
      agentId: 'agent-001',
      error,
    });
    // Nothing held any more: nothing to do.
    expect(await failHeldJob(address, 'agent-001', error)).toBeUndefined();
  });

  it('fails the job for good on its last attempt', async () => {
    const { address, queue } = await heldJob(1);
    await failHeldJob(address, 'agent-001', 'out of memory');
    expect(await (await queue.getJob('issue-1'))!.getState()).toBe('failed');
  });
});
