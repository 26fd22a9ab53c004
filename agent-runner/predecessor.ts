import { rmSync } from 'node:fs';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isOurAgent, readAgentRecord } from '../contract/agent-record.js';
import type { EventPublisher } from './event-publisher.js';

export type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * A runner restarted under the same slot frees what its predecessor held: it kills the
 * predecessor's agent (if it still runs here) and puts the job back without spending an attempt.
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
