import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { humanDuration } from '../contract/reset-time.js';
import { getSetting, setSetting, type Db } from './store/db.js';

/** Why claiming is paused. */
export const PAUSE_KINDS = ['usage-limit', 'budget', 'manual', 'disk'] as const;
export type PauseKind = (typeof PAUSE_KINDS)[number];

/**
 * A pause of the whole pool: kept in SQLite (settings `pause`) so every interface shows the same
 * thing, enforced by BullMQ (the queue's rate limit until `until`, or the queue paused when there
 * is no end). No timer of ours ends it: the rate limit key expires in Redis, and a pause whose
 * `until` has passed reads as none.
 */
export interface Pause {
  kind: PauseKind;
  reason: string;
  since: number;
  /** Epoch ms; null: until `supervisor resume`. */
  until: number | null;
  /** The provider whose limit caused it (usage limits). */
  provider?: string;
  /** The agent that ran into it. */
  agentId?: string;
}

const KEY = 'pause';

/** The pause in force at `now`, if any (an expired one reads as none). */
export function readPause(db: Db, now = Date.now()): Pause | undefined {
  const raw = getSetting(db, KEY);
  if (!raw) return undefined;
  let p: Pause;
  try {
    p = JSON.parse(raw) as Pause;
  } catch {
    return undefined;
  }
  if (p.until !== null && p.until <= now) return undefined;
  return p;
}

/**
 * Records a pause unless a stronger one is in force: an open-ended pause is never replaced by a
 * timed one, and a later end is never shortened. Returns the pause in force afterwards.
 */
export function recordPause(db: Db, p: Pause, now = Date.now()): Pause {
  const cur = readPause(db, now);
  if (
    cur &&
    (cur.until === null || (p.until !== null && cur.until >= p.until)) &&
    !(p.kind === 'manual' && cur.kind !== 'manual')
  )
    return cur;
  setSetting(db, KEY, JSON.stringify(p));
  return p;
}

/** Replaces whatever pause there is (the `pause` command). */
export function writePause(db: Db, p: Pause): void {
  setSetting(db, KEY, JSON.stringify(p));
}

export function clearPause(db: Db): void {
  db.prepare('DELETE FROM settings WHERE key = ?').run(KEY);
}

const KIND_TEXT: Record<PauseKind, string> = {
  'usage-limit': 'usage limit',
  budget: 'daily budget',
  manual: 'paused by hand',
  disk: 'low disk',
};

function clock(t: number, now: number): string {
  const d = new Date(t);
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  // The local date with the local time (toISOString's date is UTC's).
  const day = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  return t - now < 20 * 3600_000 ? hm : `${day} ${hm}`;
}

/** "paused: usage limit until 14:00 (in 2h 13m)". */
export function describePause(p: Pause, now = Date.now()): string {
  const what = KIND_TEXT[p.kind];
  if (p.until === null && p.kind === 'disk')
    return `paused: ${what} until space is freed`;
  if (p.until === null) return `paused: ${what} until resumed`;
  return `paused: ${what} until ${clock(p.until, now)} (in ${humanDuration(p.until - now)})`;
}

/** The pause as the JSON outputs carry it. */
export function pauseJson(p: Pause | undefined, now = Date.now()) {
  if (!p) return null;
  return {
    ...p,
    untilIso: p.until === null ? null : new Date(p.until).toISOString(),
    text: describePause(p, now),
  };
}

/**
 * Makes the queue match the recorded pause: BullMQ's rate limit until its end, or the queue
 * paused (open-ended). Idempotent; never shortens a longer rate limit already set.
 */
export async function enforcePause(
  queue: Queue,
  redis: Redis,
  prefix: string,
  p: Pause | undefined,
  now = Date.now(),
): Promise<void> {
  if (!p) return;
  if (p.until === null) {
    if (!(await queue.isPaused())) await queue.pause();
    return;
  }
  const want = p.until - now;
  if (want <= 0) return;
  const ttl = await redis.pttl(`${prefix}:${queue.name}:limiter`);
  // A second of slack: the key was set a moment ago by whoever recorded the pause.
  if (ttl < want - 1000) await queue.rateLimit(want);
}

/** Ends a pause now: the queue resumed and its rate limit removed. */
export async function liftPause(queue: Queue): Promise<void> {
  await queue.resume();
  await queue.removeRateLimitKey();
}
