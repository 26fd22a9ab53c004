import type { Redis } from 'ioredis';
import type { Context } from '../context.js';
import { connectOnce, ping, resolveRedisUrl } from '../redis.js';
import { getSetting } from '../store/db.js';

/** The Redis the running supervisor uses (it records its URL), else the usual resolution. */
export async function redisFor(ctx: Context): Promise<Redis | undefined> {
  const recorded = getSetting(ctx.db, 'redis_url');
  let url: string | undefined;
  if (ctx.config.redisUrl) url = ctx.config.redisUrl;
  else if (recorded && (await ping(recorded))) url = recorded;
  else {
    try {
      url = (
        await resolveRedisUrl(ctx.paths, undefined, { startPrivate: false })
      ).url;
    } catch {
      return undefined;
    }
  }
  if (!(await ping(url, 1500))) return undefined;
  return connectOnce(url);
}
