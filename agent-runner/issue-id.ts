import type { Redis } from 'ioredis';
import { issueIdFromJobId, type JobData } from '../contract/job.js';

/** How long a runner waits for the recorder to adopt a foreign job before handing it back. */
export const ADOPTION_WAIT_MS = 15_000;
const POLL_MS = 100;

/**
 * The issue id a job runs as. The feeder's jobs carry it twice (job id `issue-<n>` and
 * `issueId: n`); any other job is a foreign producer's, and its issue id is the one the recorder
 * gave it on adoption (published in the `adopted` hash), never the job id or the producer's
 * `issueId`. Returns undefined when no adoption appeared within `waitMs` (or `stop()` said so).
 */
export async function issueIdForJob(
  jobId: string,
  data: JobData,
  adopted: { redis: Redis; key: string },
  opts: { waitMs?: number; stop?: () => boolean } = {},
): Promise<string | undefined> {
  const own = issueIdFromJobId(jobId);
  if (own !== undefined && data.issueId === own) return String(own);
  const deadline = Date.now() + (opts.waitMs ?? ADOPTION_WAIT_MS);
  for (;;) {
    const id = await adopted.redis.hget(adopted.key, jobId);
    if (id && /^\d+$/.test(id)) return id;
    if (Date.now() >= deadline || opts.stop?.()) return undefined;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
