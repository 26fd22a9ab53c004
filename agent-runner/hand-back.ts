import { Worker, WaitingError, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { AttemptFailureKind } from '../contract/errors.js';
import type { RunnerConfig, supervisorKeys } from '../contract/job.js';
import type { EventPublisher } from './event-publisher.js';
import type { Current, Log } from './current-job.js';
import type { RemoteGate } from './remote-gate.js';
import type { UsageLimit } from './usage-limits.js';

/** What a hand-back needs from the runner. */
export interface HandBackContext {
  cfg: RunnerConfig;
  redis: Redis;
  /** The queue itself, for its rate limit (a usage limit pauses every runner). */
  queue: Queue;
  keys: ReturnType<typeof supervisorKeys>;
  events: EventPublisher;
  log: Log;
}

/**
 * A provider usage limit: the queue's rate limit stops every runner from claiming until the
 * reset (plus the margin), this job goes back to waiting without spending an attempt (BullMQ's
 * RateLimitError), and the supervisor records the pause from the `usage-limit` event.
 */
export async function handBackForLimit(
  c: HandBackContext,
  cur: Current,
  limit: UsageLimit,
  logPath: string,
): Promise<never> {
  const now = Date.now();
  const l = c.cfg.limits;
  const reset =
    limit.resetAt === undefined ? now + l.defaultPauseMs : limit.resetAt;
  const until = Math.min(
    Math.max(reset, now + 1000) + l.marginMs,
    now + l.maxPauseMs,
  );
  // Never shorten a longer pause another runner (or `supervisor pause`) already set.
  const ttl = await c.redis.pttl(`${c.cfg.prefix}:${c.cfg.queueName}:limiter`);
  if (ttl < until - now) await c.queue.rateLimit(until - now);
  const jobId = cur.job.id!;
  await c.events.publish({
    type: 'usage-limit',
    jobId,
    attempt: cur.attempt,
    agentId: c.cfg.agentId,
    // When the pause took hold (the rate limit is set): a runner that claimed before then, while
    // this agent was still finding out, claimed rightly; none claims after.
    at: Date.now(),
    provider: limit.provider,
    until,
    ...(limit.resetAt !== undefined ? { resetAt: limit.resetAt } : {}),
    reason: limit.reason,
    source: limit.source,
    logPath,
  });
  await c.redis.del(c.keys.held(c.cfg.agentId)).catch(() => undefined);
  c.log('usage limit: handed the job back, claiming paused', {
    jobId,
    provider: limit.provider,
    until: new Date(until).toISOString(),
    reason: limit.reason,
  });
  throw Worker.RateLimitError();
}

/**
 * Something this slot needs is missing (the agent's program, the git remote): the gate keeps the
 * worker off the queue until it is back, and this job goes back to waiting unspent.
 */
export async function handBackBlocked(
  c: HandBackContext,
  cur: Current,
  gate: RemoteGate | undefined,
  err: Error,
  kind?: AttemptFailureKind,
): Promise<never> {
  gate?.block(err);
  const jobId = cur.job.id!;
  await cur.job.moveToWait(cur.token);
  await c.events.publish({
    type: 'release',
    jobId,
    attempt: cur.attempt,
    agentId: c.cfg.agentId,
    at: Date.now(),
    reason: err.message,
    ...(kind ? { kind } : {}),
  });
  c.log('handed the job back: this slot cannot run it now', {
    jobId,
    error: err.message,
  });
  throw new WaitingError();
}
