import type { Redis } from 'ioredis';
import type { RunnerEvent } from '../contract/job.js';

/** Publishes runner events (claims, releases, failed attempts, lost leases) to the recorder's stream. */
export class EventPublisher {
  constructor(
    private readonly redis: Redis,
    private readonly streamKey: string,
  ) {}

  async publish(ev: RunnerEvent): Promise<void> {
    await this.redis.xadd(
      this.streamKey,
      'MAXLEN',
      '~',
      '100000',
      '*',
      'e',
      JSON.stringify(ev),
    );
  }
}
