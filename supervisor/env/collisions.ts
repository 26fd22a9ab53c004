import type { Context } from '../context.js';
import { coerceError } from '../errors.js';
import {
  ClaimRegistry,
  PORT_CLAIMS_KEY,
  REDIS_DB_CLAIMS_KEY,
  ownerPath,
  withClaimsRedis,
  type Owner,
} from './claims.js';
import { portsOfBlock } from './ports.js';
import { databaseOwner } from './postgres.js';
import type { EnvAllocation } from './store.js';

/**
 * Collisions with other repositories that remain despite the claims (a claim taken while this
 * supervisor was down, a database marked by another repository): one line each, for `start`
 * and `status`. Servers that do not answer are skipped (their own warnings say so).
 */
export async function envCollisions(
  ctx: Context,
  allocations: readonly EnvAllocation[],
  queueRedisUrl: string | undefined,
): Promise<string[]> {
  const cfg = ctx.config.env;
  const out: string[] = [];
  const ready = allocations.filter((a) => a.state === 'ready');
  if (!cfg.enabled || ready.length === 0) return out;
  const owner = (slot: string): Owner => ({
    repoId: ctx.paths.repoId,
    slot,
    repoRoot: ctx.paths.root,
  });
  const appRedis = cfg.redis.url ?? queueRedisUrl;
  const guard = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      void what;
      void coerceError(err);
    }
  };
  if (queueRedisUrl)
    await guard('ports', () =>
      withClaimsRedis(queueRedisUrl, async (r) => {
        const claims = new ClaimRegistry(r, PORT_CLAIMS_KEY());
        for (const a of ready) {
          if (a.portStart === null) continue;
          const others = await claims.others(
            portsOfBlock(cfg.ports, a.portStart),
            owner(a.slot),
          );
          if (others.size)
            out.push(
              `${a.slot}: ports ${[...others.keys()].join(', ')} are claimed by another repository (${[...new Set([...others.values()].map(ownerPath))].join(', ')}); restart it to move to a free block`,
            );
        }
      }),
    );
  if (cfg.redis.enabled && appRedis)
    await guard('redis', () =>
      withClaimsRedis(appRedis, async (r) => {
        const claims = new ClaimRegistry(r, REDIS_DB_CLAIMS_KEY);
        for (const a of ready) {
          if (a.redisDb === null) continue;
          const others = await claims.others([a.redisDb], owner(a.slot));
          if (others.size)
            out.push(
              `${a.slot}: Redis DB ${a.redisDb} is claimed by another repository (${ownerPath([...others.values()][0]!)})`,
            );
        }
      }),
    );
  const pgUrl = cfg.postgres.url;
  if (pgUrl)
    await guard('postgres', async () => {
      for (const a of ready) {
        if (!a.postgresDb) continue;
        const held = await databaseOwner(pgUrl, a.postgresDb);
        if (held && held.split('/')[0] !== ctx.paths.repoId)
          out.push(
            `${a.slot}: database ${a.postgresDb} belongs to another repository (${ownerPath(held)})`,
          );
      }
    });
  return out;
}
