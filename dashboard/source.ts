import { join } from 'node:path';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isSlotId } from '../contract/job.js';
import type { Context } from '../supervisor/context.js';
import type { Daemon } from '../supervisor/daemon.js';
import { SupervisorError } from '../supervisor/errors.js';
import { statusExtras } from '../supervisor/extensions.js';
import type { Lander, LandOutcome } from '../supervisor/land/lander.js';
import { createLander } from '../supervisor/land/service.js';
import { runningDaemon } from '../supervisor/pidfile.js';
import {
  DEFAULT_REDIS_URL,
  connectForever,
  ping,
  resolveRedisUrl,
} from '../supervisor/redis.js';
import { validateScale } from '../supervisor/env/capacity.js';
import { requestRestart, requestScale } from '../supervisor/scaler.js';
import { validateRestart } from '../supervisor/restart.js';
import { getSetting } from '../supervisor/store/db.js';

/** Something that happened, shown under the controls ("agent-002: runner started"). */
export interface Activity {
  at: number;
  agentId?: string;
  message: string;
  level: 'info' | 'error';
}

/**
 * What the dashboard reads and changes: the control plane running in this process
 * (`daemonSource`), or a repository's state read from SQLite and Redis by `supervisor dashboard`
 * (`stateSource`). Handlers only see this interface.
 */
export interface DashboardSource {
  readonly ctx: Context;
  readonly redis: Redis;
  readonly queue: Queue;
  readonly inProcess: boolean;
  /** Sets the desired agent count (validated, returned); the scaler converges to it. */
  setDesired(count: number | string): number;
  /** Asks for one agent to be restarted (validated); its quarantine, if any, ends. */
  restart(agentId: string): void;
  /** The runner log of a slot (the agent's output with a header line per run). */
  logFile(agentId: string): string;
  /** Recorder counters (lease losses, superseded runs), when the recorder runs in this process. */
  recorderStats(): Readonly<Record<string, number>> | undefined;
  /** A slot's environment allocation, when environments are enabled. */
  envFor(agentId: string): unknown;
  /** Lands done issues through the merge queue (the running supervisor's, or one of its own). */
  land(ids: number[], opts: { lockTimeoutMs: number }): Promise<LandOutcome[]>;
  /** Called on changes worth pushing at once; returns the unsubscribe function. */
  onChange(listener: (activity?: Activity) => void): () => void;
  close(): Promise<void>;
}

export function checkAgentId(agentId: string): void {
  if (!isSlotId(agentId))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `"${agentId}" is not an agent id`,
      { hint: 'agent ids look like agent-001' },
    );
}

/** The dashboard of `supervisor start`: the Daemon's own scaler, recorder and runtime. */
export async function daemonSource(daemon: Daemon): Promise<DashboardSource> {
  const { envFor } = await statusExtras(daemon.ctx);
  const listeners = new Set<(a?: Activity) => void>();
  const emit = (a?: Activity) => {
    for (const l of listeners) l(a);
  };
  const onProgress = (p: { agentId: string; state: string; message: string }) =>
    emit({
      at: Date.now(),
      agentId: p.agentId,
      message: p.message,
      level:
        p.state === 'crashed' || p.state === 'quarantined' ? 'error' : 'info',
    });
  const onResult = ({
    issue,
  }: {
    issue: {
      id: number;
      status: string;
      agent: string | null;
      branch: string | null;
      commit: string | null;
      error: string | null;
    };
  }) =>
    emit({
      at: Date.now(),
      ...(issue.agent ? { agentId: issue.agent } : {}),
      message: `issue #${issue.id} ${issue.status}${issue.commit && issue.branch ? ` (${issue.branch} @ ${issue.commit.slice(0, 8)})` : ''}${issue.error ? `: ${issue.error}` : ''}`,
      level: issue.status === 'failed' ? 'error' : 'info',
    });
  const onLost = ({
    run,
    reason,
  }: {
    run: { issueId: number; agent: string | null };
    reason: string;
  }) =>
    emit({
      at: Date.now(),
      ...(run.agent ? { agentId: run.agent } : {}),
      message: `attempt on issue #${run.issueId} lost: ${reason}`,
      level: 'error',
    });
  daemon.scaler.on('progress', onProgress);
  daemon.recorder.on('result', onResult);
  daemon.recorder.on('lost', onLost);
  return {
    ctx: daemon.ctx,
    redis: daemon.redis,
    queue: daemon.queue,
    inProcess: true,
    setDesired: (count) => {
      const n = validateScale(daemon.ctx, count);
      daemon.scaler.setDesired(n);
      return n;
    },
    restart: (agentId) =>
      daemon.scaler.restart(validateRestart(daemon.ctx, agentId)),
    logFile: (agentId) => {
      checkAgentId(agentId);
      return (
        daemon.runtime.logFile(agentId) ??
        join(daemon.ctx.paths.logDir, `${agentId}.log`)
      );
    },
    recorderStats: () => ({ ...daemon.recorder.stats }),
    land: (ids, opts) => daemon.land.lander.land(ids, opts),
    envFor: (agentId) => envFor?.(agentId),
    onChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    close: async () => {
      listeners.clear();
      daemon.scaler.off('progress', onProgress);
      daemon.recorder.off('result', onResult);
      daemon.recorder.off('lost', onLost);
    },
  };
}

/** The Redis a repository's supervisor uses: configured, else recorded at its last start, else the usual places. */
async function redisUrlFor(ctx: Context): Promise<string> {
  if (ctx.config.redisUrl) return ctx.config.redisUrl;
  const recorded = getSetting(ctx.db, 'redis_url');
  if (recorded && (await ping(recorded))) return recorded;
  try {
    return (
      await resolveRedisUrl(ctx.paths, undefined, { startPrivate: false })
    ).url;
  } catch {
    return recorded ?? DEFAULT_REDIS_URL;
  }
}

/**
 * The dashboard of `supervisor dashboard`: no control plane in this process. It reads SQLite and
 * Redis, and scales the way `supervisor scale` does, by writing the desired count that the
 * running supervisor's scaler converges to.
 */
export async function stateSource(ctx: Context): Promise<DashboardSource> {
  const { envFor } = await statusExtras(ctx);
  const redis = connectForever(await redisUrlFor(ctx));
  const queue = new Queue(ctx.queueName, {
    connection: redis,
    prefix: ctx.config.prefix,
  });
  queue.on('error', () => undefined);
  let lander: Lander | undefined;
  return {
    ctx,
    redis,
    queue,
    inProcess: false,
    setDesired: (count) => {
      const v = validateScale(ctx, count);
      if (!runningDaemon(ctx.paths.pidFile)) {
        throw new SupervisorError(
          'ERR_SUP_NOT_RUNNING',
          'the supervisor is not running for this repository',
          { hint: `start it with \`supervisor start --agents ${v}\`` },
        );
      }
      requestScale(ctx.db, v);
      return v;
    },
    restart: (agentId) =>
      void requestRestart(ctx.db, validateRestart(ctx, agentId)),
    logFile: (agentId) => {
      checkAgentId(agentId);
      return join(ctx.paths.logDir, `${agentId}.log`);
    },
    recorderStats: () => undefined,
    land: async (ids, opts) => {
      lander ??= createLander(ctx, () => undefined, await redisUrlFor(ctx));
      return lander.land(ids, opts);
    },
    envFor: (agentId) => envFor?.(agentId),
    onChange: () => () => undefined,
    close: async () => {
      await queue.close().catch(() => undefined);
      redis.disconnect();
    },
  };
}
