import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Context } from './context.js';
import { connectOnce, ping } from './redis.js';
import { getSetting } from './store/db.js';

/**
 * The queue for a one-shot command (CLI, API without a running control plane): opened on first
 * use when the supervisor's Redis answers, undefined otherwise (SQLite stays the truth; the
 * running supervisor makes the queue follow).
 */
export class QueueAccess {
  private redis: Redis | undefined;
  private queue: Queue | undefined;
  private opened: Promise<Queue | undefined> | undefined;

  constructor(private readonly ctx: Context) {}

  get(): Promise<Queue | undefined> {
    this.opened ??= (async () => {
      const url =
        this.ctx.config.redisUrl ?? getSetting(this.ctx.db, 'redis_url');
      if (!url || !(await ping(url))) return undefined;
      this.redis = connectOnce(url);
      this.queue = new Queue(this.ctx.queueName, {
        connection: this.redis,
        prefix: this.ctx.config.prefix,
      });
      this.queue.on('error', () => undefined);
      return this.queue;
    })();
    return this.opened;
  }

  async close(): Promise<void> {
    await this.queue?.close().catch(() => undefined);
    this.redis?.disconnect();
  }
}
