#!/usr/bin/env node
/**
 * The before-job step of `resetPerIssue` for Redis: FLUSHDB on the slot's own DB index, so no
 * keys of the last issue reach the next. Never another index: the supervisor passes the
 * queue's index when the apps share its server, and this refuses to flush it.
 *   SUPERVISOR_RESET_REDIS_URL       the slot's Redis URL (with its DB index)
 *   SUPERVISOR_RESET_REDIS_DB        the slot's DB index (must match the URL)
 *   SUPERVISOR_RESET_REDIS_KEEP_DB   the queue's DB index on that server ('' when another server)
 */
import { Redis } from 'ioredis';
import { coerceError, redactSecrets } from '../errors.js';
import { dbOfUrl } from './redis-db.js';

async function main(): Promise<void> {
  const url = process.env.SUPERVISOR_RESET_REDIS_URL;
  const db = Number(process.env.SUPERVISOR_RESET_REDIS_DB);
  const keep = process.env.SUPERVISOR_RESET_REDIS_KEEP_DB ?? '';
  if (!url || !Number.isInteger(db))
    throw new Error(
      'SUPERVISOR_RESET_REDIS_URL and SUPERVISOR_RESET_REDIS_DB must be set',
    );
  if (dbOfUrl(url) !== db)
    throw new Error(
      `refusing to flush: ${redactSecrets(url)} does not select DB ${db}`,
    );
  if (keep !== '' && Number(keep) === db)
    throw new Error(`refusing to flush DB ${db}: it holds the queue`);
  const r = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 5000,
    retryStrategy: () => null,
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    // ioredis selected `db` from the URL on connect; FLUSHDB acts on that index alone.
    await r.flushdb();
  } finally {
    r.disconnect();
  }
  process.stdout.write(`redis db ${db} flushed\n`);
}

main().catch((err) => {
  process.stderr.write(`${redactSecrets(coerceError(err).message)}\n`);
  process.exit(1);
});
