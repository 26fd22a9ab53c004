import { slotNumber } from '../../contract/job.js';
import type { Context } from '../context.js';
import { SupervisorError } from '../errors.js';
import { validateAgentCount } from '../scaler.js';
import { effectiveMaxAgents } from '../running-config.js';
import { getSetting, type Db } from '../store/db.js';
import type { EnvConfig } from './allocator.js';
import { blockStarts } from './ports.js';
import { dbOfUrl, sameServer, usableDbs } from './redis-db.js';
import { EnvAllocationStore } from './store.js';

/** One resource that bounds how many slots can get an environment. */
export interface EnvLimit {
  resource: 'port blocks' | 'Redis DBs';
  /** How many the configuration (and the server, when known) can hand out. */
  total: number;
  /** Held by slots above the requested count (removed slots not yet cleaned up). */
  heldByOthers: number;
  describe: string;
  hint: string;
}

export interface CapacityOptions {
  /** The queue's Redis: its DB is never handed out when the apps share its server. */
  queueRedisUrl: string | undefined;
  /** `databases` of the apps' Redis server, when asked (the supervisor does at start). */
  serverDatabases?: number | undefined;
}

const DEFAULT_REDIS = 'redis://127.0.0.1:6379';

/** What the environment configuration can hand out, resource by resource (no I/O). */
export function envLimits(
  cfg: EnvConfig,
  db: Db | undefined,
  n: number,
  opts: CapacityOptions,
): EnvLimit[] {
  if (!cfg.enabled) return [];
  const rows = db ? new EnvAllocationStore(db).list() : [];
  // Slots above n keep their allocation until `cleanup`: what they hold is not free for 1..n.
  const above = rows.filter((r) => {
    try {
      return slotNumber(r.slot) > n;
    } catch {
      return true;
    }
  });
  const limits: EnvLimit[] = [];
  const starts = blockStarts(cfg.ports);
  const last = (starts.at(-1) ?? cfg.ports.base) + cfg.ports.blockSize - 1;
  limits.push({
    resource: 'port blocks',
    total: starts.length,
    heldByOthers: above.filter((r) => r.portStart !== null).length,
    describe: `env.ports gives ${starts.length} blocks of ${cfg.ports.blockSize} ports (${cfg.ports.base}..${last})`,
    hint: 'raise env.ports.maxBlocks (or lower env.ports.blockSize) in supervisor.config.json',
  });
  if (cfg.redis.enabled) {
    const appUrl = cfg.redis.url ?? opts.queueRedisUrl ?? DEFAULT_REDIS;
    const queueUrl = opts.queueRedisUrl ?? DEFAULT_REDIS;
    const [lo, hi] = cfg.redis.dbRange;
    let usable: number;
    try {
      usable = usableDbs({
        lo,
        hi,
        reserved: sameServer(appUrl, queueUrl) ? dbOfUrl(queueUrl) : undefined,
        serverDatabases: opts.serverDatabases,
      }).length;
    } catch {
      usable = 0;
    }
    limits.push({
      resource: 'Redis DBs',
      total: usable,
      heldByOthers: above.filter((r) => r.redisDb !== null).length,
      describe:
        `env.redis.dbRange ${lo}..${hi} gives ${usable} usable DB indices` +
        (opts.serverDatabases !== undefined && hi > opts.serverDatabases - 1
          ? ` (the server has ${opts.serverDatabases} databases)`
          : ''),
      hint: 'raise `databases` in redis.conf and widen env.redis.dbRange, or turn per-agent Redis off with "env": {"redis": {"enabled": false}}',
    });
  }
  return limits;
}

/** The most agents the environment can serve (Infinity when environments are off). */
export function envCapacity(
  cfg: EnvConfig,
  db: Db | undefined,
  opts: CapacityOptions,
): number {
  const limits = envLimits(cfg, db, Number.MAX_SAFE_INTEGER, opts);
  return Math.min(Infinity, ...limits.map((l) => l.total));
}

/**
 * Refuses an agent count the environment cannot serve, before any worktree is made:
 * `--agents 1000` with 15 Redis DBs fails here in milliseconds instead of creating 999
 * worktrees whose environments then cannot be allocated.
 */
export function checkEnvCapacity(
  cfg: EnvConfig,
  db: Db | undefined,
  n: number,
  opts: CapacityOptions,
): void {
  for (const l of envLimits(cfg, db, n, opts)) {
    if (n + l.heldByOthers <= l.total) continue;
    const room = Math.max(0, l.total - l.heldByOthers);
    throw new SupervisorError(
      'ERR_SUP_SCALE_LIMIT',
      `${n} agents need ${n} ${l.resource}, but ${l.describe}` +
        (l.heldByOthers
          ? ` and ${l.heldByOthers} of them are still held by removed slots`
          : '') +
        `: at most ${room} agent${room === 1 ? '' : 's'}`,
      {
        hint:
          `run at most ${room} agents, or ${l.hint}` +
          (l.heldByOthers
            ? '; `supervisor cleanup` releases what removed slots hold'
            : ''),
      },
    );
  }
}

/**
 * An agent count checked against the machine (`maxAgents`) and the environment (port blocks,
 * Redis DBs): what every way of scaling (CLI, API, dashboard) calls before it stores a count.
 */
export function validateScale(ctx: Context, raw: string | number): number {
  // The running supervisor's maximum (its flags), else this machine's default.
  const max = effectiveMaxAgents(ctx);
  const n = validateAgentCount(raw, max.maxAgents, max.running);
  checkEnvCapacity(ctx.config.env, ctx.db, n, {
    queueRedisUrl:
      ctx.config.redisUrl ?? getSetting(ctx.db, 'redis_url') ?? undefined,
  });
  return n;
}
