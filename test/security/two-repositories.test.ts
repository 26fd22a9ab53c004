/**
 * Two repositories on one machine with the same environment settings (as two repositories
 * with the defaults have), sharing Redis and Postgres, started at the same moment: their slots
 * get disjoint port blocks, Redis DB indices and databases, and a real app (the scripted
 * agent's env-probe: keys in its Redis DB, rows in its database, binding its ports) writing in
 * one never lands in the other's. `status` reports no collision.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { expect, it, describe } from 'vitest';
import { useCleanups } from '../helpers/cleanup.js';
import {
  cliJson,
  spawnSupervisor,
  testEnv,
  waitFor,
  waitReady,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
import {
  PG_ADMIN,
  REDIS,
  dropDatabasesWithPrefix,
  pgQuery,
  randomPortBase,
  randomPrefix,
} from '../env/helpers.js';

const cleanups = useCleanups();

type Agent = {
  id: string;
  env?: {
    portBlock: { start: number; end: number } | null;
    redisDb: number | null;
    postgresDb: string | null;
  };
};

describe('repositories sharing a machine', () => {
  it('two repositories with the same settings started at once get disjoint ports, Redis DBs and databases', async () => {
    const base = randomPortBase();
    const prefix = randomPrefix();
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    const repos = [0, 1].map((i) => {
      const repo = tempRepo();
      cleanups.push(repo.cleanup);
      // The same settings in both: what two repositories with the defaults share.
      writeFileSync(
        join(repo.dir, 'supervisor.config.json'),
        JSON.stringify({ env: { ports: { base }, postgres: { prefix } } }),
      );
      const ns = `${prefix.slice(0, -1)}_${i}`;
      const env = testEnv({
        POSTGRES_URL: PG_ADMIN,
        AGENT_ECHO_FILE: join(tempDir('sup-echo-'), 'echo'),
      });
      return { dir: repo.dir, env, ns };
    });
    cleanups.push(async () => {
      const r = new Redis(REDIS);
      for (let db = 1; db <= 15; db++) {
        await r.select(db);
        for (const { ns } of repos) {
          const keys = await r.keys(`probe:${ns}:*`);
          if (keys.length) await r.del(...keys);
        }
      }
      r.disconnect();
    });
    for (const r of repos)
      for (const n of [1, 2])
        await cliJson(
          ['issue', 'add', `probe ${n}`, '--body', `env-probe: ${r.ns}`],
          { cwd: r.dir, env: r.env },
        );
    // Started at the same moment.
    const sups = repos.map((r) =>
      spawnSupervisor(r.dir, r.env, ['--agents', '2', '--no-dashboard']),
    );
    for (const s of sups) cleanups.push(async () => void (await s.stop()));
    await Promise.all(sups.map((s, i) => waitReady(s, repos[i]!.dir, 60_000)));
    for (const r of repos)
      await waitFor(
        async () => {
          const list = await cliJson<Array<{ status: string }>>(
            ['issue', 'list'],
            { cwd: r.dir, env: r.env },
          );
          return list.every((i) => i.status === 'done');
        },
        { timeoutMs: 120_000, what: `issues of ${r.dir} done` },
      );
    const statuses = await Promise.all(
      repos.map((r) =>
        cliJson<{ agents: Agent[]; warnings: string[] }>(['status'], {
          cwd: r.dir,
          env: r.env,
        }),
      ),
    );
    const slots = statuses.flatMap((s, i) =>
      s.agents.map((a) => ({ repo: i, ...a.env! })),
    );
    expect(slots).toHaveLength(4);
    // Port blocks: pairwise disjoint.
    for (const a of slots)
      for (const b of slots)
        if (a !== b)
          expect(
            a.portBlock!.end < b.portBlock!.start ||
              b.portBlock!.end < a.portBlock!.start,
            JSON.stringify([a, b]),
          ).toBe(true);
    expect(new Set(slots.map((s) => s.redisDb)).size).toBe(4);
    expect(new Set(slots.map((s) => s.postgresDb)).size).toBe(4);
    for (const s of statuses)
      expect(s.warnings.filter((w) => /another repository/.test(w))).toEqual(
        [],
      );

    // What the apps wrote stayed in their own repository's DBs and databases.
    const r = new Redis(REDIS);
    cleanups.push(() => r.disconnect());
    for (const slot of slots) {
      const other = repos[1 - slot.repo]!.ns;
      const mine = repos[slot.repo]!.ns;
      await r.select(slot.redisDb!);
      expect(await r.keys(`probe:${other}:*`)).toEqual([]);
      const tables = (
        await pgQuery<{ t: string }>(
          "SELECT table_name AS t FROM information_schema.tables WHERE table_name LIKE 'probe_%'",
          [],
          PG_ADMIN.replace(/\/postgres$/, `/${slot.postgresDb}`),
        )
      ).map((x) => x.t);
      expect(tables).not.toContain(`probe_${other}`);
      void mine;
    }
    // And each database is marked as its repository's.
    for (const slot of slots) {
      const [row] = await pgQuery<{ c: string }>(
        "SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = $1",
        [slot.postgresDb],
      );
      expect(row!.c).toMatch(/^agent-supervisor owner=[0-9a-f]+\/agent-00\d /);
    }
  }, 240_000);
});
