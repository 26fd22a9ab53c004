import type { Context } from '../context.js';
import { getSetting } from '../store/db.js';
import {
  ClaimRegistry,
  PORT_CLAIMS_KEY,
  REDIS_DB_CLAIMS_KEY,
  withClaimsRedis,
} from './claims.js';
import { portsOfBlock } from './ports.js';
import type { EnvAllocation } from './store.js';

/** Gives up a released slot's claims in the shared servers (best effort: a server may be away). */
export async function releaseClaims(
  ctx: Context,
  a: EnvAllocation,
): Promise<void> {
  const cfg = ctx.config.env;
  const owner = {
    repoId: ctx.paths.repoId,
    slot: a.slot,
    repoRoot: ctx.paths.root,
  };
  const queueRedisUrl =
    ctx.config.redisUrl ?? getSetting(ctx.db, 'redis_url') ?? undefined;
  if (queueRedisUrl && a.portStart !== null)
    await withClaimsRedis(queueRedisUrl, (r) =>
      new ClaimRegistry(r, PORT_CLAIMS_KEY()).release(
        portsOfBlock(cfg.ports, a.portStart!),
        owner,
      ),
    ).catch(() => undefined);
  const appRedis = cfg.redis.url ?? queueRedisUrl;
  if (appRedis && a.redisDb !== null)
    await withClaimsRedis(appRedis, (r) =>
      new ClaimRegistry(r, REDIS_DB_CLAIMS_KEY).release([a.redisDb!], owner),
    ).catch(() => undefined);
}
