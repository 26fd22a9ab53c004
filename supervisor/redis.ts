import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { SupervisorError } from './errors.js';
import type { RepoPaths } from './repo.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** A connection for long-running loops: it retries for ever and queues commands meanwhile. */
export function connectForever(url: string, extra: RedisOptions = {}): Redis {
  const r = new Redis(url, {
    maxRetriesPerRequest: null,
    retryStrategy: (n) => Math.min(200 * n, 2000),
    ...extra,
  });
  r.on('error', () => {
    /* ioredis reconnects; callers see errors where it matters */
  });
  return r;
}

/** A connection for one-shot commands: fails fast when Redis is not there. */
export function connectOnce(url: string): Redis {
  const r = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    enableOfflineQueue: true,
    retryStrategy: (n) => (n > 2 ? null : 200),
  });
  r.on('error', () => undefined);
  return r;
}

export async function ping(url: string, timeoutMs = 1000): Promise<boolean> {
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return (await r.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    r.disconnect();
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const hasRedisServer = (): boolean =>
  spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * Where Redis is: REDIS_URL if set; else 127.0.0.1:6379 if a server answers; else a private
 * `redis-server` under `.supervisor/redis` (started when `startPrivate`); else a clear error.
 */
export async function resolveRedisUrl(
  paths: RepoPaths,
  configured: string | undefined,
  opts: { startPrivate: boolean },
): Promise<{ url: string; source: 'configured' | 'local' | 'private' }> {
  if (configured) return { url: configured, source: 'configured' };
  if (await ping(DEFAULT_REDIS_URL))
    return { url: DEFAULT_REDIS_URL, source: 'local' };
  const dir = join(paths.stateDir, 'redis');
  const urlFile = join(dir, 'url');
  if (existsSync(urlFile)) {
    const url = readFileSync(urlFile, 'utf8').trim();
    if (await ping(url)) return { url, source: 'private' };
  }
  if (opts.startPrivate && hasRedisServer()) {
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--maxmemory-policy',
        'noeviction',
        '--daemonize',
        'no',
        '--logfile',
        join(dir, 'redis.log'),
        '--pidfile',
        join(dir, 'redis.pid'),
      ],
      { detached: true, stdio: 'ignore' },
    );
    child.unref();
    const url = `redis://127.0.0.1:${port}`;
    for (let i = 0; i < 50; i++) {
      if (await ping(url, 200)) {
        writeFileSync(urlFile, `${url}\n`);
        return { url, source: 'private' };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new SupervisorError(
      'ERR_SUP_REDIS_UNREACHABLE',
      `a private redis-server was started on port ${port} but does not answer`,
      { hint: `see ${join(dir, 'redis.log')}` },
    );
  }
  throw new SupervisorError(
    'ERR_SUP_REDIS_UNREACHABLE',
    `no Redis server answers at ${DEFAULT_REDIS_URL} and REDIS_URL is not set`,
    {
      hint: opts.startPrivate
        ? 'start one: `docker compose -f infra/docker-compose.yml up -d`, or install redis-server (apt-get install redis-server / brew install redis), or set REDIS_URL'
        : 'is the supervisor running? Start it with `supervisor start`, or set REDIS_URL',
    },
  );
}

/** Redis must not evict queue keys; says so when the server is configured otherwise. */
export async function evictionWarning(r: Redis): Promise<string | undefined> {
  try {
    const res = (await r.config(
      'GET',
      'maxmemory-policy',
    )) as unknown as string[];
    const policy = res[1];
    if (policy && policy !== 'noeviction') {
      return `Redis maxmemory-policy is "${policy}": queue keys may be evicted under memory pressure; set it to noeviction (CONFIG SET maxmemory-policy noeviction)`;
    }
  } catch {
    // CONFIG may be disabled on managed servers.
  }
  return undefined;
}
