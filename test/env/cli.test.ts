import {
  chmodSync,
  existsSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ROOT,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
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

/**
 * A slot that cannot be started: `crashed` while the scaler retries it, `quarantined` once it
 * has given up (after a re-creation of the slot that did not help either).
 */
const failedToStart = (state: string | undefined): boolean =>
  state === 'crashed' || state === 'quarantined';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  dir: string;
  env: Record<string, string>;
  prefix: string;
  base: number;
  echo: string;
  ns: string;
}

/** A repo with a config whose ports, database names and probe keys are this test's own. */
function setup(
  opts: {
    env?: Record<string, unknown>;
    vars?: Record<string, string>;
    postgres?: boolean;
  } = {},
): Setup {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const prefix = randomPrefix();
  const ns = prefix.slice(0, -1);
  cleanups.push(() => dropDatabasesWithPrefix(prefix));
  cleanups.push(() => deleteProbeKeys(ns));
  const base = randomPortBase();
  const envCfg = {
    ...opts.env,
    ports: { base, ...((opts.env?.ports as object) ?? {}) },
    postgres: { prefix, ...((opts.env?.postgres as object) ?? {}) },
  };
  writeFileSync(
    join(repo.dir, 'supervisor.config.json'),
    JSON.stringify({ env: envCfg }, null, 2),
  );
  const echo = join(tempDir('sup-echo-'), 'echo');
  const env = testEnv({
    AGENT_ECHO_FILE: echo,
    ...(opts.postgres === false ? {} : { POSTGRES_URL: PG_ADMIN }),
    ...opts.vars,
  });
  return { dir: repo.dir, env, prefix, base, echo, ns };
}

async function deleteProbeKeys(ns: string): Promise<void> {
  const r = new Redis(REDIS);
  try {
    for (let db = 1; db <= 15; db++) {
      await r.select(db);
      const keys = await r.keys(`probe:${ns}:*`);
      if (keys.length) await r.del(...keys);
    }
  } finally {
    r.disconnect();
  }
}

async function start(s: Setup, args: string[]): Promise<RunningSupervisor> {
  const sup = await startSupervisor(s.dir, s.env, [...args, '--no-dashboard']);
  cleanups.push(async () => void (await sup.stop()));
  return sup;
}

type Agent = {
  id: string;
  state: string;
  lastError: string | null;
  worktree: string;
  env?: {
    ports: Record<string, number>;
    portBlock: { start: number; end: number };
    redisDb: number | null;
    postgresDb: string | null;
  };
};

async function agents(s: Setup): Promise<Agent[]> {
  return (
    await cliJson<{ agents: Agent[] }>(['status'], { cwd: s.dir, env: s.env })
  ).agents;
}

function readEnvFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

async function issuesDone(
  s: Setup,
  n: number,
): Promise<Array<{ id: number; status: string; agent: string }> | false> {
  const list = await cliJson<
    Array<{ id: number; status: string; agent: string }>
  >(['issue', 'list'], { cwd: s.dir, env: s.env });
  return list.length === n &&
    list.every((i) => i.status === 'done' || i.status === 'failed')
    ? list
    : false;
}

const probe = (s: Setup, issue: number) =>
  JSON.parse(readFileSync(`${s.echo}.${issue}.probe`, 'utf8'));

function allocationRows(dir: string): string[] {
  const db = new Database(join(dir, '.supervisor', 'supervisor.db'), {
    readonly: true,
  });
  try {
    return (
      db
        .prepare('SELECT slot FROM env_allocations ORDER BY slot')
        .all() as Array<{ slot: string }>
    ).map((r) => r.slot);
  } finally {
    db.close();
  }
}

describe('environments through the CLI', () => {
  it('scale 5 gives five slots distinct ports, Redis DBs and databases, in status, .env.worktree and the agent env; cleanup releases, --drop-databases drops', async () => {
    const s = setup();
    await start(s, ['--agents', '0']);
    const scaled = await runCli(['scale', '5'], { cwd: s.dir, env: s.env });
    expect(scaled.code, scaled.stderr).toBe(0);
    const list = await agents(s);
    expect(list.map((a) => a.state)).toEqual(Array(5).fill('idle'));
    const envs = list.map((a) => a.env!);
    expect(new Set(envs.map((e) => e.portBlock.start)).size).toBe(5);
    expect(new Set(envs.map((e) => e.redisDb)).size).toBe(5);
    expect(envs.map((e) => e.postgresDb).sort()).toEqual(
      [1, 2, 3, 4, 5].map((n) => `${s.prefix}agent_00${n}`),
    );
    expect(await databasesWithPrefix(s.prefix)).toEqual(
      [1, 2, 3, 4, 5].map((n) => `${s.prefix}agent_00${n}`),
    );
    const composeNames = new Set<string>();
    for (const a of list) {
      const file = readEnvFile(join(a.worktree, '.env.worktree'));
      expect(file).toMatchObject({
        PORT: String(a.env!.portBlock.start),
        APP_PORT: String(a.env!.ports.APP_PORT),
        VITE_PORT: String(a.env!.ports.VITE_PORT),
        REDIS_DB: String(a.env!.redisDb),
        REDIS_URL: `redis://127.0.0.1:6379/${a.env!.redisDb}`,
        POSTGRES_DB: a.env!.postgresDb!,
        DATABASE_URL: `postgres://postgres@127.0.0.1:5432/${a.env!.postgresDb}`,
        POSTGRES_URL: `postgres://postgres@127.0.0.1:5432/${a.env!.postgresDb}`,
      });
      expect(file.COMPOSE_PROJECT_NAME).toMatch(new RegExp(`-${a.id}$`));
      composeNames.add(file.COMPOSE_PROJECT_NAME!);
    }
    expect(composeNames.size).toBe(5);

    // What the agent process really sees is its slot's allocation, and its ports bind.
    for (let i = 1; i <= 5; i++)
      await runCli(
        [
          'issue',
          'add',
          `probe ${i}`,
          '--body',
          `env-probe: ${s.ns}\nsleep: 400`,
        ],
        { cwd: s.dir, env: s.env },
      );
    const done = await waitFor(() => issuesDone(s, 5), {
      timeoutMs: 60_000,
      what: 'probes done',
    });
    for (const issue of done) {
      expect(issue.status).toBe('done');
      const seen = JSON.parse(
        readFileSync(`${s.echo}.${issue.id}.env`, 'utf8'),
      );
      const file = readEnvFile(
        join(s.dir, '.worktrees', issue.agent, '.env.worktree'),
      );
      for (const k of [
        'PORT',
        'APP_PORT',
        'VITE_PORT',
        'REDIS_URL',
        'REDIS_DB',
        'DATABASE_URL',
        'POSTGRES_DB',
        'POSTGRES_URL',
        'COMPOSE_PROJECT_NAME',
      ])
        expect(seen[k], k).toBe(file[k]);
      expect(probe(s, issue.id).bound).toEqual({ PORT: true, VITE_PORT: true });
    }

    const stop = await runCli(['stop'], { cwd: s.dir, env: s.env });
    expect(stop.code).toBe(0);
    const clean = await cliJson<{ removed: string[] }>(['cleanup'], {
      cwd: s.dir,
      env: s.env,
    });
    expect(clean.removed).toHaveLength(5);
    expect(allocationRows(s.dir)).toEqual([]);
    // Released, not dropped: the databases stay for the next allocation of those slots.
    expect(await databasesWithPrefix(s.prefix)).toHaveLength(5);
    await pgQuery(
      `CREATE TABLE kept (x int)`,
      [],
      `postgres://postgres@127.0.0.1:5432/${s.prefix}agent_001`,
    );

    await start(s, ['--agents', '2']);
    await waitFor(
      async () =>
        (await agents(s)).filter((a) => a.state === 'idle').length === 2,
      { what: 'two agents idle' },
    );
    expect(
      await pgQuery(
        `SELECT to_regclass('kept') IS NOT NULL AS reused`,
        [],
        `postgres://postgres@127.0.0.1:5432/${s.prefix}agent_001`,
      ),
    ).toEqual([{ reused: true }]);
    expect((await runCli(['stop'], { cwd: s.dir, env: s.env })).code).toBe(0);
    const dropped = await runCli(['cleanup', '--drop-databases'], {
      cwd: s.dir,
      env: s.env,
    });
    expect(dropped.code, dropped.stderr).toBe(0);
    expect(allocationRows(s.dir)).toEqual([]);
    // The databases of slots 3-5, freed by the earlier cleanup, are remembered and dropped too.
    expect(await databasesWithPrefix(s.prefix)).toEqual([]);
  });

  it("two agents writing to their Redis DB and database never see each other's data", async () => {
    const s = setup();
    await start(s, ['--agents', '2']);
    await waitFor(
      async () =>
        (await agents(s)).filter((a) => a.state === 'idle').length === 2,
      { what: 'two agents idle' },
    );
    for (let i = 1; i <= 4; i++)
      await runCli(
        [
          'issue',
          'add',
          `probe ${i}`,
          '--body',
          `env-probe: ${s.ns}\nsleep: 800`,
        ],
        { cwd: s.dir, env: s.env },
      );
    const done = await waitFor(() => issuesDone(s, 4), {
      timeoutMs: 60_000,
      what: 'probes done',
    });
    expect(new Set(done.map((i) => i.agent)).size).toBe(2);
    const byAgent = new Map<string, number[]>();
    for (const i of done)
      byAgent.set(i.agent, [...(byAgent.get(i.agent) ?? []), i.id]);
    for (const i of done) {
      const seen = probe(s, i.id);
      const mine = byAgent.get(i.agent)!.map(String);
      expect(
        seen.pgBefore.every((r: { agent: string }) => r.agent === i.agent),
      ).toBe(true);
      expect(
        seen.redisBefore.every((k: string) =>
          mine.includes(k.split(':').pop()!),
        ),
      ).toBe(true);
    }
    const list = await agents(s);
    const r = new Redis(REDIS);
    cleanups.push(() => r.disconnect());
    for (const a of list) {
      const rows = await pgQuery<{ issue: string; agent: string }>(
        `SELECT issue, agent FROM probe_${s.ns} ORDER BY issue`,
        [],
        `postgres://postgres@127.0.0.1:5432/${a.env!.postgresDb}`,
      );
      expect(rows.map((x) => x.issue)).toEqual(byAgent.get(a.id)!.map(String));
      await r.select(a.env!.redisDb!);
      expect((await r.keys(`probe:${s.ns}:*`)).sort()).toEqual(
        byAgent
          .get(a.id)!
          .map((id) => `probe:${s.ns}:${id}`)
          .sort(),
      );
    }
  });

  it('resetPerIssue recreates the database from the template before every job of a slot', async () => {
    const prefix = randomPrefix();
    const template = `${prefix}tpl`;
    const s = setup({
      env: { postgres: { prefix, template, resetPerIssue: true } },
    });
    cleanups.push(() => dropDatabasesWithPrefix(prefix));
    await pgQuery(`CREATE DATABASE "${template}"`);
    await pgQuery(
      'CREATE TABLE seeded (id int); INSERT INTO seeded VALUES (1), (2), (3)',
      [],
      `postgres://postgres@127.0.0.1:5432/${template}`,
    );
    await start(s, ['--agents', '1']);
    await runCli(['issue', 'add', 'first', '--body', `env-probe: ${s.ns}`], {
      cwd: s.dir,
      env: s.env,
    });
    await waitFor(() => issuesDone(s, 1), { what: 'first job' });
    await runCli(['issue', 'add', 'second', '--body', `env-probe: ${s.ns}`], {
      cwd: s.dir,
      env: s.env,
    });
    const done = await waitFor(() => issuesDone(s, 2), { what: 'second job' });
    expect(done.map((i) => [i.status, i.agent])).toEqual([
      ['done', 'agent-001'],
      ['done', 'agent-001'],
    ]);
    // The second job finds the template's rows and none of the first job's.
    expect(probe(s, 1)).toMatchObject({ pgBefore: [], templateRows: 3 });
    expect(probe(s, 2)).toMatchObject({ pgBefore: [], templateRows: 3 });
    const shown = await cliJson<{ runs: Array<{ logPath: string }> }>(
      ['issue', 'show', '2'],
      { cwd: s.dir, env: s.env },
    );
    expect(readFileSync(shown.runs[0]!.logPath, 'utf8')).toMatch(
      new RegExp(
        `before job: reset database ${prefix}agent_001[\\s\\S]*recreated from ${template}`,
      ),
    );
  });

  it('a slot whose Postgres role may not create databases fails clearly; the other slot runs; nothing half-allocated remains', async () => {
    const s = setup();
    const role = `${s.prefix}nocreate`;
    await pgQuery(`CREATE ROLE "${role}" LOGIN NOCREATEDB`);
    cleanups.push(() => pgQuery(`DROP ROLE IF EXISTS "${role}"`));
    // agent-001's database exists already (reused without CREATE); agent-002's would need CREATEDB.
    await pgQuery(`CREATE DATABASE "${s.prefix}agent_001"`);
    s.env.POSTGRES_URL = `postgres://${role}@127.0.0.1:5432/postgres`;
    await start(s, ['--agents', '2']);
    const list = await waitFor(
      async () => {
        const l = await agents(s);
        return l.find((a) => a.id === 'agent-001')?.state === 'idle' &&
          failedToStart(l.find((a) => a.id === 'agent-002')?.state)
          ? l
          : false;
      },
      { what: 'agent-001 idle, agent-002 crashed' },
    );
    const bad = list.find((a) => a.id === 'agent-002')!;
    expect(bad.lastError).toMatch(
      new RegExp(`role "${role}" may not create databases`),
    );
    expect(bad.env).toBeUndefined();
    expect(list.find((a) => a.id === 'agent-001')!.env!.postgresDb).toBe(
      `${s.prefix}agent_001`,
    );
    // The scaler retries a crashed slot with backoff, and a retry holds an allocation while it
    // runs: between retries (the slot still crashed) only agent-001's remains.
    await waitFor(
      async () =>
        JSON.stringify(allocationRows(s.dir)) === '["agent-001"]' &&
        failedToStart(
          (await agents(s)).find((a) => a.id === 'agent-002')?.state,
        ),
      { what: "agent-002's failed allocation released" },
    );
    expect(existsSync(join(bad.worktree, '.env.worktree'))).toBe(false);
  });

  it('a slot whose Postgres is unreachable fails with the reason; without POSTGRES_URL nothing is needed', async () => {
    const s = setup({
      vars: { POSTGRES_URL: 'postgres://postgres@127.0.0.1:1/postgres' },
    });
    await start(s, ['--agents', '1']);
    const [a] = await waitFor(
      async () => {
        const l = await agents(s);
        return failedToStart(l[0]?.state) && l[0]?.lastError ? l : false;
      },
      { what: 'agent-001 crashed' },
    );
    expect(a!.lastError).toMatch(
      /Postgres at postgres:\/\/postgres@127\.0\.0\.1:1\/postgres is unreachable/,
    );
    expect(allocationRows(s.dir)).toEqual([]);

    const plain = setup({
      postgres: false,
      env: { redis: { enabled: false } },
    });
    await start(plain, ['--agents', '1']);
    const [ok] = await waitFor(
      async () =>
        (await agents(plain))[0]?.state === 'idle' ? agents(plain) : false,
      { what: 'agent idle' },
    );
    expect(ok!.env).toMatchObject({
      redisDb: null,
      postgresDb: null,
      portBlock: { start: plain.base },
    });
    const file = readEnvFile(join(ok!.worktree, '.env.worktree'));
    expect(
      Object.keys(file).filter((k) => /REDIS|DATABASE|POSTGRES/.test(k)),
    ).toEqual([]);
  });

  it('moves past a block held by another program and reports an exhausted range', async () => {
    const s = setup({
      postgres: false,
      env: { ports: { blockSize: 3, maxBlocks: 2 } },
    });
    const holder = await holdPorts([s.base, s.base + 1, s.base + 2]);
    cleanups.push(holder.release);
    await start(s, ['--agents', '2']);
    // Both slots start at once: whichever verifies its block second finds nothing left.
    const list = await waitFor(
      async () => {
        const l = await agents(s);
        return l.some((a) => a.state === 'idle') &&
          l.some((a) => failedToStart(a.state) && a.lastError)
          ? l
          : false;
      },
      { what: 'one slot up, one out of ports' },
    );
    const up = list.find((a) => a.state === 'idle')!;
    const out = list.find((a) => failedToStart(a.state))!;
    expect(up.env!.portBlock).toEqual({ start: s.base + 3, end: s.base + 5 });
    expect(out.lastError).toMatch(
      new RegExp(
        `no free port block: all 2 blocks of 3 ports.*${s.base} \\(port ${s.base}, ${s.base + 1}, ${s.base + 2} in use\\)`,
      ),
    );
    expect(out.env).toBeUndefined();
    expect(allocationRows(s.dir)).toEqual([up.id]);
  });

  it('refuses an injectable database prefix at start and a .worktreeinclude naming files outside the repository', async () => {
    const s = setup();
    writeFileSync(
      join(s.dir, 'supervisor.config.json'),
      JSON.stringify({
        env: { postgres: { prefix: 'app"; DROP DATABASE postgres; --' } },
      }),
    );
    const r = await runCli(['start', '--agents', '1', '--no-dashboard'], {
      cwd: s.dir,
      env: s.env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /env\.postgres\.prefix: prefix must be a lower-case SQL identifier/,
    );

    const w = setup({ postgres: false });
    writeFileSync(join(w.dir, '.worktreeinclude'), '.env\n../../etc/shadow\n');
    await start(w, ['--agents', '1']);
    const [a] = await waitFor(
      async () => {
        const l = await agents(w);
        return failedToStart(l[0]?.state) && l[0]?.lastError ? l : false;
      },
      { what: 'slot refused' },
    );
    expect(a!.lastError).toMatch(
      /\.worktreeinclude names files outside the repository, refused: line 2 "\.\.\/\.\.\/etc\/shadow" climbs out/,
    );
    expect(allocationRows(w.dir)).toEqual([]);
  });
});

describe('supervisor infra', () => {
  it('without Docker: status reports what answers on the configured URLs, up says Docker is missing', async () => {
    const dir = tempDir('sup-infra-');
    const env = {
      SUPERVISOR_DOCKER: join(dir, 'no-docker-here'),
      POSTGRES_URL: PG_ADMIN,
      REDIS_URL: REDIS,
    };
    const st = await cliJson<any>(['infra', 'status'], { cwd: dir, env });
    expect(st.docker).toMatchObject({
      available: false,
      reason: expect.stringMatching(/not installed/),
    });
    expect(st.composeFile).toBe(join(ROOT, 'infra', 'docker-compose.yml'));
    expect(st.redis).toMatchObject({
      url: REDIS,
      configured: true,
      reachable: true,
      databases: 16,
    });
    expect(st.postgres).toMatchObject({
      url: PG_ADMIN,
      configured: true,
      reachable: true,
      user: 'postgres',
      canCreateDb: true,
    });
    const down = await cliJson<any>(['infra', 'status'], {
      cwd: dir,
      env: {
        ...env,
        POSTGRES_URL: 'postgres://postgres@127.0.0.1:1/postgres',
        REDIS_URL: 'redis://127.0.0.1:1',
      },
    });
    expect(down.redis.reachable).toBe(false);
    expect(down.postgres).toMatchObject({
      reachable: false,
      error: expect.stringMatching(/unreachable/),
    });
    const up = await runCli(['infra', 'up'], { cwd: dir, env });
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(
      /error: Docker is not available: the docker command .* is not installed/,
    );
    expect(up.stderr).toMatch(/hint: .*REDIS_URL and POSTGRES_URL/);
  });

  it('with Docker: drives infra/docker-compose.yml with argv, no shell', async () => {
    const dir = tempDir('sup-infra-');
    const calls = join(dir, 'calls');
    const fake = join(dir, 'docker');
    writeFileSync(
      fake,
      `#!/bin/sh\nprintf '%s\\n' "$*" >> ${JSON.stringify(calls)}\n` +
        `case "$*" in *" up "*) printf '%s\\n' "$INFRA_REDIS_PASSWORD" >> ${JSON.stringify(join(dir, 'passwords'))};; esac\n` +
        `case "$*" in *" ps "*) echo '{"Service":"redis","State":"running","Health":"healthy"}'; echo '{"Service":"postgres","State":"running","Health":"healthy"}';; esac\nexit 0\n`,
    );
    chmodSync(fake, 0o755);
    const env = {
      SUPERVISOR_DOCKER: fake,
      POSTGRES_URL: PG_ADMIN,
      SUPERVISOR_INFRA_DIR: join(dir, 'infra-state'),
    };
    const file = join(ROOT, 'infra', 'docker-compose.yml');
    const upRun = await runCli(['infra', 'up'], { cwd: dir, env });
    expect(upRun.code).toBe(0);
    // The queue Redis's password: generated once, kept 0600, handed to compose, never printed.
    const pwFile = join(dir, 'infra-state', 'infra-redis-password');
    const password = readFileSync(pwFile, 'utf8').trim();
    expect(password).toMatch(/^[0-9a-f]{48}$/);
    expect(statSync(pwFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'passwords'), 'utf8').trim()).toBe(password);
    expect(upRun.stdout + upRun.stderr).not.toContain(password);
    expect(upRun.stdout).toContain(
      `redis://:$(cat '${pwFile}')@127.0.0.1:6379`,
    );
    expect((await runCli(['infra', 'down'], { cwd: dir, env })).code).toBe(0);
    const st = await cliJson<any>(['infra', 'status'], { cwd: dir, env });
    expect(st.docker.available).toBe(true);
    expect(st.services).toEqual([
      { service: 'redis', state: 'running', health: 'healthy' },
      { service: 'postgres', state: 'running', health: 'healthy' },
    ]);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    expect(lines).toContain(`compose -f ${file} up -d --wait`);
    expect(lines).toContain(`compose -f ${file} down`);
    expect(lines).toContain(`compose -f ${file} ps --all --format json`);
  });
});
