import type { Redis } from 'ioredis';
import type { SlotOwnership } from './slot-ownership.js';

/**
 * The runner's entry in the registry (`status` reads it), written every `intervalMs` together
 * with the renewal of its slot ownership. When the renewal says the slot is someone else's,
 * `onOwnershipLost` is called once and the heartbeat stops: the registry entry is the new owner's.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly redis: Redis,
    private readonly ownership: SlotOwnership,
    private readonly o: {
      agentId: string;
      registryKey: string;
      registrySet: string;
      intervalMs: number;
      ttlMs: number;
      fields: () => Record<string, string>;
      onOwnershipLost: () => void;
    },
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.beat(), this.o.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  async beat(): Promise<void> {
    if (this.stopped) return;
    // Ownership first: a runner that lost its slot must not write the new owner's entry.
    const renewal = await this.ownership.renew();
    if (renewal === 'lost') {
      if (this.stopped) return;
      this.stop();
      this.o.onOwnershipLost();
      return;
    }
    if (renewal === 'unknown') return; // Redis is away; the next beat retries.
    const now = Date.now();
    try {
      await this.redis
        .multi()
        .hset(this.o.registryKey, {
          ...this.o.fields(),
          heartbeat: String(now),
        })
        .pexpire(this.o.registryKey, this.o.ttlMs)
        .zadd(this.o.registrySet, now, this.o.agentId)
        .exec();
    } catch {
      // Redis is away; the next beat retries.
    }
  }
}
