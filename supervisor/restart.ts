import type { Redis } from 'ioredis';
import { isSlotId } from '../contract/job.js';
import type { Context } from './context.js';
import { SupervisorError } from './errors.js';
import { runningDaemon } from './pidfile.js';
import { buildStatus, type AgentStatus } from './status.js';

/**
 * Checks that `agentId` names a slot of this repository's running supervisor (the CLI, the API
 * and the dashboard ask the same way); returns it.
 */
export function validateRestart(ctx: Context, agentId: string): string {
  if (!isSlotId(agentId))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `"${agentId}" is not an agent id`,
      { hint: 'agent ids look like agent-001; see `supervisor status`' },
    );
  if (!runningDaemon(ctx.paths.pidFile))
    throw new SupervisorError(
      'ERR_SUP_NOT_RUNNING',
      'the supervisor is not running for this repository',
      { hint: 'start it with `supervisor start`' },
    );
  if (!ctx.slots.get(agentId))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${agentId} is not a slot of this supervisor`,
      {
        hint: `its slots: ${
          ctx.slots
            .list()
            .map((s) => s.id)
            .join(', ') || 'none (scale up first)'
        }`,
      },
    );
  return agentId;
}

/** Which runner serves a slot now (its pid or container), or null when none runs. */
export function runnerOf(a: AgentStatus | undefined): string | null {
  return a && (a.pid !== null || a.containerId !== null)
    ? `${a.pid ?? ''}/${a.containerId ?? ''}`
    : null;
}

/**
 * Waits until the restarted agent is up again (idle or working, in a state entered after the
 * request). Fails at once when it was quarantined again after the request, or the supervisor
 * went away; times out with what it saw.
 */
export async function waitForRestart(
  ctx: Context,
  redis: Redis | undefined,
  agentId: string,
  opts: {
    since: number;
    /** The runner before the request (`runnerOf`): up again means another one. */
    previous: string | null;
    timeoutMs: number;
    onChange?: (a: AgentStatus) => void;
    pollMs?: number;
  },
): Promise<AgentStatus> {
  const deadline = Date.now() + opts.timeoutMs;
  let last = '';
  for (;;) {
    const a = (await buildStatus(ctx, redis)).agents.find(
      (x) => x.id === agentId && !x.external,
    );
    const seen = a ? `${a.state}/${a.since}` : 'stopped';
    if (a && seen !== last) opts.onChange?.(a);
    last = seen;
    if (a && a.since >= opts.since) {
      if (
        (a.state === 'idle' || a.state === 'working') &&
        (opts.previous === null || runnerOf(a) !== opts.previous)
      )
        return a;
      if (a.state === 'quarantined')
        throw new SupervisorError(
          'ERR_SUP_NOT_RUNNING',
          `${agentId} is still broken: ${a.lastError ?? 'quarantined'}`,
          {
            hint: `see \`supervisor logs ${agentId}\`, fix what it says, then restart it again`,
          },
        );
    }
    if (!runningDaemon(ctx.paths.pidFile))
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        'the supervisor stopped while restarting the agent',
      );
    if (Date.now() > deadline)
      throw new SupervisorError(
        'ERR_SUP_TIMEOUT',
        `${agentId} was not back after ${Math.round(opts.timeoutMs / 1000)}s (${a ? a.state : 'stopped'})`,
        {
          hint: `see \`supervisor status\` and \`supervisor logs ${agentId}\``,
        },
      );
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
}

/**
 * Restarts one agent of the running supervisor: its runner is stopped (its job handed back
 * unspent) and started again, and a quarantine ends. `request` records the request (the
 * in-process scaler's `restart`, else `requestRestart` in SQLite); resolves once the agent is
 * back, or at once with `wait: false`.
 */
export async function restartAgent(
  ctx: Context,
  redis: Redis | undefined,
  agentId: string,
  request: (agentId: string) => void,
  opts: {
    wait?: boolean;
    timeoutMs?: number;
    onChange?: (a: AgentStatus) => void;
  } = {},
): Promise<AgentStatus | undefined> {
  validateRestart(ctx, agentId);
  const before = (await buildStatus(ctx, redis)).agents.find(
    (a) => a.id === agentId && !a.external,
  );
  const since = Date.now();
  request(agentId);
  if (opts.wait === false) return undefined;
  return waitForRestart(ctx, redis, agentId, {
    since,
    previous: runnerOf(before),
    timeoutMs: opts.timeoutMs ?? 180_000,
    ...(opts.onChange ? { onChange: opts.onChange } : {}),
  });
}
