import type { Context } from '../context.js';
import { EnvAllocator } from '../env/allocator.js';
import { writeEnvFile } from '../env/env-file.js';
import { getSetting } from '../store/db.js';

/** The slot id of the landing worktree's environment (env_allocations). */
export const LAND_SLOT = 'land';

/**
 * The environment land.check runs with: a slot of its own on the shared infrastructure (port
 * block, Redis DB, database), allocated like an agent's, so a check never shares state with a
 * running agent. Allocated once and reused; `.env.worktree` is written into the landing worktree.
 */
export function landCheckEnv(
  ctx: Context,
  worktreePath: () => string,
  redisUrl?: string,
): () => Promise<Record<string, string>> {
  let allocator: EnvAllocator | undefined;
  return async () => {
    const cfg = ctx.config.env;
    if (!cfg.enabled) return {};
    const url =
      redisUrl ??
      ctx.config.redisUrl ??
      getSetting(ctx.db, 'redis_url') ??
      'redis://127.0.0.1:6379';
    allocator ??= new EnvAllocator({
      db: ctx.db,
      config: cfg,
      queueRedisUrl: url,
      repoRoot: ctx.paths.root,
      repoId: ctx.paths.repoId,
    });
    const env = await allocator.prepare(
      LAND_SLOT,
      ({ vars }) => void writeEnvFile(worktreePath(), LAND_SLOT, vars),
    );
    return env.vars;
  };
}
