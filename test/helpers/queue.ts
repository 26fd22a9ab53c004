import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { queueNameFor } from '../../contract/job.js';
import { resolveRepo } from '../../supervisor/repo.js';

/**
 * The BullMQ queue of the repository at `dir` under a test's prefix, on the shared test Redis,
 * as a foreign producer or an observer sees it. `onCleanup` receives what closes it (and, with
 * `obliterate`, empties it first).
 */
export async function repoQueue(
  dir: string,
  prefix: string,
  onCleanup: (fn: () => Promise<void>) => unknown,
  opts: { obliterate?: boolean } = {},
): Promise<Queue> {
  const paths = await resolveRepo(dir);
  const redis = new Redis('redis://127.0.0.1:6379', {
    maxRetriesPerRequest: null,
  });
  const queue = new Queue(queueNameFor(paths.repoId), {
    connection: redis,
    prefix,
  });
  onCleanup(async () => {
    if (opts.obliterate)
      await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
    redis.disconnect();
  });
  return queue;
}
