import { Queue, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { supervisorKeys, type RunnerEvent } from '../contract/job.js';

export interface QueueAddress {
  redisUrl: string;
  prefix: string;
  queueName: string;
}

interface Held {
  jobId: string;
  token: string;
  attempt: number;
}

/**
 * Acts on the job a dead runner of `agentId` still held (its `held:<slot>` record), with that
 * runner's lock token, then forgets the record. Returns the job id, or undefined when the runner
 * held nothing or its lock is gone (the stalled-job check then takes over).
 */
async function withHeldJob(
  q: QueueAddress,
  agentId: string,
  act: (job: Job, held: Held) => Promise<RunnerEvent>,
): Promise<string | undefined> {
  const redis = new Redis(q.redisUrl, {
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    lazyConnect: true,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
    const keys = supervisorKeys(q.prefix, q.queueName);
    const raw = await redis.get(keys.held(agentId));
    if (!raw) return undefined;
    const held = JSON.parse(raw) as Held;
    const queue = new Queue(q.queueName, {
      connection: redis,
      prefix: q.prefix,
    });
    try {
      const job = await queue.getJob(held.jobId);
      if (!job || (await job.getState()) !== 'active') return undefined;
      const ev = await act(job, held);
      await redis.xadd(
        keys.events,
        'MAXLEN',
        '~',
        '100000',
        '*',
        'e',
        JSON.stringify(ev),
      );
      await redis.del(keys.held(agentId));
      return held.jobId;
    } finally {
      await queue.close().catch(() => undefined);
    }
  } finally {
    redis.disconnect();
  }
}

/**
 * Fails the attempt a dead runner held, as the runner itself would have: the attempt counts and
 * BullMQ retries the job per its policy (attempts, backoff). Used when a container was killed for
 * running out of memory: its job must not be handed back for free (a job that always runs out of
 * memory would loop forever).
 */
export function failHeldJob(
  q: QueueAddress,
  agentId: string,
  error: string,
): Promise<string | undefined> {
  return withHeldJob(q, agentId, async (job, held) => {
    await job.moveToFailed(new Error(error), held.token);
    return {
      type: 'attempt-failed',
      jobId: held.jobId,
      attempt: held.attempt,
      agentId,
      at: Date.now(),
      error,
      exitCode: null,
    };
  });
}

/**
 * Hands the job a dead runner held back to the queue without spending an attempt (a slot that
 * was quarantined: the fault was the slot's, not the issue's); another slot takes it at once.
 */
export function releaseHeldJob(
  q: QueueAddress,
  agentId: string,
  reason: string,
): Promise<string | undefined> {
  return withHeldJob(q, agentId, async (job, held) => {
    await job.moveToWait(held.token);
    return {
      type: 'release',
      jobId: held.jobId,
      attempt: held.attempt,
      agentId,
      at: Date.now(),
      reason,
      kind: 'slot-broken',
    };
  });
}
