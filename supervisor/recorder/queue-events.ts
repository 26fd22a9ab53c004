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
    /** Read the stream after this entry (see `streamPosition`); '$' would miss what came before the first read. */
    lastEventId: string,
  ) {
    // BullMQ does not close a connection it was given: ours to disconnect in close().
    this.conn = redis.duplicate();
    this.events = new QueueEvents(queueName, {
      connection: this.conn,
      prefix,
      lastEventId,
    });
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

/**
 * The id of the queue's newest event now ('0-0' when there is none): QueueEvents started from it
 * sees every event after this moment, however long its own first read takes to be sent.
 */
export async function streamPosition(
  redis: Redis,
  queueName: string,
  prefix: string,
): Promise<string> {
  const last = await redis.xrevrange(
    `${prefix}:${queueName}:events`,
    '+',
    '-',
    'COUNT',
    1,
  );
  return last[0]?.[0] ?? '0-0';
}
