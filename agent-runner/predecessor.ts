import { rmSync } from 'node:fs';
import { Queue, UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { isOurAgent, readAgentRecord } from '../contract/agent-record.js';
import type { EventPublisher } from './event-publisher.js';

export type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * A runner restarted under the same slot frees what its predecessor held: it kills the
 * predecessor's agent (if it still runs here) and puts the job back without spending an attempt.
 * A job whose runners keep dying while they hold it (`poisonAfter` deaths, counted per job in
 * `deathsKey`) is failed for good as `poison` instead: it would otherwise take down every slot
 * in turn, for ever, without ever spending an attempt.
 */
export async function recoverPredecessor(o: {
  agentId: string;
  agentRecordFile: string;
  redis: Redis;
  heldKey: string;
  queueName: string;
  prefix: string;
  events: EventPublisher;
  log: Log;
  deathsKey: string;
  poisonAfter: number;
}): Promise<void> {
  const rec = readAgentRecord(o.agentRecordFile);
  if (rec && isOurAgent(rec)) {
    try {
      process.kill(-rec.pid, 'SIGKILL');
      o.log('killed the agent a previous runner left behind', {
        pid: rec.pid,
        jobId: rec.jobId,
      });
    } catch {
      /* gone */
    }
  }
  rmSync(o.agentRecordFile, { force: true });
  const heldRaw = await o.redis.get(o.heldKey);
  if (!heldRaw) return;
  const held = JSON.parse(heldRaw) as {
    jobId: string;
    token: string;
    attempt: number;
  };
  const queue = new Queue(o.queueName, {
    connection: o.redis,
    prefix: o.prefix,
  });
  const job = await queue.getJob(held.jobId);
  if (job && (await job.getState()) === 'active') {
    const deaths = await o.redis.hincrby(o.deathsKey, held.jobId, 1);
    if (deaths >= o.poisonAfter) {
      await failAsPoison(o, job, held, deaths);
      await o.redis.del(o.heldKey);
      return;
    }
    try {
      await job.moveToWait(held.token);
      await o.events.publish({
        type: 'release',
        jobId: held.jobId,
        attempt: held.attempt,
        agentId: o.agentId,
        at: Date.now(),
        reason: 'runner restarted',
      });
      o.log('released the job a previous runner held', {
        jobId: held.jobId,
      });
    } catch (err) {
      // The lock is no longer ours (expired and re-claimed): nothing to release.
      o.log('previous job already re-claimed', {
        jobId: held.jobId,
        error: (err as Error).message,
      });
    }
  }
  await o.redis.del(o.heldKey);
}

/** Fails the held attempt for good (no retry): its runners died `deaths` times holding it. */
async function failAsPoison(
  o: Parameters<typeof recoverPredecessor>[0],
  job: Job,
  held: { jobId: string; token: string; attempt: number },
  deaths: number,
): Promise<void> {
  const error = `poison: the runner died ${deaths} times while working on this issue (poisonAfter ${o.poisonAfter}); failed without further attempts so the slots go on with other issues`;
  // Reported first, as a runner reports any failed attempt: the recorder keeps the kind.
  await o.events.publish({
    type: 'attempt-failed',
    jobId: held.jobId,
    attempt: held.attempt,
    agentId: o.agentId,
    at: Date.now(),
    error,
    kind: 'poison',
    exitCode: null,
  });
  try {
    await job.moveToFailed(new UnrecoverableError(error), held.token);
  } catch (err) {
    o.log('previous job already re-claimed', {
      jobId: held.jobId,
      error: (err as Error).message,
    });
    return;
  }
  await o.redis.hdel(o.deathsKey, held.jobId);
  o.log('failed a poison job: its runners kept dying', {
    jobId: held.jobId,
    deaths,
  });
}
