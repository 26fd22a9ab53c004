import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { issueIdFromJobId, supervisorKeys } from '../contract/job.js';
import { SupervisorError } from './errors.js';
import { gitAt } from './repo.js';
import { getSetting, setSetting, type Db } from './store/db.js';
import type { IssueStore } from './store/issues.js';

/**
 * A database made again (the old one was damaged and moved aside) starts its issue ids at 1,
 * while the queue in Redis and the `issue/<id>` branches in git still hold the old issues'. Left
 * alone, the new issue #1 would be "done" with the old #1's result (the feeder's add of job
 * `issue-1` is a no-op next to the old job), and its branch would overwrite the old `issue/1`.
 */

const CREATED_KEY = 'created_at';
const CHECKED_KEY = 'earlier_database_checked';

/** At database creation: remember when, and start issue ids above the `issue/<id>` branches in git. */
export async function markNewDatabase(
  db: Db,
  issues: IssueStore,
  repoRoot: string,
): Promise<void> {
  setSetting(db, CREATED_KEY, String(Date.now()));
  const refs = await gitAt(repoRoot)
    .raw(['for-each-ref', '--format=%(refname)', 'refs/heads/issue/'])
    .catch(() => '');
  let top = 0;
  for (const ref of refs.split('\n')) {
    const m = /^refs\/heads\/issue\/(\d+)$/.exec(ref.trim());
    if (m?.[1]) top = Math.max(top, Number(m[1]));
  }
  if (top > 0) issues.skipIdsThrough(top);
}

export interface EarlierJobs {
  /** Jobs removed: finished ones (their branches stay in git) and those whose ids this database's issues took. */
  removed: string[];
  /** Ids that later issues skip. */
  skippedThrough: number;
}

/**
 * Once per database, before the recorder and the first runner start: forgets what an earlier
 * database left in Redis. Jobs `issue-<n>` added before this database existed: issue ids skip past
 * them; finished ones are removed (their `issue/<id>` branches stay in git), and so are unfinished
 * ones whose id an issue of this database already has (refused while one still runs); the rest is
 * adopted like a foreign producer's jobs. The runners' old events are not replayed.
 */
export async function forgetEarlierDatabase(o: {
  db: Db;
  issues: IssueStore;
  queue: Queue;
  redis: Redis;
  prefix: string;
}): Promise<EarlierJobs | undefined> {
  const { db, issues, queue, redis, prefix } = o;
  const createdAt = Number(getSetting(db, CREATED_KEY) ?? '0');
  if (!createdAt || getSetting(db, CHECKED_KEY) === '1') return undefined;
  const base = `${prefix}:${queue.name}:`;
  // The queue's own sets, not a SCAN of the keyspace: bounded by this queue, whatever else the server holds.
  const lists = ['wait', 'active', 'paused'];
  const zsets = [
    'prioritized',
    'delayed',
    'completed',
    'failed',
    'waiting-children',
  ];
  const listed = await Promise.all([
    ...lists.map((l) => redis.lrange(`${base}${l}`, 0, -1)),
    ...zsets.map((z) => redis.zrange(`${base}${z}`, '0', '-1')),
  ]);
  const ids = [...new Set(listed.flat())].filter(
    (id) => issueIdFromJobId(id) !== undefined,
  );
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hget(`${base}${id}`, 'timestamp');
  const stamps = (await pipe.exec()) ?? [];
  const stale = ids.filter((_, i) => {
    const t = Number(stamps[i]?.[1] ?? NaN);
    return Number.isFinite(t) && t < createdAt;
  });
  const result: EarlierJobs = { removed: [], skippedThrough: 0 };
  for (const id of stale)
    result.skippedThrough = Math.max(
      result.skippedThrough,
      issueIdFromJobId(id)!,
    );
  if (result.skippedThrough > 0) issues.skipIdsThrough(result.skippedThrough);
  for (const id of stale) {
    const job = await Job.fromId(queue, id);
    if (!job) continue;
    const state = await job.getState();
    const finished = state === 'completed' || state === 'failed';
    // Unfinished work of the earlier database whose id is free is adopted like a foreign job.
    if (!finished && !issues.get(issueIdFromJobId(id)!)) continue;
    if (state === 'active') {
      throw new SupervisorError(
        'ERR_SUP_DATABASE',
        `job ${id} in the queue belongs to an earlier supervisor database, is still running, and its id is taken by issue #${issueIdFromJobId(id)} of this one`,
        {
          hint: 'stop the runners the earlier supervisor left (see `ps` for agent-runner processes) or wait for the job to finish, then start again',
        },
      );
    }
    await job.remove();
    result.removed.push(id);
  }
  // What finished before this database existed is not its history; old runner events neither.
  const last = (
    await redis.xrevrange(
      supervisorKeys(prefix, queue.name).events,
      '+',
      '-',
      'COUNT',
      1,
    )
  )[0]?.[0];
  db.transaction(() => {
    if (last && !getSetting(db, 'events_last_id'))
      setSetting(db, 'events_last_id', last);
    // The recorder looks back 60 s before this mark: finished jobs of the earlier database stay out.
    if (!getSetting(db, 'reconciled_until'))
      setSetting(db, 'reconciled_until', String(Date.now() + 60_000));
    setSetting(db, CHECKED_KEY, '1');
  })();
  return result;
}
