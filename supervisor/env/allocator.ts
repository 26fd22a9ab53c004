import type { z } from 'zod';
import type { EnvSchema } from '../config.js';
import { SupervisorError, coerceError } from '../errors.js';
import type { Db } from '../store/db.js';
import { composeProjectName } from './env-file.js';
import {
  busyPorts,
  namedPorts,
  pickBlock,
  portsExhausted,
  portsOfBlock,
  validatePortsConfig,
} from './ports.js';
import {
  claimDatabase,
  databaseNameFor,
  databaseUrl,
  dropDatabase,
  postgresServer,
} from './postgres.js';
import {
  ClaimRegistry,
  PORT_CLAIMS_KEY,
  REDIS_DB_CLAIMS_KEY,
  ownerPath,
  ownerValue,
  withClaimsRedis,
  type Owner,
} from './claims.js';
import {
  dbOfUrl,
  pickRedisDb,
  redisUrlWithDb,
  sameServer,
  serverDatabases,
  type RedisRange,
} from './redis-db.js';
import {
  EnvAllocationStore,
  KnownDatabaseStore,
  isUniqueViolation,
  type EnvAllocation,
} from './store.js';

export type EnvConfig = z.output<typeof EnvSchema>;

export interface EnvAllocatorOptions {
  db: Db;
  config: EnvConfig;
  /** The supervisor's own Redis (the queue); the apps' Redis unless env.redis.url says otherwise. */
  queueRedisUrl: string;
  repoRoot: string;
  repoId: string;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** A slot's allocation and the variables it becomes (`.env.worktree` and the agent's environment). */
export interface SlotEnvironment {
  allocation: EnvAllocation;
  vars: Record<string, string>;
}

/** Checks what the schema cannot (ranges against each other); throws ERR_SUP_CONFIG. */
export function validateEnvConfig(cfg: EnvConfig): void {
  validatePortsConfig(cfg.ports);
  const [lo, hi] = cfg.redis.dbRange;
  if (lo > hi) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `env.redis.dbRange [${lo}, ${hi}] is empty (the first index is above the last)`,
      { hint: 'e.g. "dbRange": [1, 15]' },
    );
  }
  if (cfg.postgres.url) databaseNameFor(cfg.postgres.prefix, 'agent-001');
}

/**
 * Hands each slot its share of the shared infrastructure: a port block, a Redis DB index and
 * a Postgres database, recorded in SQLite. Picking and taking a resource is one IMMEDIATE
 * transaction (so concurrent calls, in this process or another, never pick the same one);
 * checks that need I/O (binding ports, creating the database) run after the row reserves the
 * resource, and a failure removes what this call reserved.
 */
export class EnvAllocator {
  readonly store: EnvAllocationStore;
  readonly databases: KnownDatabaseStore;
  readonly appRedisUrl: string;

  constructor(private readonly o: EnvAllocatorOptions) {
    validateEnvConfig(o.config);
    this.store = new EnvAllocationStore(o.db);
    this.databases = new KnownDatabaseStore(o.db);
    this.appRedisUrl = o.config.redis.url ?? o.queueRedisUrl;
  }

  get config(): EnvConfig {
    return this.o.config;
  }

  /**
   * The slot's environment: its existing allocation (kept across restarts), completed with
   * whatever is missing. `finish` runs before the allocation counts as made (write files
   * there); if it or any step fails, nothing this call reserved remains.
   */
  async prepare(
    slot: string,
    finish?: (env: SlotEnvironment) => Promise<void> | void,
  ): Promise<SlotEnvironment> {
    const cfg = this.o.config;
    const range = cfg.redis.enabled ? await this.redisRange() : undefined;
    const before = this.store.get(slot);
    const fresh = { ports: false, redis: false, postgres: false };
    let createdDb = false;
    let alloc = this.reserve(slot, range, fresh);
    try {
      if (fresh.ports || alloc.state === 'pending')
        alloc = await this.verifyPorts(slot, alloc);
      else alloc = await this.reclaimPorts(slot, alloc);
      if (range && alloc.redisDb !== null)
        alloc = await this.claimRedisDb(slot, alloc, range);
      if (cfg.postgres.url && alloc.postgresDb) {
        alloc = await this.claimDatabaseName(slot, alloc);
        createdDb = this.lastClaimCreated;
        this.databases.remember(
          alloc.postgresDb!,
          postgresServer(cfg.postgres.url),
          slot,
          createdDb,
        );
        if (createdDb)
          this.o.log?.(
            `created database ${alloc.postgresDb!}${cfg.postgres.template ? ` from template ${cfg.postgres.template}` : ''}`,
            { agentId: slot },
          );
      }
      const env = { allocation: alloc, vars: this.varsFor(slot, alloc) };
      await finish?.(env);
      alloc = this.store.update(slot, {
        state: 'ready',
        ports:
          alloc.portStart === null
            ? null
            : namedPorts(cfg.ports, alloc.portStart),
      });
      return { allocation: alloc, vars: env.vars };
    } catch (err) {
      await this.rollback(
        slot,
        before,
        fresh,
        createdDb ? alloc.postgresDb : null,
      );
      throw err;
    }
  }

  private async redisRange(): Promise<RedisRange> {
    const [lo, hi] = this.o.config.redis.dbRange;
    return {
      lo,
      hi,
      reserved: sameServer(this.appRedisUrl, this.o.queueRedisUrl)
        ? dbOfUrl(this.o.queueRedisUrl)
        : undefined,
      serverDatabases: await serverDatabases(this.appRedisUrl),
    };
  }

  /** One transaction: the slot's row, with a block, a DB index and a database name where missing. */
  private reserve(
    slot: string,
    range: RedisRange | undefined,
    fresh: { ports: boolean; redis: boolean; postgres: boolean },
  ): EnvAllocation {
    const cfg = this.o.config;
    for (let attempt = 0; ; attempt++) {
      try {
        return this.store.transaction(() => {
          let row = this.store.get(slot) ?? this.store.insert(slot);
          if (row.portStart === null) {
            const start = pickBlock(
              cfg.ports,
              this.store.portRanges(slot),
              new Set(),
            );
            if (start === undefined) throw portsExhausted(cfg.ports, new Map());
            row = this.store.update(slot, {
              portStart: start,
              portCount: cfg.ports.blockSize,
            });
            fresh.ports = true;
          }
          if (range && row.redisDb === null) {
            row = this.store.update(slot, {
              redisDb: pickRedisDb(range, this.store.redisDbs(slot)),
            });
            fresh.redis = true;
          }
          if (cfg.postgres.url && row.postgresDb === null) {
            row = this.store.update(slot, {
              postgresDb: databaseNameFor(cfg.postgres.prefix, slot),
            });
            fresh.postgres = true;
          }
          return row;
        });
      } catch (err) {
        // The transaction holds the write lock, so this only happens if a row was written
        // outside it (another tool); pick again.
        if (isUniqueViolation(err) && attempt < 5) continue;
        throw err;
      }
    }
  }

  /** Test-binds every port of the block; a busy port moves the slot to the next free block. */
  private async verifyPorts(
    slot: string,
    alloc: EnvAllocation,
  ): Promise<EnvAllocation> {
    const cfg = this.o.config.ports;
    const skip = new Set<number>();
    const busyBlocks = new Map<number, number[]>();
    let current = alloc;
    for (;;) {
      const start = current.portStart;
      if (start === null) return current;
      const busy = await busyPorts(portsOfBlock(cfg, start));
      const claimed =
        busy.length === 0
          ? await this.claimPorts(slot, portsOfBlock(cfg, start))
          : new Map<string, string>();
      if (busy.length === 0 && claimed.size === 0) return current;
      if (claimed.size)
        this.o.log?.(
          `port block ${start} is claimed by another repository (${[...new Set([...claimed.values()].map(ownerPath))].join(', ')}); trying the next one`,
          { agentId: slot },
        );
      else
        this.o.log?.(
          `port block ${start} is in use by another program (port ${busy.join(', ')}); trying the next one`,
          { agentId: slot },
        );
      for (const p of claimed.keys()) busy.push(Number(p));
      skip.add(start);
      busyBlocks.set(start, busy);
      current = this.store.transaction(() => {
        const next = pickBlock(cfg, this.store.portRanges(slot), skip);
        if (next === undefined) throw portsExhausted(cfg, busyBlocks);
        return this.store.update(slot, {
          portStart: next,
          portCount: cfg.blockSize,
        });
      });
    }
  }

  private owner(slot: string): Owner {
    return { repoId: this.o.repoId, slot, repoRoot: this.o.repoRoot };
  }

  /** Claims ports on this host in the queue's Redis; the ones other repositories hold. */
  private claimPorts(
    slot: string,
    ports: readonly number[],
  ): Promise<Map<string, string>> {
    return withClaimsRedis(this.o.queueRedisUrl, (r) =>
      new ClaimRegistry(r, PORT_CLAIMS_KEY()).claim(ports, this.owner(slot)),
    );
  }

  /** A ready slot's block, claimed again (Redis may have lost the claim); moved if another repository holds it. */
  private async reclaimPorts(
    slot: string,
    alloc: EnvAllocation,
  ): Promise<EnvAllocation> {
    if (alloc.portStart === null) return alloc;
    const taken = await this.claimPorts(
      slot,
      portsOfBlock(this.o.config.ports, alloc.portStart),
    );
    if (taken.size === 0) return alloc;
    this.o.log?.(
      `port block ${alloc.portStart} is claimed by another repository (${[...new Set([...taken.values()].map(ownerPath))].join(', ')}); moving ${slot} to a free block`,
      { agentId: slot },
    );
    const cfg = this.o.config.ports;
    const moved = this.store.transaction(() => {
      const next = pickBlock(
        cfg,
        this.store.portRanges(slot),
        new Set([alloc.portStart!]),
      );
      if (next === undefined) throw portsExhausted(cfg, new Map());
      return this.store.update(slot, {
        portStart: next,
        portCount: cfg.blockSize,
      });
    });
    return this.verifyPorts(slot, moved);
  }

  /**
   * Claims the slot's Redis DB index in the apps' server; an index another repository holds
   * moves the slot to a free one. When the server has none left, the slot keeps its index,
   * shared with the other repository: logged here, and listed by `status` as a collision.
   */
  private async claimRedisDb(
    slot: string,
    alloc: EnvAllocation,
    range: RedisRange,
  ): Promise<EnvAllocation> {
    return withClaimsRedis(this.appRedisUrl, async (r) => {
      const claims = new ClaimRegistry(r, REDIS_DB_CLAIMS_KEY);
      const elsewhere = new Set<number>();
      let current = alloc;
      for (;;) {
        const taken = await claims.claim([current.redisDb!], this.owner(slot));
        if (taken.size === 0) return current;
        const holder = ownerPath([...taken.values()][0]!);
        elsewhere.add(current.redisDb!);
        const was = current.redisDb;
        try {
          current = this.store.transaction(() =>
            this.store.update(slot, {
              redisDb: pickRedisDb(
                range,
                new Set([...this.store.redisDbs(slot), ...elsewhere]),
              ),
            }),
          );
        } catch (err) {
          if (!(err instanceof SupervisorError)) throw err;
          this.o.log?.(
            `Redis DB ${alloc.redisDb} is claimed by another repository (${holder}) and no unclaimed index is left: ${slot} shares it (raise \`databases\` in redis.conf, or give the repositories separate Redis servers)`,
            { agentId: slot },
          );
          // Back to its first index, unless another slot of this repository took it meanwhile
          // (a DB index is never shared inside one repository).
          return this.store.transaction(() =>
            alloc.redisDb === current.redisDb ||
            this.store.redisDbs(slot).has(alloc.redisDb!)
              ? current
              : this.store.update(slot, { redisDb: alloc.redisDb }),
          );
        }
        this.o.log?.(
          `Redis DB ${was} is claimed by another repository (${holder}); taking ${current.redisDb}`,
          { agentId: slot },
        );
      }
    });
  }

  /** Whether the last claimDatabaseName created the database. */
  private lastClaimCreated = false;

  /** The slot's database, marked as this repository's; a name another repository holds is not used. */
  private async claimDatabaseName(
    slot: string,
    alloc: EnvAllocation,
  ): Promise<EnvAllocation> {
    const pg = this.o.config.postgres;
    const owner = ownerValue(this.owner(slot));
    let current = alloc;
    for (let i = 0; ; i++) {
      const name = current.postgresDb!;
      const r = await claimDatabase(pg.url!, name, owner, pg.template);
      this.lastClaimCreated = r.created;
      if (!r.conflict) return current;
      if (i > 0)
        throw new SupervisorError(
          'ERR_SUP_POSTGRES',
          `database ${name} belongs to another repository (${ownerPath(r.conflict)})`,
          {
            hint: 'set a distinct "env.postgres.prefix" in supervisor.config.json',
          },
        );
      // Named after this repository instead: `<prefix><slot>_<repository id>`.
      const alt = `${name}_${this.o.repoId.slice(0, 8)}`.toLowerCase();
      this.o.log?.(
        `database ${name} belongs to another repository (${ownerPath(r.conflict)}); using ${alt}`,
        { agentId: slot },
      );
      current = this.store.update(slot, { postgresDb: alt });
    }
  }

  private async rollback(
    slot: string,
    before: EnvAllocation | undefined,
    fresh: { ports: boolean; redis: boolean; postgres: boolean },
    createdDb: string | null,
  ): Promise<void> {
    if (createdDb && this.o.config.postgres.url) {
      await dropDatabase(this.o.config.postgres.url, createdDb).then(
        () => this.databases.forget(createdDb),
        (err) =>
          this.o.log?.(
            `could not drop ${createdDb} after a failed allocation`,
            {
              agentId: slot,
              error: coerceError(err).message,
            },
          ),
      );
    }
    if (!before || before.state === 'pending') {
      this.store.remove(slot);
      return;
    }
    this.store.update(slot, {
      ...(fresh.ports ? { portStart: null, portCount: null } : {}),
      ...(fresh.redis ? { redisDb: null } : {}),
      ...(fresh.postgres ? { postgresDb: null } : {}),
    });
  }

  /** The variables of an allocation, under the names apps already read. */
  varsFor(slot: string, alloc: EnvAllocation): Record<string, string> {
    const cfg = this.o.config;
    const vars: Record<string, string> = {};
    if (alloc.portStart !== null) {
      for (const [k, v] of Object.entries(
        namedPorts(cfg.ports, alloc.portStart),
      ))
        vars[k] = String(v);
      vars.PORT_BLOCK_START = String(alloc.portStart);
      vars.PORT_BLOCK_END = String(
        alloc.portStart + (alloc.portCount ?? cfg.ports.blockSize) - 1,
      );
    }
    if (cfg.redis.enabled && alloc.redisDb !== null) {
      vars.REDIS_URL = redisUrlWithDb(this.appRedisUrl, alloc.redisDb);
      vars.REDIS_DB = String(alloc.redisDb);
    }
    if (cfg.postgres.url && alloc.postgresDb) {
      vars.DATABASE_URL = databaseUrl(cfg.postgres.url, alloc.postgresDb);
      vars.POSTGRES_DB = alloc.postgresDb;
      // Apps that read POSTGRES_URL must not get the supervisor's admin URL (the `postgres` database).
      vars.POSTGRES_URL = vars.DATABASE_URL;
    }
    vars.COMPOSE_PROJECT_NAME = composeProjectName(
      this.o.repoRoot,
      this.o.repoId,
      slot,
    );
    return vars;
  }
}
