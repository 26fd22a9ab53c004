import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { supervisorKeys, type RunnerEvent } from '../../../contract/job.js';

export interface QueueAddress {
  redisUrl: string;
  prefix: string;
  queueName: string;
}

/**
 * Fails the attempt a dead runner held, with its lock token, as the runner itself would have:
 * the attempt counts and BullMQ retries the job per its policy (attempts, backoff). Used when
 * a container was killed for running out of memory: its job must not be handed back for free
 * (a job that always runs out of memory would loop forever). Returns the job id, or undefined
 * when the runner held nothing or its lock is gone (the stalled-job check then takes over).
 */
export async function failHeldJob(
  q: QueueAddress,
  agentId: string,
  error: string,
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
    const held = JSON.parse(raw) as {
      jobId: string;
      token: string;
      attempt: number;
    };
    const queue = new Queue(q.queueName, {
      connection: redis,
      prefix: q.prefix,
    });
    try {
      const job = await queue.getJob(held.jobId);
      if (!job || (await job.getState()) !== 'active') return undefined;
      await job.moveToFailed(new Error(error), held.token);
      const ev: RunnerEvent = {
        type: 'attempt-failed',
        jobId: held.jobId,
        attempt: held.attempt,
        agentId,
        at: Date.now(),
        error,
        exitCode: null,
      };
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
