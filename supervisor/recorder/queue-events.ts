import { QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';

export interface QueueEventHandlers {
  finished: (jobId: string) => void;
  added: (jobId: string) => void;
  stalled: (jobId: string) => void;
  /** A finished job moved back to waiting by a client (Bull Board's retry). */
  retried: (jobId: string, prev: 'failed' | 'completed') => void;
  /** A job removed before it ran (Bull Board's delete of a waiting job). */
  removed: (jobId: string, prev: string) => void;
  error: (err: Error) => void;
}

/** BullMQ's QueueEvents, the recorder's fast path for completed, failed, added and stalled jobs. */
export class QueueEventListener {
  private readonly conn: Redis;
  private readonly events: QueueEvents;

  constructor(
    redis: Redis,
    queueName: string,
    prefix: string,
    on: QueueEventHandlers,
  ) {
    // BullMQ does not close a connection it was given: ours to disconnect in close().
    this.conn = redis.duplicate();
    this.events = new QueueEvents(queueName, { connection: this.conn, prefix });
    this.events.on('error', on.error);
    this.events.on('completed', ({ jobId }) => on.finished(jobId));
    this.events.on('failed', ({ jobId }) => on.finished(jobId));
    this.events.on('added', ({ jobId }) => on.added(jobId));
    this.events.on('stalled', ({ jobId }) => on.stalled(jobId));
    this.events.on('waiting', ({ jobId, prev }) => {
      if (prev === 'failed' || prev === 'completed') on.retried(jobId, prev);
    });
    this.events.on('removed', ({ jobId, prev }) => {
      if (prev !== 'completed' && prev !== 'failed' && prev !== 'active')
        on.removed(jobId, prev);
    });
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => undefined);
    this.conn.disconnect();
  }
}
