import { Redis } from 'ioredis';
import { SupervisorError, coerceError, redactSecrets } from '../errors.js';

/** The DB index a Redis URL selects (`redis://h:6379/3` → 3; none → 0). */
export function dbOfUrl(url: string): number {
  try {
    const m = /^\/(\d+)/.exec(new URL(url).pathname);
    return m?.[1] ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** `url` pointing at DB `db` (credentials, host, query kept). */
export function redisUrlWithDb(url: string, db: number): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

/** Whether two Redis URLs name the same server (so the queue's DB must stay out of the range). */
export function sameServer(a: string, b: string): boolean {
  try {
    const ua = new URL(a);
    const ub = new URL(b);
    const port = (u: URL) => u.port || '6379';
    const host = (u: URL) =>
      u.hostname === 'localhost' ? '127.0.0.1' : u.hostname;
    return host(ua) === host(ub) && port(ua) === port(ub);
  } catch {
    return a === b;
  }
}

/**
 * How many databases the server really has (`CONFIG GET databases`). Undefined when the
 * server refuses CONFIG (managed Redis): the configured range is then taken on trust.
 */
export async function serverDatabases(
  url: string,
): Promise<number | undefined> {
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
  } catch (cause) {
    r.disconnect();
    throw new SupervisorError(
      'ERR_SUP_REDIS_UNREACHABLE',
      `the Redis server for agent environments at ${redactSecrets(url)} does not answer: ${coerceError(cause).message}`,
      {
        hint: 'start it (`supervisor infra up`), fix env.redis.url in supervisor.config.json, or turn Redis isolation off with "env": {"redis": {"enabled": false}}',
        cause,
      },
    );
  }
  try {
    const res = (await r.config('GET', 'databases')) as unknown as string[];
    const n = Number(res[1]);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  } finally {
    r.disconnect();
  }
}

export interface RedisRange {
  lo: number;
  hi: number;
  /** The DB the queue uses when the apps share its server: never handed out. */
  reserved: number | undefined;
  /** `databases` of the server, when it told us. */
  serverDatabases: number | undefined;
}

const RAISE_HINT =
  'raise `databases` in redis.conf (e.g. `databases 64`, then restart Redis) and widen "env.redis.dbRange" in supervisor.config.json; or release the DBs of removed slots with `supervisor cleanup`';

/** The usable indices of the range, checked against the server; errors say which limit bites. */
export function usableDbs(range: RedisRange): number[] {
  const top =
    range.serverDatabases === undefined
      ? range.hi
      : Math.min(range.hi, range.serverDatabases - 1);
  if (range.lo > top) {
    throw new SupervisorError(
      'ERR_SUP_ENV_EXHAUSTED',
      `env.redis.dbRange ${range.lo}..${range.hi} lies beyond the Redis server's ${range.serverDatabases} databases (indices 0..${(range.serverDatabases ?? 1) - 1})`,
      { hint: RAISE_HINT },
    );
  }
  const out: number[] = [];
  for (let i = range.lo; i <= top; i++) if (i !== range.reserved) out.push(i);
  return out;
}

/** The lowest usable index not in `used`; a clear error naming the limit when none is left. */
export function pickRedisDb(
  range: RedisRange,
  used: ReadonlySet<number>,
): number {
  const usable = usableDbs(range);
  const free = usable.find((i) => !used.has(i));
  if (free !== undefined) return free;
  const cut =
    range.serverDatabases !== undefined && range.hi > range.serverDatabases - 1;
  throw new SupervisorError(
    'ERR_SUP_ENV_EXHAUSTED',
    `no free Redis DB index: all ${usable.length} usable indices of env.redis.dbRange ${range.lo}..${range.hi} are allocated` +
      (cut
        ? ` (the range goes beyond the server's ${range.serverDatabases} databases, so only ${range.lo}..${range.serverDatabases! - 1} count)`
        : '') +
      (range.reserved !== undefined &&
      range.reserved >= range.lo &&
      range.reserved <= range.hi
        ? ` (DB ${range.reserved} stays with the queue)`
        : ''),
    { hint: RAISE_HINT },
  );
}
