import type { Redis } from 'ioredis';

/**
 * Renews the owner key only while it still holds this runner's instance id. A key that is gone
 * (it lapsed and nobody took the slot, or Redis lost its data) is taken again: nobody else
 * holds the slot. A key holding another instance id is never overwritten.
 */
const RENEW_IF_MINE = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] or not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if #KEYS == 3 then
    redis.call('HSET', KEYS[2], unpack(ARGV, 6))
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
  end
  return 1
end
return 0`;

/** The registry entry a renewal writes in the same step (only when the slot is still ours). */
export interface RegistryEntry {
  fields: Record<string, string>;
  ttlMs: number;
  /** The registry set's score (the heartbeat's time). */
  at: number;
}

/** Deletes the owner key (and the slot's registry entry) only while it is still ours. */
const RELEASE_IF_MINE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return 1
end
return 0`;

export type Renewal = 'renewed' | 'lost' | 'unknown';

/**
 * A slot id is exclusive: the runner that holds it owns `agent:<slot>:owner` = its instance id,
 * with a TTL it renews by compare-and-set (a Lua script: renew only if the value is still mine).
 * A runner whose key lapsed and was taken by another never takes it back; it learns on its
 * next renewal that it lost the slot (a lapsed key nobody took is simply taken again).
 */
export class SlotOwnership {
  private readonly ownerKey: string;

  constructor(
    private readonly redis: Redis,
    private readonly o: {
      agentId: string;
      /** The slot's registry hash (its owner key is `<registryKey>:owner`). */
      registryKey: string;
      /** The registry's sorted set of slots. */
      registrySet: string;
      instance: string;
      ttlMs: number;
    },
  ) {
    this.ownerKey = `${o.registryKey}:owner`;
  }

  /**
   * Takes the slot, waiting up to one TTL for a previous holder's key to lapse. `takeover`
   * (a runner restarted by the supervisor that saw its predecessor die) takes it at once.
   */
  async claim(takeover: boolean): Promise<void> {
    const { instance, ttlMs } = this.o;
    const deadline = Date.now() + ttlMs + 500;
    for (;;) {
      const ok = takeover
        ? await this.redis.set(this.ownerKey, instance, 'PX', ttlMs)
        : await this.redis.set(this.ownerKey, instance, 'PX', ttlMs, 'NX');
      if (ok === 'OK') return;
      if (Date.now() > deadline) {
        const holder = await this.redis.hget(this.o.registryKey, 'host');
        throw new Error(
          `slot ${this.o.agentId} is already held by a live runner${holder ? ` on ${holder}` : ''}; refusing to start a second one`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * `lost`: another runner holds the slot now; `unknown`: Redis is away. With `entry`, the
   * slot's registry entry is written by the same script, only if the renewal succeeded (one
   * round trip per heartbeat, two per job).
   */
  async renew(entry?: RegistryEntry): Promise<Renewal> {
    try {
      const r = entry
        ? await this.redis.eval(
            RENEW_IF_MINE,
            3,
            this.ownerKey,
            this.o.registryKey,
            this.o.registrySet,
            this.o.instance,
            String(this.o.ttlMs),
            String(entry.ttlMs),
            String(entry.at),
            this.o.agentId,
            ...Object.entries(entry.fields).flat(),
          )
        : await this.redis.eval(
            RENEW_IF_MINE,
            1,
            this.ownerKey,
            this.o.instance,
            String(this.o.ttlMs),
          );
      return r === 1 ? 'renewed' : 'lost';
    } catch {
      return 'unknown';
    }
  }

  /** Gives the slot up (with its registry entry) if it is still ours. */
  async release(): Promise<void> {
    await this.redis
      .eval(
        RELEASE_IF_MINE,
        3,
        this.ownerKey,
        this.o.registryKey,
        this.o.registrySet,
        this.o.instance,
        this.o.agentId,
      )
      .catch(() => undefined);
  }
}
