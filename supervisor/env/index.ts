import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BeforeJobStep } from '../../contract/job.js';
import type { Context } from '../context.js';
import type { Daemon, Logger } from '../daemon.js';
import { SupervisorError } from '../errors.js';
import { EnvAllocator } from './allocator.js';
import { envCollisions } from './collisions.js';
import { releaseClaims } from './release-claims.js';
import { checkEnvCapacity } from './capacity.js';
import {
  dbOfUrl,
  redisUrlWithDb,
  sameServer,
  serverDatabases,
} from './redis-db.js';
import { writeEnvFile } from './env-file.js';
import { dropDatabase, postgresServer } from './postgres.js';
import { EnvAllocationStore, KnownDatabaseStore } from './store.js';
import {
  describeSync,
  planIncludedFiles,
  syncIncludedFiles,
} from '../../contract/worktreeinclude.js';

/** A compiled step script; loaded from the TypeScript sources (tests), the one in dist/. */
const script = (name: string) => {
  const compiled = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  return existsSync(compiled)
    ? compiled
    : fileURLToPath(
        new URL(`../../dist/supervisor/env/${name}.js`, import.meta.url),
      );
};
const RESET_SCRIPT = script('reset-db');
const FLUSH_SCRIPT = script('flush-redis');

/** A slot's environment as `supervisor status --json` shows it. */
export interface EnvStatus {
  ports: Record<string, number>;
  portBlock: { start: number; end: number } | null;
  redisDb: number | null;
  postgresDb: string | null;
}

/**
 * Per-slot dev environments on shared infrastructure: before a slot's runner starts, copy the
 * `.worktreeinclude` files into its worktree, allocate (or find) its port block, Redis DB and
 * Postgres database, write `.env.worktree`, and hand the same variables to the agent.
 */
export async function attachEnvironments(
  daemon: Daemon,
  log: Logger,
): Promise<void> {
  const { config, paths, db } = daemon.ctx;
  const cfg = config.env;
  if (!cfg.enabled) return;
  const allocator = new EnvAllocator({
    db,
    config: cfg,
    queueRedisUrl: daemon.redisUrl,
    repoRoot: paths.root,
    repoId: paths.repoId,
    log,
  });
  // The server's real number of databases bounds the count too (asked once, here).
  const serverDbs = cfg.redis.enabled
    ? await serverDatabases(allocator.appRedisUrl).catch(() => undefined)
    : undefined;
  daemon.addSlotHook({
    checkCount: (n) =>
      checkEnvCapacity(cfg, db, n, {
        queueRedisUrl: daemon.redisUrl,
        serverDatabases: serverDbs,
      }),
    // The environment is reserved first; the worktree is made only once it is held.
    // A .worktreeinclude that names files outside the repository is refused before that.
    prepare: async (agentId, worktree) => {
      const plan = await planIncludedFiles(paths.root);
      const env = await allocator.prepare(agentId, async ({ vars }) => {
        const worktreePath = await worktree();
        const synced = syncIncludedFiles(paths.root, worktreePath, plan);
        if (synced.copied + synced.updated > 0)
          log(`.worktreeinclude: ${describeSync(synced)}`, { agentId });
        writeEnvFile(worktreePath, agentId, vars);
      });
      const a = env.allocation;
      for (const line of await envCollisions(
        daemon.ctx,
        [env.allocation],
        daemon.redisUrl,
      ))
        log(`collision with another repository: ${line}`, { agentId });
      log(`environment ready`, {
        agentId,
        ports:
          a.portStart === null
            ? null
            : `${a.portStart}-${a.portStart + (a.portCount ?? 1) - 1}`,
        redisDb: a.redisDb,
        postgresDb: a.postgresDb,
      });
      return env.vars;
    },
    // resetPerIssue: the runner recreates the database after it claimed a job and before the
    // agent starts (the only moment that is both early enough and per job).
    // The main worktree is at hand only for runners on this host outside containers: the runner
    // re-syncs .worktreeinclude itself before each job (agent-runner/before-job.ts).
    includeRoot: () =>
      daemon.ctx.config.runtime === 'process' &&
      daemon.ctx.config.git.runners === 'shared'
        ? paths.root
        : undefined,
    beforeJob: (agentId) => {
      const steps: BeforeJobStep[] = [];
      const alloc = allocator.store.get(agentId);
      const pg = cfg.postgres;
      const dbName = alloc?.postgresDb;
      if (pg.resetPerIssue && pg.url && dbName)
        steps.push({
          name: `reset database ${dbName}`,
          command: [process.execPath, RESET_SCRIPT],
          env: {
            SUPERVISOR_RESET_PG_URL: pg.url,
            SUPERVISOR_RESET_PG_DB: dbName,
            SUPERVISOR_RESET_PG_TEMPLATE: pg.template ?? '',
          },
        });
      const redisDb = alloc?.redisDb;
      if (
        cfg.redis.enabled &&
        (cfg.redis.resetPerIssue ?? pg.resetPerIssue) &&
        redisDb !== null &&
        redisDb !== undefined
      )
        steps.push({
          name: `flush redis db ${redisDb}`,
          command: [process.execPath, FLUSH_SCRIPT],
          env: {
            SUPERVISOR_RESET_REDIS_URL: redisUrlWithDb(
              allocator.appRedisUrl,
              redisDb,
            ),
            SUPERVISOR_RESET_REDIS_DB: String(redisDb),
            SUPERVISOR_RESET_REDIS_KEEP_DB: sameServer(
              allocator.appRedisUrl,
              daemon.redisUrl,
            )
              ? String(dbOfUrl(daemon.redisUrl))
              : '',
          },
        });
      return steps;
    },
  });
  const [lo, hi] = cfg.redis.dbRange;
  log(
    `environments: port blocks of ${cfg.ports.blockSize} from ${cfg.ports.base}` +
      (cfg.redis.enabled
        ? `, Redis DBs ${lo}..${hi}`
        : ', Redis isolation off') +
      (cfg.postgres.url
        ? `, databases ${cfg.postgres.prefix}agent_NNN${cfg.postgres.template ? ` from ${cfg.postgres.template}` : ''}${cfg.postgres.resetPerIssue ? ' (reset per issue)' : ''}`
        : ', no POSTGRES_URL: no databases'),
  );
}

export async function envStatus(
  ctx: Context,
): Promise<(agentId: string) => EnvStatus | undefined> {
  const rows = new Map(
    new EnvAllocationStore(ctx.db)
      .list()
      .filter((a) => a.state === 'ready')
      .map((a) => [a.slot, a]),
  );
  return (agentId) => {
    const a = rows.get(agentId);
    if (!a) return undefined;
    return {
      ports: a.ports ?? {},
      portBlock:
        a.portStart === null
          ? null
          : { start: a.portStart, end: a.portStart + (a.portCount ?? 1) - 1 },
      redisDb: a.redisDb,
      postgresDb: a.postgresDb,
    };
  };
}

/** Frees a slot's allocation; its database is dropped only with `dropDatabases`, else kept for reuse. */
export async function releaseEnvironment(
  ctx: Context,
  agentId: string,
  opts: { dropDatabases: boolean },
): Promise<void> {
  const store = new EnvAllocationStore(ctx.db);
  const a = store.get(agentId);
  if (!a) return;
  if (opts.dropDatabases && a.postgresDb) {
    await dropDatabase(adminUrlToDrop(ctx, a.postgresDb), a.postgresDb);
    new KnownDatabaseStore(ctx.db).forget(a.postgresDb);
  }
  await releaseClaims(ctx, a);
  store.remove(agentId);
}

function adminUrlToDrop(ctx: Context, db: string): string {
  const url = ctx.config.env.postgres.url;
  if (!url) {
    throw new SupervisorError(
      'ERR_SUP_POSTGRES',
      `cannot drop ${db}: POSTGRES_URL is not set`,
      {
        hint: 'set POSTGRES_URL (or env.postgres.url) to the server the database lives on, or run cleanup without --drop-databases to keep it',
      },
    );
  }
  return url;
}

/**
 * Drops the remembered databases no slot holds any more (slots freed by an earlier cleanup
 * without --drop-databases). Databases recorded on another server than POSTGRES_URL names
 * are left alone and reported.
 */
export async function dropReleasedDatabases(
  ctx: Context,
): Promise<{ dropped: string[]; otherServer: string[] }> {
  const known = new KnownDatabaseStore(ctx.db);
  const held = new Set(
    new EnvAllocationStore(ctx.db)
      .list()
      .map((a) => a.postgresDb)
      .filter(Boolean),
  );
  const out = { dropped: [] as string[], otherServer: [] as string[] };
  const loose = known.list().filter((d) => !held.has(d.name));
  if (loose.length === 0) return out;
  const url = adminUrlToDrop(ctx, loose[0]!.name);
  const server = postgresServer(url);
  for (const d of loose) {
    if (d.server && d.server !== server) {
      out.otherServer.push(`${d.name} (on ${d.server})`);
      continue;
    }
    await dropDatabase(url, d.name);
    known.forget(d.name);
    out.dropped.push(d.name);
  }
  return out;
}
