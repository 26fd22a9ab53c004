import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { parseResultRef, resultRefFor } from '../contract/job.js';
import { decodeClaim } from '../contract/result-claim.js';

/**
 * Why a result push is not the pusher's to make, or undefined: the push must carry the claim
 * (job id + BullMQ lock token) of the attempt its ref names, and that claim must still be held
 * (the job's lock is that token) for that very attempt.
 */
export async function claimRefusal(
  ref: string,
  header: string | string[] | undefined,
  o: { redis: Redis; queue: Queue },
): Promise<string | undefined> {
  const parsed = parseResultRef(ref);
  if (!parsed) return 'not a result ref';
  const claim = decodeClaim(header);
  if (!claim)
    return 'a result push must carry the claim it is for (X-Supervisor-Claim); update the runner';
  if (resultRefFor(claim.jobId, parsed.attempt) !== ref)
    return `this ref is not for ${claim.jobId}`;
  const lock = await o.redis.get(`${o.queue.toKey(claim.jobId)}:lock`);
  if (lock !== claim.token)
    return `the pusher does not hold ${claim.jobId} (its claim expired or is not its own)`;
  const job = await o.queue.getJob(claim.jobId);
  const offset = Number(
    (job?.data as { attemptOffset?: unknown } | undefined)?.attemptOffset ?? 0,
  );
  const attempt =
    (Number.isFinite(offset) ? offset : 0) + (job?.attemptsStarted ?? -1);
  if (!job || attempt !== parsed.attempt)
    return `attempt ${parsed.attempt} is not the attempt the pusher holds${job ? ` (${attempt})` : ''}`;
  return undefined;
}
