/**
 * Redis and Postgres passwords (and the dashboard token) never appear in `status` (text and
 * --json), CLI errors, the supervisor's output, runner logs, the dashboard API or Bull Board; and
 * what the agent process inherits: never the supervisor's own REDIS_URL (the queue) or its admin
 * POSTGRES_URL, nor any SUPERVISOR_* variable. With environments on it gets its slot's URLs
 * (which carry the same role's password: an accepted risk, see docs/security.md); with them off,
 * no Redis or Postgres URL at all.
 * A private redis-server with --requirepass, and a Postgres role with a password (pg_hba is trust
 * on 127.0.0.1 here, so the password is not checked by the server: it only has to never be shown).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import {
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
  type RunningSupervisor,
} from '../helpers/cli.js';
import { freePort } from '../helpers/redis-server.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';
import { ping } from '../../supervisor/redis.js';

/** Not secrets: random or derived markers that find the agent's processes (contract/agent-containment.ts). */
const MARKERS = ['SUPERVISOR_RUN_MARKER', 'SUPERVISOR_SLOT_MARKER'];
const PG_ADMIN = 'postgres://postgres@127.0.0.1:5432/postgres';
const id = randomBytes(4).toString('hex');
const REDIS_PW = `rpw-${randomBytes(9).toString('hex')}`;
const PG_PW = `ppw-${randomBytes(9).toString('hex')}`;
const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const ROLE = `sec_${id}`;
const DB_PREFIX = `sec${id}_`;
const SECRETS = [REDIS_PW, PG_PW, TOKEN];

let redisServer: ChildProcess | undefined;
let redisPort = 0;
const cleanups: Array<() => Promise<void> | void> = [];

async function pgAdmin(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  redisPort = await freePort();
  redisServer = spawn(
    'redis-server',
    [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--requirepass',
      REDIS_PW,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      tempDir('sup-sec-redis-'),
    ],
    { stdio: 'ignore' },
  );
  await waitFor(() => ping(`redis://:${REDIS_PW}@127.0.0.1:${redisPort}`), {
    timeoutMs: 10_000,
    what: 'private redis-server with a password',
  });
  await pgAdmin(`CREATE ROLE ${ROLE} LOGIN CREATEDB PASSWORD '${PG_PW}'`);
});

afterAll(async () => {
  const c = new pg.Client({ connectionString: PG_ADMIN });
  await c.connect();
  try {
    const dbs = await c.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE starts_with(datname, $1)',
      [DB_PREFIX],
    );
    for (const r of dbs.rows)
      await c.query(`DROP DATABASE IF EXISTS "${r.datname}" WITH (FORCE)`);
    await c.query(`DROP ROLE IF EXISTS ${ROLE}`);
  } finally {
    await c.end();
  }
  redisServer?.kill('SIGTERM');
});

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const redisUrl = (pw = REDIS_PW) => `redis://:${pw}@127.0.0.1:${redisPort}`;
const pgUrl = (pw = PG_PW) =>
  `postgres://${ROLE}:${pw}@127.0.0.1:5432/postgres`;

/** Dumps the agent's whole environment to a file outside the repository (never to its output). */
const ENV_DUMP = `node -e 'require("fs").writeFileSync(process.env.ENV_DUMP_DIR + "/env-" + process.env.ISSUE_ID + ".json", JSON.stringify(process.env)); require("fs").writeFileSync("done-" + process.env.ISSUE_ID + ".txt", "ok\\n")'`;

function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

function allFiles(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) allFiles(p, out);
    else out.push(p);
  }
  return out;
}

function expectNoSecret(text: string, where: string): void {
  for (const s of SECRETS) {
    expect(text.includes(s), `${where} shows a secret`).toBe(false);
    expect(
      text.includes(encodeURIComponent(s)),
      `${where} shows a secret (encoded)`,
    ).toBe(false);
  }
}

async function setup(config: Record<string, unknown>): Promise<{
  dir: string;
  env: Record<string, string>;
  dumps: string;
  sup: RunningSupervisor;
}> {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const dumps = tempDir('sup-sec-env-');
  writeFileSync(
    join(repo.dir, 'supervisor.config.json'),
    JSON.stringify(config),
  );
  git(repo.dir, 'add', 'supervisor.config.json');
  git(repo.dir, 'commit', '-qm', 'config');
  const env = testEnv({
    REDIS_URL: redisUrl(),
    POSTGRES_URL: pgUrl(),
    SUPERVISOR_DASHBOARD_TOKEN: TOKEN,
    SUPERVISOR_AGENT_COMMAND: ENV_DUMP,
    ENV_DUMP_DIR: dumps,
  });
  const sup = await startSupervisor(repo.dir, env, ['--agents', '1']);
  cleanups.push(async () => {
    await sup.stop();
    const r = new Redis(redisUrl());
    const keys = await r.keys(`${env.SUPERVISOR_PREFIX}:*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });
  return { dir: repo.dir, env, dumps, sup };
}

describe('secrets', () => {
  it('never shows the Redis or Postgres password or the dashboard token; the agent gets only its slot URLs', async () => {
    const portBase = 30_000 + Math.floor(Math.random() * 2_000) * 10;
    const { dir, env, dumps, sup } = await setup({
      env: { ports: { base: portBase }, postgres: { prefix: DB_PREFIX } },
    });
    await cliJson(['issue', 'add', 'Show me your environment'], {
      cwd: dir,
      env,
    });
    const done = await waitFor(
      async () => {
        const s = await cliJson<any>(['issue', 'show', '1'], { cwd: dir, env });
        return s.status === 'done' || s.status === 'failed' ? s : false;
      },
      { timeoutMs: 60_000, what: 'issue done' },
    );
    expect(done.status, JSON.stringify(done)).toBe('done');

    // What the agent inherited.
    const agentEnv = JSON.parse(
      readFileSync(join(dumps, 'env-1.json'), 'utf8'),
    ) as Record<string, string>;
    expect(
      Object.keys(agentEnv).filter(
        (k) => k.startsWith('SUPERVISOR_') && !MARKERS.includes(k),
      ),
    ).toEqual([]);
    for (const [k, v] of Object.entries(agentEnv)) {
      expect(v.includes(TOKEN), `${k} carries the dashboard token`).toBe(false);
      expect(
        v === redisUrl() || v === `${redisUrl()}/0`,
        `${k} is the queue's Redis URL`,
      ).toBe(false);
      expect(
        /\/postgres(\?|$)/.test(v) && v.includes(PG_PW),
        `${k} is the admin Postgres URL`,
      ).toBe(false);
    }
    const status = await cliJson<any>(['status'], { cwd: dir, env });
    const slot = status.agents[0].env;
    expect(slot.redisDb).toBeGreaterThan(0);
    expect(new URL(agentEnv.REDIS_URL!).pathname).toBe(`/${slot.redisDb}`);
    expect(new URL(agentEnv.DATABASE_URL!).pathname).toBe(
      `/${slot.postgresDb}`,
    );
    expect(agentEnv.POSTGRES_URL).toBe(agentEnv.DATABASE_URL);
    expect(slot.postgresDb.startsWith(DB_PREFIX)).toBe(true);

    // Every place the supervisor shows or writes things for people.
    const text = await runCli(['status'], { cwd: dir, env });
    expectNoSecret(text.stdout + text.stderr, 'status');
    expectNoSecret(JSON.stringify(status), 'status --json');
    expectNoSecret(JSON.stringify(done), 'issue show --json');
    const logs = await runCli(['logs', '--lines', '1000'], { cwd: dir, env });
    expectNoSecret(logs.stdout + logs.stderr, 'supervisor logs');
    const infra = await runCli(['infra', 'status', '--json'], {
      cwd: dir,
      env,
    });
    expectNoSecret(infra.stdout + infra.stderr, 'infra status');
    for (const f of allFiles(join(dir, '.supervisor', 'logs')))
      expectNoSecret(readFileSync(f, 'utf8'), f);
    expectNoSecret(
      readFileSync(join(dir, '.supervisor', 'supervisor.pid'), 'utf8'),
      'pid file',
    );
    // The database keeps the Redis URL (password included, for CLI commands): only its owner reads it.
    for (const f of ['supervisor.db', 'supervisor.db-wal']) {
      const p = join(dir, '.supervisor', f);
      if (existsSync(p))
        expect((statSync(p).mode & 0o777).toString(8), f).toBe('600');
    }

    // The dashboard API and Bull Board (with the token, as an operator would read them).
    const url = (status.supervisor.dashboardUrl as string).replace(/\/$/, '');
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+/);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const board = await get(
      `${url}/queues/api/queues?activeQueue=${encodeURIComponent(status.supervisor.queueName)}&status=completed&page=1&jobsPerPage=50`,
      auth,
    );
    expect(board.status, board.text.slice(0, 300)).toBe(200);
    expect(board.text).toContain('Show me your environment');
    for (const path of [
      '/api/status',
      '/api/issues',
      '/api/session',
      '/metrics',
      '/',
      '/api/agents/agent-001/logs?lines=1000',
      '/queues/',
      '/queues/api/redis/stats',
      `/queues/api/queues/${encodeURIComponent(status.supervisor.queueName)}/issue-1`,
    ]) {
      const r = await get(`${url}${path}`, auth);
      expect(r.status, path).toBe(200);
      expectNoSecret(r.text, `dashboard ${path}`);
    }
    expectNoSecret(board.text, 'Bull Board jobs');
    const unauth = await get(`${url}/api/status`);
    expect(unauth.status).toBe(401);
    expectNoSecret(unauth.text, 'dashboard 401');

    // CLI errors that name the URLs: a wrong Redis password, an unreachable Postgres.
    const wrongRedis = await runCli(['status'], {
      cwd: dir,
      env: { ...env, REDIS_URL: redisUrl('wrong-redis-secret') },
    });
    expect(wrongRedis.stdout + wrongRedis.stderr).not.toContain(
      'wrong-redis-secret',
    );
    const wrong = {
      ...env,
      REDIS_URL: redisUrl('wrong-redis-secret'),
      POSTGRES_URL: `postgres://${ROLE}:wrong-pg-secret@127.0.0.1:1/postgres`,
    };
    for (const args of [
      ['infra', 'status'],
      ['infra', 'status', '--json'],
      ['issue', 'list'],
    ]) {
      const r = await runCli(args, { cwd: dir, env: wrong });
      expect(r.stdout + r.stderr, args.join(' ')).not.toMatch(
        /wrong-(redis|pg)-secret/,
      );
    }

    // The supervisor's own output, last (everything above happened while it ran).
    await sup.stop();
    expectNoSecret(sup.output, 'supervisor output');
    expect(sup.output).toMatch(
      /redis: redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ \(configured\)/,
    );
  });

  it('without environments the agent gets no Redis or Postgres URL at all', async () => {
    const { dir, env, dumps, sup } = await setup({
      env: { enabled: false },
      dashboard: { enabled: false },
    });
    await cliJson(['issue', 'add', 'No environment'], { cwd: dir, env });
    // The agent may still be writing the file: wait until it parses.
    const agentEnv = await waitFor(
      () =>
        JSON.parse(readFileSync(join(dumps, 'env-1.json'), 'utf8')) as Record<
          string,
          string
        >,
      { timeoutMs: 60_000, what: 'agent ran' },
    );
    expect(
      Object.keys(agentEnv).filter(
        (k) =>
          /^(REDIS_URL|POSTGRES_URL|DATABASE_URL)$/.test(k) ||
          (k.startsWith('SUPERVISOR_') && !MARKERS.includes(k)),
      ),
    ).toEqual([]);
    for (const [k, v] of Object.entries(agentEnv))
      expect(
        SECRETS.some((s) => v.includes(s)),
        `${k} carries a secret`,
      ).toBe(false);
    await sup.stop();
    expectNoSecret(sup.output, 'supervisor output');
    // A wrong password: a clear error at start (it used to wait for ever), the password not shown.
    const refused = await runCli(['start', '--agents', '0', '--no-dashboard'], {
      cwd: dir,
      env: { ...env, REDIS_URL: redisUrl('wrong-redis-secret') },
    });
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toMatch(
      /error: Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the credentials: WRONGPASS/,
    );
    expect(refused.stderr).toMatch(
      /hint: check the user name and password in REDIS_URL/,
    );
    expect(refused.stdout + refused.stderr).not.toContain('wrong-redis-secret');
  });
});
