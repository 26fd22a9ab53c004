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
    private readonly ownership: SlotOwnership,
    private readonly o: {
      agentId: string;
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
    // Ownership first, in the same script: a runner that lost its slot must not write the new
    // owner's entry.
    const now = Date.now();
    const renewal = await this.ownership.renew({
      fields: { ...this.o.fields(), heartbeat: String(now) },
      ttlMs: this.o.ttlMs,
      at: now,
    });
    if (renewal === 'lost') {
      if (this.stopped) return;
      this.stop();
      this.o.onOwnershipLost();
    }
    // 'unknown': Redis is away; the next beat retries.
  }
}
