import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { loadConfig } from '../config.js';
import { SupervisorError, coerceError, redactSecrets } from '../errors.js';
import { probePostgres, type PostgresProbe } from '../env/postgres.js';
import { DEFAULT_REDIS_URL } from '../redis.js';
import { resolveRepo } from '../repo.js';
import { printJson, progress, say, type GlobalOpts } from './output.js';

/** The URL the infra compose file publishes Postgres on (trust auth, 127.0.0.1 only). */
export const DEFAULT_POSTGRES_URL =
  'postgres://postgres@127.0.0.1:5432/postgres';

/** The package's `infra/docker-compose.yml` (found from this file, in dist/ or the sources). */
export function composeFile(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'infra', 'docker-compose.yml');
    if (existsSync(candidate) && existsSync(join(dir, 'package.json')))
      return candidate;
    dir = dirname(dir);
  }
  throw new SupervisorError(
    'ERR_SUP_DOCKER',
    'infra/docker-compose.yml is missing from this installation of agent-supervisor',
    { hint: 'reinstall the package' },
  );
}

const dockerBin = (): string => process.env.SUPERVISOR_DOCKER || 'docker';

/**
 * Where `infra up` keeps the queue Redis's password (mode 0600): SUPERVISOR_INFRA_DIR, else
 * $XDG_CONFIG_HOME/agent-supervisor, else ~/.config/agent-supervisor.
 */
export function infraPasswordFile(
  env: NodeJS.ProcessEnv = process.env,
): string {
  const dir =
    env.SUPERVISOR_INFRA_DIR ||
    join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'agent-supervisor');
  return join(dir, 'infra-redis-password');
}

/** The queue Redis's password: read, or generated and kept when `create` (infra up). */
function infraPassword(create: boolean): string | undefined {
  const file = infraPasswordFile();
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  if (!create) return undefined;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const pw = randomBytes(24).toString('hex');
  writeFileSync(file, `${pw}\n`, { mode: 0o600, flag: 'wx' });
  return pw;
}

/**
 * The compose project: one instance per machine, whichever directory it is started from. Set
 * through the environment rather than a top-level `name:` in the file, which docker-compose 1.x
 * (Debian's package) refuses.
 */
export const INFRA_PROJECT = 'agent-supervisor-infra';

/** The compose file's variables: the password (a placeholder where compose only reads state). */
function composeEnv(create: boolean): NodeJS.ProcessEnv {
  return {
    ...process.env,
    COMPOSE_PROJECT_NAME: INFRA_PROJECT,
    INFRA_REDIS_PASSWORD:
      infraPassword(create) ?? 'not-generated-yet-run-supervisor-infra-up',
  };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: NodeJS.ErrnoException;
}

/** Runs docker with an argv (never a shell string); `stream` sends its output to our stderr. */
function docker(
  args: string[],
  opts: {
    stream?: boolean;
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    bin?: string;
  } = {},
): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(opts.bin ?? dockerBin(), args, {
      stdio: ['ignore', opts.stream ? 2 : 'pipe', opts.stream ? 2 : 'pipe'],
      ...(opts.env ? { env: opts.env } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs
      ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
      : undefined;
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (timer) clearTimeout(timer);
      resolve({ code: null, stdout, stderr, error });
    });
    child.once('close', (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface DockerState {
  available: boolean;
  /** Why Docker cannot be used, when it cannot. */
  reason?: string;
  /** Which Compose runs the file: the Docker CLI plugin, or docker-compose 1.x. */
  compose?: 'plugin' | 'standalone';
}

/** docker-compose 1.x, Debian's package (SUPERVISOR_DOCKER_COMPOSE names another binary). */
const standaloneCompose = (): string =>
  process.env.SUPERVISOR_DOCKER_COMPOSE || 'docker-compose';

/**
 * Docker is usable when its CLI, a Compose (the plugin, else docker-compose 1.x) and an engine
 * all answer.
 */
export async function dockerState(): Promise<DockerState> {
  const plugin = await docker(['compose', 'version'], { timeoutMs: 10_000 });
  if (plugin.error?.code === 'ENOENT')
    return {
      available: false,
      reason: `the docker command (${dockerBin()}) is not installed`,
    };
  if (plugin.error)
    return {
      available: false,
      reason: `docker cannot be run: ${plugin.error.message}`,
    };
  let compose: DockerState['compose'] = 'plugin';
  if (plugin.code !== 0) {
    const standalone = await docker(['version'], {
      bin: standaloneCompose(),
      timeoutMs: 10_000,
    });
    if (standalone.code !== 0)
      return {
        available: false,
        reason: `the docker compose plugin is missing (${(plugin.stderr || plugin.stdout).trim().split('\n')[0]}), and so is docker-compose`,
      };
    compose = 'standalone';
  }
  const info = await docker(['info', '--format', '{{.ServerVersion}}'], {
    timeoutMs: 15_000,
  });
  if (info.code !== 0)
    return {
      available: false,
      reason: `no Docker engine answers (${(info.stderr || info.stdout).trim().split('\n').slice(-1)[0]})`,
    };
  return { available: true, compose };
}

/** Runs Compose on the infra file: `docker compose …`, or `docker-compose …`. */
function compose(
  st: DockerState,
  file: string,
  args: string[],
  opts: { stream?: boolean; timeoutMs?: number; env: NodeJS.ProcessEnv },
): Promise<Ran> {
  return st.compose === 'standalone'
    ? docker(['-f', file, ...args], { ...opts, bin: standaloneCompose() })
    : docker(['compose', '-f', file, ...args], opts);
}

/**
 * Waits until every container of the infra project is healthy (what `up --wait` does with the
 * plugin; docker-compose 1.x has no such flag). Fails on a container that exited or turned
 * unhealthy, or after `timeoutMs`.
 */
async function waitHealthy(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const ps = await docker(
      [
        'ps',
        '--all',
        '--filter',
        `label=com.docker.compose.project=${INFRA_PROJECT}`,
        '--format',
        '{{.Names}}\t{{.Status}}',
      ],
      { timeoutMs: 15_000 },
    );
    const rows = ps.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t') as [string, string]);
    last = rows.map(([n, st]) => `${n}: ${st}`).join(', ');
    const bad = rows.find(
      ([, st]) => /^Exited|^Dead/.test(st) || st.includes('(unhealthy)'),
    );
    if (bad)
      throw new SupervisorError(
        'ERR_SUP_DOCKER',
        `the shared infrastructure did not come up: ${bad[0]} is ${bad[1]}`,
        { hint: `docker logs ${bad[0]}` },
      );
    if (rows.length && rows.every(([, st]) => st.includes('(healthy)'))) return;
    if (Date.now() > deadline)
      throw new SupervisorError(
        'ERR_SUP_DOCKER',
        `the shared infrastructure is not healthy after ${Math.round(timeoutMs / 1000)} s (${last || 'no containers'})`,
        { hint: '`supervisor infra status` shows what answers' },
      );
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const NO_DOCKER_HINT =
  'install Docker with the compose plugin (Docker Desktop, or docker.io + docker-compose-v2, or Debian docker-compose) and start its engine; ' +
  'or run Redis 7 and PostgreSQL yourself (apt-get install redis-server postgresql / brew install redis postgresql) and set REDIS_URL and POSTGRES_URL. ' +
  '`supervisor infra status` shows what answers';

async function requireDocker(): Promise<DockerState> {
  const st = await dockerState();
  if (!st.available)
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `Docker is not available: ${st.reason}`,
      { hint: NO_DOCKER_HINT },
    );
  return st;
}

export interface RedisProbe {
  reachable: boolean;
  version?: string;
  databases?: number;
  maxmemoryPolicy?: string;
  appendonly?: string;
  error?: string;
}

export async function probeRedis(url: string): Promise<RedisProbe> {
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    const info = await r.info('server');
    const out: RedisProbe = {
      reachable: true,
      version: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    };
    try {
      const get = async (k: string) =>
        ((await r.config('GET', k)) as unknown as string[])[1];
      out.databases = Number(await get('databases'));
      out.maxmemoryPolicy = await get('maxmemory-policy');
      out.appendonly = await get('appendonly');
    } catch {
      // CONFIG disabled (managed Redis): reachability is what counts here.
    }
    return out;
  } catch (err) {
    return { reachable: false, error: coerceError(err).message };
  } finally {
    r.disconnect();
  }
}

interface ComposeService {
  service: string;
  state: string;
  health: string;
}

function parseComposePs(out: string): ComposeService[] {
  const text = out.trim();
  if (!text) return [];
  const items: Array<Record<string, unknown>> = text.startsWith('[')
    ? (JSON.parse(text) as Array<Record<string, unknown>>)
    : text.split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  return items.map((i) => ({
    service: String(i.Service ?? i.Name ?? ''),
    state: String(i.State ?? ''),
    health: String(i.Health ?? ''),
  }));
}

async function infraConfig(repo: string | undefined): Promise<{
  redisUrl: string;
  redisConfigured: boolean;
  postgresUrl: string;
  postgresConfigured: boolean;
}> {
  let configFile: string | undefined;
  try {
    configFile = (await resolveRepo(repo ?? process.cwd())).configFile;
  } catch {
    // Outside a repository: the environment alone says where things are.
  }
  const cfg = loadConfig({
    ...(configFile ? { configFile } : {}),
    env: process.env,
  });
  return {
    redisUrl: cfg.redisUrl ?? DEFAULT_REDIS_URL,
    redisConfigured: cfg.redisUrl !== undefined,
    postgresUrl: cfg.env.postgres.url ?? DEFAULT_POSTGRES_URL,
    postgresConfigured: cfg.env.postgres.url !== undefined,
  };
}

export interface InfraStatus {
  composeFile: string;
  docker: DockerState;
  services: ComposeService[] | null;
  redis: RedisProbe & { url: string; configured: boolean };
  postgres: PostgresProbe & { url: string; configured: boolean };
}

export function registerInfraCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  const infra = program
    .command('infra')
    .description(
      'the shared infrastructure (Redis, Postgres, network app_local) from infra/docker-compose.yml',
    );

  infra
    .command('up')
    .description(
      'start the shared Redis and Postgres with Docker (one instance per machine)',
    )
    .action(async () => {
      const file = composeFile();
      const st = await requireDocker();
      progress(`starting the shared infrastructure (${file})`);
      const plugin = st.compose !== 'standalone';
      const r = await compose(
        st,
        file,
        ['up', '-d', ...(plugin ? ['--wait'] : [])],
        { stream: true, env: composeEnv(true) },
      );
      if (r.code === 0 && !plugin) await waitHealthy(180_000);
      if (r.code !== 0)
        throw new SupervisorError(
          'ERR_SUP_DOCKER',
          `docker compose up failed (exit ${r.code ?? r.error?.message})`,
          {
            hint: 'see the output above; `supervisor infra status` shows what answers',
          },
        );
      // The password is never printed: the line reads it from its file. The ports are the
      // compose file's, or the INFRA_*_PORT overrides it was started with.
      const pwFile = infraPasswordFile();
      const port = (name: string, fallback: number) =>
        process.env[name] || String(fallback);
      say(
        `infrastructure up. The queue's Redis asks for the password kept in ${pwFile}:\n` +
          `  export REDIS_URL="redis://:$(cat '${pwFile}')@127.0.0.1:${port('INFRA_REDIS_PORT', 6379)}"\n` +
          `  export POSTGRES_URL=postgres://postgres@127.0.0.1:${port('INFRA_POSTGRES_PORT', 5432)}/postgres\n` +
          `the apps' per-slot Redis (no password, never the queue's): "env": { "redis": { "url": "redis://127.0.0.1:${port('INFRA_APPS_REDIS_PORT', 6380)}" } } in supervisor.config.json`,
      );
    });

  infra
    .command('down')
    .description('stop the shared infrastructure (data volumes are kept)')
    .option(
      '--volumes',
      'also delete the data volumes (all agent databases and Redis data)',
    )
    .action(async (o: { volumes?: boolean }) => {
      const file = composeFile();
      const st = await requireDocker();
      const r = await compose(
        st,
        file,
        ['down', ...(o.volumes ? ['--volumes'] : [])],
        { stream: true, env: composeEnv(false) },
      );
      if (r.code !== 0)
        throw new SupervisorError(
          'ERR_SUP_DOCKER',
          `docker compose down failed (exit ${r.code ?? r.error?.message})`,
          { hint: 'see the output above' },
        );
      say(
        `infrastructure stopped${o.volumes ? ' and its data deleted' : ' (data kept)'}`,
      );
    });

  infra
    .command('status')
    .description(
      'what runs (with Docker) and what answers on the configured Redis and Postgres URLs',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const file = composeFile();
      const urls = await infraConfig(globals().repo);
      const [dockerSt, redis, postgres] = await Promise.all([
        dockerState(),
        probeRedis(urls.redisUrl),
        probePostgres(urls.postgresUrl),
      ]);
      let services: ComposeService[] | null = null;
      // docker-compose 1.x has no JSON listing: its services stay unknown here.
      if (dockerSt.available && dockerSt.compose === 'plugin') {
        const ps = await compose(
          dockerSt,
          file,
          ['ps', '--all', '--format', 'json'],
          { timeoutMs: 15_000, env: composeEnv(false) },
        );
        if (ps.code === 0) {
          try {
            services = parseComposePs(ps.stdout);
          } catch {
            services = null;
          }
        }
      }
      const status: InfraStatus = {
        composeFile: file,
        docker: dockerSt,
        services,
        redis: {
          url: redactSecrets(urls.redisUrl),
          configured: urls.redisConfigured,
          ...redis,
        },
        postgres: {
          url: redactSecrets(urls.postgresUrl),
          configured: urls.postgresConfigured,
          ...postgres,
        },
      };
      if (o.json) {
        printJson(status);
        return;
      }
      say(
        dockerSt.available
          ? `docker: available; compose services: ${services?.length ? services.map((s) => `${s.service} ${s.state}${s.health ? ` (${s.health})` : ''}`).join(', ') : services ? 'none running' : 'not listed by docker-compose 1.x'}`
          : `docker: not available (${dockerSt.reason})`,
      );
      say(
        `redis:    ${status.redis.url}${urls.redisConfigured ? '' : ' (default)'} — ` +
          (redis.reachable
            ? `answers, Redis ${redis.version}${redis.databases ? `, ${redis.databases} databases` : ''}${redis.maxmemoryPolicy ? `, maxmemory-policy ${redis.maxmemoryPolicy}` : ''}`
            : `no answer (${redis.error})`),
      );
      say(
        `postgres: ${status.postgres.url}${urls.postgresConfigured ? '' : ' (default; POSTGRES_URL not set: agents get no databases)'} — ` +
          (postgres.reachable
            ? `answers, PostgreSQL ${postgres.version} as ${postgres.user}${postgres.canCreateDb ? '' : ' (no CREATEDB right!)'}`
            : `no answer (${postgres.error})`),
      );
      if (!dockerSt.available && (!redis.reachable || !postgres.reachable))
        progress(`hint: ${NO_DOCKER_HINT}`);
    });
}
