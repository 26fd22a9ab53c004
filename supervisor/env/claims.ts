import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { Redis } from 'ioredis';

/**
 * Allocations are coordinated across repositories that share a machine, a Redis or a Postgres:
 * each repository's SQLite keeps its own slots apart, and claims in the shared servers keep
 * repositories apart. A claim belongs to a repository (its value names the repository id, the
 * slot, and the host and path for people reading it):
 *
 * - port blocks: in the queue's Redis, hash `agent-supervisor:claims:ports:<host>`, one field
 *   per port (ports belong to a host, so the key names it);
 * - Redis DB indices: in the apps' Redis server itself (DB 0), hash
 *   `agent-supervisor:claims:redis-dbs`, one field per index;
 * - Postgres databases: `COMMENT ON DATABASE` (supervisor/env/postgres.ts).
 *
 * Claims are taken when a slot's environment is prepared (every runner start), so a claim lost
 * with Redis's data is taken again; a resource claimed by another repository moves the slot to
 * the next free one. `start` and `status` report any collision that remains.
 */
export const PORT_CLAIMS_KEY = (host = hostname()): string =>
  `agent-supervisor:claims:ports:${host}`;
export const REDIS_DB_CLAIMS_KEY = 'agent-supervisor:claims:redis-dbs';

export interface Owner {
  repoId: string;
  slot: string;
  repoRoot: string;
}

export const ownerValue = (o: Owner): string =>
  `${o.repoId}/${o.slot} ${hostname()}:${o.repoRoot}`;
/** Claims are a repository's: its own SQLite keeps its slots apart. */
const ownerKey = (value: string): string => value.split('/')[0] ?? '';
/** Where the claiming repository is (`host:path`), for messages. */
export const ownerPath = (value: string): string =>
  value.slice(value.indexOf(' ') + 1);

/** A claim of a repository on this host that no longer exists: free to take. */
function stale(value: string): boolean {
  const where = ownerPath(value);
  const host = `${hostname()}:`;
  return where.startsWith(host) && !existsSync(where.slice(host.length));
}

/** Deletes a field only while it still holds the value seen. */
const DELETE_IF = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
`;

/**
 * Claims every field for `owner` if each one is free or already this owner's (one atomic
 * script); otherwise claims nothing and returns the fields held by others with their owners.
 */
const CLAIM_ALL = `
local taken = {}
for i, f in ipairs(ARGV) do
  if i > 2 then
    local v = redis.call('HGET', KEYS[1], f)
    if v and string.match(v, '^[^/]+') ~= ARGV[1] then
      table.insert(taken, f)
      table.insert(taken, v)
    end
  end
end
if #taken > 0 then return taken end
for i, f in ipairs(ARGV) do
  if i > 2 then redis.call('HSET', KEYS[1], f, ARGV[2]) end
end
return taken
`;

export class ClaimRegistry {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
  ) {}

  /**
   * Claims `fields` for `owner`; the fields others hold (with owner values) when refused.
   * Claims of repositories on this host that no longer exist are dropped first.
   */
  async claim(
    fields: readonly (string | number)[],
    owner: Owner,
  ): Promise<Map<string, string>> {
    const taken = await this.tryClaim(fields, owner);
    let dropped = false;
    for (const [f, v] of taken)
      if (stale(v)) {
        await this.redis.eval(DELETE_IF, 1, this.key, f, v);
        dropped = true;
      }
    return dropped ? this.tryClaim(fields, owner) : taken;
  }

  private async tryClaim(
    fields: readonly (string | number)[],
    owner: Owner,
  ): Promise<Map<string, string>> {
    const v = ownerValue(owner);
    const res = (await this.redis.eval(
      CLAIM_ALL,
      1,
      this.key,
      ownerKey(v),
      v,
      ...fields.map(String),
    )) as string[];
    const taken = new Map<string, string>();
    for (let i = 0; i + 1 < res.length; i += 2) taken.set(res[i]!, res[i + 1]!);
    return taken;
  }

  /** Fields among `fields` held by someone other than `owner`. */
  async others(
    fields: readonly (string | number)[],
    owner: Owner,
  ): Promise<Map<string, string>> {
    if (!fields.length) return new Map();
    const vals = await this.redis.hmget(this.key, ...fields.map(String));
    const mine = ownerKey(ownerValue(owner));
    const out = new Map<string, string>();
    fields.forEach((f, i) => {
      const v = vals[i];
      if (v && ownerKey(v) !== mine) out.set(String(f), v);
    });
    return out;
  }

  /** Gives up whatever `owner` holds among `fields` (others' claims are left alone). */
  async release(
    fields: readonly (string | number)[],
    owner: Owner,
  ): Promise<void> {
    const mine = await this.others(fields, owner);
    const drop = fields.map(String).filter((f) => !mine.has(f));
    if (drop.length) await this.redis.hdel(this.key, ...drop);
  }
}

/** A short-lived connection for claims (DB 0 of `url`'s server). */
export async function withClaimsRedis<T>(
  url: string,
  fn: (r: Redis) => Promise<T>,
): Promise<T> {
  const u = new URL(url);
  u.pathname = '/0';
  const r = new Redis(u.toString(), {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}
