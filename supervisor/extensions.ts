import type { Context } from './context.js';
import type { Daemon, Logger } from './daemon.js';
import {
  attachEnvironments,
  dropReleasedDatabases,
  envStatus,
  releaseEnvironment,
} from './env/index.js';
import { envCollisions } from './env/collisions.js';
import { EnvAllocationStore } from './env/store.js';
import { getSetting } from './store/db.js';
import { maintainLogs } from './logs/maintenance.js';

/**
 * The optional parts a running control plane gets: per-slot environments and (wired by the
 * CLI, which may depend on the dashboard) the web dashboard.
 */
export async function attachExtensions(
  daemon: Daemon,
  log: Logger,
): Promise<void> {
  await attachEnvironments(daemon, log);
  maintainLogs(daemon, log);
}

/** Extra per-agent fields for `supervisor status`, and warnings (collisions with other repositories). */
export async function statusExtras(
  ctx: Context,
): Promise<{ envFor?: (agentId: string) => unknown; warnings: string[] }> {
  const queueRedisUrl =
    ctx.config.redisUrl ?? getSetting(ctx.db, 'redis_url') ?? undefined;
  return {
    envFor: await envStatus(ctx),
    warnings: await envCollisions(
      ctx,
      new EnvAllocationStore(ctx.db).list(),
      queueRedisUrl,
    ),
  };
}

/** Releases what a slot was allocated (ports, Redis DB, databases with `dropDatabases`). */
export async function releaseSlotEnv(
  ctx: Context,
  agentId: string,
  opts: { dropDatabases: boolean },
): Promise<void> {
  await releaseEnvironment(ctx, agentId, opts);
}

/** Drops databases of slots released earlier (`cleanup --drop-databases`). */
export async function dropReleasedSlotDatabases(
  ctx: Context,
): Promise<{ dropped: string[]; otherServer: string[] }> {
  return dropReleasedDatabases(ctx);
}
