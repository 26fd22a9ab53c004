import { Queue } from 'bullmq';
import type { Command } from 'commander';
import { parseRetryAfter } from '../../contract/reset-time.js';
import { openContext, type Context } from '../context.js';
import { SupervisorError } from '../errors.js';
import {
  describePause,
  enforcePause,
  liftPause,
  pauseJson,
  writePause,
  type Pause,
} from '../pause.js';
import { resumeNow } from '../daily-budget.js';
import { redisFor } from './connect.js';
import { printJson, say, type GlobalOpts } from './output.js';

interface PauseOpts {
  for?: string;
  until?: string;
  reason?: string;
  json?: boolean;
}

/** `--for 2h` / `--until 14:00`: the end of the pause (null: until `resume`). */
function pauseEnd(o: PauseOpts, now: number): number | null {
  if (o.for !== undefined && o.until !== undefined)
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      '--for and --until cannot be used together',
      {
        hint: 'e.g. supervisor pause --for 2h, or supervisor pause --until 14:00',
      },
    );
  const raw = o.for ?? o.until;
  if (raw === undefined) return null;
  const end =
    o.for !== undefined && !/^\d+(?:\.\d+)?$/.test(o.for.trim())
      ? parseRetryAfter(o.for, now)
      : o.for !== undefined
        ? now + Number(o.for) * 1000
        : parseRetryAfter(o.until, now);
  if (end === undefined || end <= now)
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${o.for !== undefined ? '--for' : '--until'} "${raw}" is not a ${o.for !== undefined ? 'duration' : 'time in the future'}`,
      {
        hint: 'durations: 90 (seconds), 15m, 2h, "2 hours 30 minutes"; times: 14:00, 2pm, 2026-12-01T08:00:00Z',
      },
    );
  return end;
}

/** Applies the recorded state to the queue now (the running supervisor does it too). */
async function applyToQueue(
  ctx: Context,
  fn: (
    queue: Queue,
    redis: NonNullable<Awaited<ReturnType<typeof redisFor>>>,
  ) => Promise<void>,
): Promise<boolean> {
  const redis = await redisFor(ctx);
  if (!redis) return false;
  const queue = new Queue(ctx.queueName, {
    connection: redis,
    prefix: ctx.config.prefix,
  });
  queue.on('error', () => undefined);
  try {
    await fn(queue, redis);
    return true;
  } finally {
    await queue.close().catch(() => undefined);
    redis.disconnect();
  }
}

export function registerPauseCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('pause')
    .description(
      'stop agents from claiming new issues (running ones finish); ends by itself with --for/--until',
    )
    .option('--for <duration>', 'pause this long (90, 15m, 2h)')
    .option('--until <time>', 'pause until this time (14:00, 2pm, ISO)')
    .option('--reason <text>', 'shown in status and on the page')
    .option('--json', 'print the pause as JSON')
    .action(async (o: PauseOpts) => {
      const now = Date.now();
      const until = pauseEnd(o, now);
      const ctx = await openContext({ repo: globals().repo });
      try {
        const p: Pause = {
          kind: 'manual',
          reason: o.reason?.trim() || 'paused with `supervisor pause`',
          since: now,
          until,
        };
        writePause(ctx.db, p);
        const applied = await applyToQueue(ctx, async (queue, redis) => {
          // A timed pause replaces an open-ended one: the queue itself resumes, the rate limit holds.
          if (until !== null) {
            await queue.resume();
            await queue.removeRateLimitKey();
          }
          await enforcePause(queue, redis, ctx.config.prefix, p, now);
        });
        if (o.json) printJson({ pause: pauseJson(p), applied });
        else
          say(
            `${describePause(p)}${applied ? '' : ' (Redis not reachable: the supervisor applies it when it runs)'}`,
          );
      } finally {
        ctx.close();
      }
    });

  program
    .command('resume')
    .description('end a pause now (by hand, usage limit or daily budget)')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const ctx = await openContext({ repo: globals().repo });
      try {
        const was = resumeNow(ctx.db);
        const applied = await applyToQueue(ctx, (queue) => liftPause(queue));
        if (o.json) printJson({ resumed: true, was: pauseJson(was), applied });
        else
          say(
            was
              ? `resumed (was ${describePause(was).replace(/^paused: /, '')})`
              : 'not paused; claiming goes on',
          );
      } finally {
        ctx.close();
      }
    });
}
