import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EnvSchema, loadConfig } from '../../supervisor/config.js';
import {
  EnvAllocator,
  type EnvConfig,
} from '../../supervisor/env/allocator.js';
import { canBind, portsOfBlock } from '../../supervisor/env/ports.js';
import { databaseNameFor, quoteIdent } from '../../supervisor/env/postgres.js';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { SupervisorError } from '../../supervisor/errors.js';
import { ROOT } from '../helpers/cli.js';
import { PrivateRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/repo.js';
import {
  PG_ADMIN,
  REDIS,
  databasesWithPrefix,
  dropDatabasesWithPrefix,
  holdPorts,
  pgQuery,
  randomPortBase,
  randomPrefix,
} from './helpers.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function openDb(dir = tempDir('sup-env-')): { db: Db; file: string } {
  const file = join(dir, 'supervisor.db');
  const db = openDatabase(file);
  cleanups.push(() => db.close());
  return { db, file };
}

function envConfig(input: Record<string, unknown>): EnvConfig {
  return EnvSchema.parse(input);
}

function allocator(db: Db, cfg: EnvConfig): EnvAllocator {
  return new EnvAllocator({
    db,
    config: cfg,
    queueRedisUrl: REDIS,
    repoRoot: '/tmp/some-repo',
    repoId: 'abcdef123456',
  });
}

async function expectError(
  p: Promise<unknown>,
  code: string,
  message: RegExp,
): Promise<SupervisorError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SupervisorError);
  expect((err as SupervisorError).code).toBe(code);
  expect((err as SupervisorError).message).toMatch(message);
  return err as SupervisorError;
}

const slots = (n: number) =>
  Array.from(
    { length: n },
    (_, i) => `agent-${String(i + 1).padStart(3, '0')}`,
  );

describe('environment allocation', () => {
  it('gives concurrent slots distinct, bindable port blocks, Redis DBs and databases, and reuses them after a restart', async () => {
    const prefix = randomPrefix();
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    const base = randomPortBase();
    const { db, file } = openDb();
    const cfg = envConfig({
      ports: { base, names: { APP_PORT: 0, VITE_PORT: { base: base + 5000 } } },
      postgres: { url: PG_ADMIN, prefix },
    });
    const alloc = allocator(db, cfg);
    const envs = await Promise.all(slots(6).map((s) => alloc.prepare(s)));
    const starts = envs.map((e) => e.allocation.portStart);
    expect(new Set(starts).size).toBe(6);
    expect(new Set(envs.map((e) => e.allocation.redisDb)).size).toBe(6);
    expect(
      envs.every(
        (e) => e.allocation.redisDb! >= 1 && e.allocation.redisDb! <= 15,
      ),
    ).toBe(true);
    expect(new Set(envs.map((e) => e.allocation.postgresDb)).size).toBe(6);
    expect(await databasesWithPrefix(prefix)).toEqual(
      slots(6).map((s) => `${prefix}${s.replace('-', '_')}`),
    );
    for (const e of envs) {
      const start = e.allocation.portStart!;
      expect(e.vars).toMatchObject({
        PORT: String(start),
        APP_PORT: String(start),
        VITE_PORT: String(base + 5000 + (start - base)),
      });
      expect(e.vars.REDIS_URL).toBe(
        `redis://127.0.0.1:6379/${e.allocation.redisDb}`,
      );
      expect(e.vars.DATABASE_URL).toBe(
        `postgres://postgres@127.0.0.1:5432/${e.allocation.postgresDb}`,
      );
      // Really free on the host, every port of the block and the rule port.
      for (const p of portsOfBlock(cfg.ports, start)) {
        expect(await canBind(p, '127.0.0.1')).toBe(true);
        expect(await canBind(p, '0.0.0.0')).toBe(true);
      }
    }
    // A restart: a new process opens the same file and gets the same allocation back.
    db.close();
    const db2 = openDatabase(file);
    cleanups.push(() => db2.close());
    const again = await allocator(db2, cfg).prepare('agent-004');
    const before = envs[3]!.allocation;
    expect(again.allocation).toMatchObject({
      portStart: before.portStart,
      redisDb: before.redisDb,
      postgresDb: before.postgresDb,
      state: 'ready',
    });
  });

  it('never hands out the same block, DB index or database to allocators in several processes at once', async () => {
    const prefix = randomPrefix();
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    const base = randomPortBase();
    const { db, file } = openDb();
    db.close();
    const cfg = {
      ports: { base, blockSize: 4, maxBlocks: 40 },
      postgres: { url: PG_ADMIN, prefix },
    };
    // A Redis of its own: on the shared one, other repositories on this machine (other tests,
    // a demo left for inspection) hold DB index claims and leave fewer than 12 of 16 free.
    const redis = await PrivateRedis.create('none');
    await redis.start();
    cleanups.push(() => redis.stop());
    // 4 processes × 3 slots each, all started together against one SQLite file.
    const script = `
      const { openDatabase } = await import(${JSON.stringify(join(ROOT, 'dist/supervisor/store/db.js'))});
      const { EnvSchema } = await import(${JSON.stringify(join(ROOT, 'dist/supervisor/config.js'))});
      const { EnvAllocator } = await import(${JSON.stringify(join(ROOT, 'dist/supervisor/env/allocator.js'))});
      const db = openDatabase(process.argv[1]);
      const a = new EnvAllocator({ db, config: EnvSchema.parse(JSON.parse(process.argv[2])), queueRedisUrl: ${JSON.stringify(redis.url)}, repoRoot: '/tmp/r', repoId: 'r' });
      const out = await Promise.all(process.argv.slice(3).map((s) => a.prepare(s).then((e) => e.allocation)));
      console.log(JSON.stringify(out));
    `;
    const runs = [0, 1, 2, 3].map(
      (p) =>
        new Promise<any[]>((resolve, reject) => {
          const ids = [1, 2, 3].map(
            (i) => `agent-${String(p * 3 + i).padStart(3, '0')}`,
          );
          const child = spawn(
            process.execPath,
            [
              '--input-type=module',
              '-e',
              script,
              file,
              JSON.stringify(cfg),
              ...ids,
            ],
            { stdio: ['ignore', 'pipe', 'pipe'] },
          );
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.on('close', (code) =>
            code === 0
              ? resolve(JSON.parse(out))
              : reject(new Error(`allocator process exited ${code}: ${err}`)),
          );
        }),
    );
    const all = (await Promise.all(runs)).flat();
    expect(all).toHaveLength(12);
    expect(new Set(all.map((a) => a.portStart)).size).toBe(12);
    expect(new Set(all.map((a) => a.redisDb)).size).toBe(12);
    expect(new Set(all.map((a) => a.postgresDb)).size).toBe(12);
    const ranges = all
      .map((a) => [a.portStart, a.portStart + a.portCount] as const)
      .sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < ranges.length; i++)
      expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]);
    expect(await databasesWithPrefix(prefix)).toHaveLength(12);
  });

  it('skips a block when one of its ports, or all of them, are held by another program', async () => {
    const base = randomPortBase();
    const { db } = openDb();
    const cfg = envConfig({
      ports: { base, blockSize: 5, maxBlocks: 4 },
      redis: { enabled: false },
    });
    const one = await holdPorts([base + 3]);
    const all = await holdPorts([
      base + 5,
      base + 6,
      base + 7,
      base + 8,
      base + 9,
    ]);
    cleanups.push(one.release, all.release);
    const env = await allocator(db, cfg).prepare('agent-001');
    expect(env.allocation.portStart).toBe(base + 10);
    expect(env.vars.REDIS_URL).toBeUndefined();
    expect(env.allocation.redisDb).toBeNull();
    // Without POSTGRES_URL no database is allocated and nothing fails.
    expect(env.allocation.postgresDb).toBeNull();
    expect(env.vars.DATABASE_URL).toBeUndefined();
  });

  it('fails clearly when the port range is exhausted and keeps nothing half-allocated', async () => {
    const base = randomPortBase();
    const { db } = openDb();
    const cfg = envConfig({
      ports: { base, blockSize: 3, maxBlocks: 2 },
      redis: { enabled: false },
    });
    const holder = await holdPorts([base + 4]);
    cleanups.push(holder.release);
    const alloc = allocator(db, cfg);
    expect((await alloc.prepare('agent-001')).allocation.portStart).toBe(base);
    const err = await expectError(
      alloc.prepare('agent-002'),
      'ERR_SUP_ENV_EXHAUSTED',
      new RegExp(
        `no free port block.*${base + 3} \\(port ${base + 4} in use\\)`,
      ),
    );
    expect(err.hint).toMatch(/maxBlocks/);
    expect(alloc.store.get('agent-002')).toBeUndefined();
    await holder.release();
    expect((await alloc.prepare('agent-002')).allocation.portStart).toBe(
      base + 3,
    );
    await expectError(
      alloc.prepare('agent-003'),
      'ERR_SUP_ENV_EXHAUSTED',
      /all 2 blocks of 3 ports/,
    );
  });

  it("respects the Redis server's real number of databases", async () => {
    const { db } = openDb();
    const base = randomPortBase();
    const alloc = allocator(
      db,
      envConfig({ ports: { base }, redis: { dbRange: [14, 40] } }),
    );
    expect((await alloc.prepare('agent-001')).allocation.redisDb).toBe(14);
    expect((await alloc.prepare('agent-002')).allocation.redisDb).toBe(15);
    const err = await expectError(
      alloc.prepare('agent-003'),
      'ERR_SUP_ENV_EXHAUSTED',
      /no free Redis DB index.*14\.\.40.*beyond the server's 16 databases/,
    );
    expect(err.hint).toMatch(/databases.*redis\.conf/);
    expect(alloc.store.get('agent-003')).toBeUndefined();
    const beyond = allocator(
      openDb().db,
      envConfig({ ports: { base }, redis: { dbRange: [20, 30] } }),
    );
    await expectError(
      beyond.prepare('agent-001'),
      'ERR_SUP_ENV_EXHAUSTED',
      /20\.\.30 lies beyond the Redis server's 16 databases/,
    );
  });

  it('clones the database from the template, and reuses an existing database without touching it', async () => {
    const prefix = randomPrefix();
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    const template = `${prefix}template`;
    await pgQuery(`CREATE DATABASE "${template}"`);
    await pgQuery(
      'CREATE TABLE seeded (id int); INSERT INTO seeded VALUES (1), (2), (3)',
      [],
      `postgres://postgres@127.0.0.1:5432/${template}`,
    );
    const existing = `${prefix}agent_002`;
    await pgQuery(`CREATE DATABASE "${existing}"`);
    await pgQuery(
      "CREATE TABLE mine (note text); INSERT INTO mine VALUES ('keep me')",
      [],
      `postgres://postgres@127.0.0.1:5432/${existing}`,
    );
    const { db } = openDb();
    const alloc = allocator(
      db,
      envConfig({
        ports: { base: randomPortBase() },
        postgres: { url: PG_ADMIN, prefix, template },
      }),
    );
    const [a, b] = await Promise.all([
      alloc.prepare('agent-001'),
      alloc.prepare('agent-002'),
    ]);
    expect(
      await pgQuery(
        'SELECT count(*)::int AS n FROM seeded',
        [],
        a.vars.DATABASE_URL,
      ),
    ).toEqual([{ n: 3 }]);
    expect(
      await pgQuery('SELECT note FROM mine', [], b.vars.DATABASE_URL),
    ).toEqual([{ note: 'keep me' }]);
    expect(b.allocation.postgresDb).toBe(existing);
  });

  it('fails a slot whose Postgres is unreachable or refuses CREATEDB, leaving nothing allocated, other slots unaffected', async () => {
    const prefix = randomPrefix();
    const role = `${prefix}nocreate`;
    await pgQuery(`CREATE ROLE "${role}" LOGIN NOCREATEDB`);
    cleanups.push(async () => {
      await dropDatabasesWithPrefix(prefix);
      await pgQuery(`DROP ROLE IF EXISTS "${role}"`);
    });
    const { db } = openDb();
    const base = randomPortBase();
    const unreachable = allocator(
      db,
      envConfig({
        ports: { base },
        postgres: { url: 'postgres://postgres@127.0.0.1:1/postgres', prefix },
      }),
    );
    const e1 = await expectError(
      unreachable.prepare('agent-001'),
      'ERR_SUP_POSTGRES',
      /Postgres at postgres:\/\/postgres@127\.0\.0\.1:1\/postgres is unreachable/,
    );
    expect(e1.hint).toMatch(/POSTGRES_URL/);
    expect(unreachable.store.list()).toEqual([]);

    const noRights = allocator(
      db,
      envConfig({
        ports: { base },
        postgres: { url: `postgres://${role}@127.0.0.1:5432/postgres`, prefix },
      }),
    );
    const e2 = await expectError(
      noRights.prepare('agent-002'),
      'ERR_SUP_POSTGRES',
      new RegExp(`role "${role}" may not create databases`),
    );
    expect(e2.hint).toMatch(/CREATEDB/);
    expect(noRights.store.list()).toEqual([]);
    expect(await databasesWithPrefix(prefix)).toEqual([]);

    const fine = allocator(
      db,
      envConfig({ ports: { base }, postgres: { url: PG_ADMIN, prefix } }),
    );
    const ok = await fine.prepare('agent-003');
    expect(ok.allocation.postgresDb).toBe(`${prefix}agent_003`);
    expect(ok.allocation.portStart).toBe(base);
  });

  it('refuses prefixes, templates and names that would make invalid or injectable SQL', () => {
    const bad = [
      'app"; DROP DATABASE postgres; --',
      'App_',
      '1app',
      "app'",
      'a'.repeat(40),
    ];
    for (const prefix of bad) {
      expect(() =>
        loadConfig({
          env: {},
          flags: { env: { postgres: { url: PG_ADMIN, prefix } } },
        }),
      ).toThrow(/env\.postgres\.prefix/);
      expect(() => databaseNameFor(prefix, 'agent-001')).toThrow(
        SupervisorError,
      );
    }
    expect(() =>
      loadConfig({
        env: {},
        flags: { env: { postgres: { template: 'tpl" WITH OWNER x' } } },
      }),
    ).toThrow(/env\.postgres\.template/);
    expect(() => databaseNameFor('app_', 'agent-001; DROP')).toThrow(
      /not a slot id/,
    );
    expect(databaseNameFor('app_', 'agent-007')).toBe('app_agent_007');
    expect(quoteIdent('we"ird')).toBe('"we""ird"');
    // And the allocator itself checks the prefix before anything reaches Postgres.
    const cfg = { ...envConfig({ postgres: { url: PG_ADMIN } }) };
    const evil = {
      ...cfg,
      postgres: {
        ...cfg.postgres,
        prefix: `x"; DROP DATABASE postgres; --${randomBytes(2).toString('hex')}`,
      },
    };
    expect(() => allocator(openDb().db, evil)).toThrow(
      /not a safe database name prefix/,
    );
  });
});
