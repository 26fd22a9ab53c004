import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A fresh key prefix per benchmark run, so runs never meet each other or the tests. */
export function freshPrefix(): string {
  return `bench${randomBytes(4).toString('hex')}`;
}

export function connect(url = REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: null });
}

/** Deletes every key under `prefix:` (SCAN, never KEYS: the Redis is shared). */
export async function deletePrefix(
  prefix: string,
  url = REDIS_URL,
): Promise<number> {
  const r = connect(url);
  let deleted = 0;
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(
        cursor,
        'MATCH',
        `${prefix}:*`,
        'COUNT',
        1000,
      );
      cursor = next;
      if (keys.length) deleted += await r.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
  return deleted;
}
