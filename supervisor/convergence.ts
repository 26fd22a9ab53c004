import type { Redis } from 'ioredis';
import type { Context } from './context.js';
import { SupervisorError } from './errors.js';
import { runningDaemon } from './pidfile.js';
import { buildStatus, type AgentStatus } from './status.js';

export interface ConvergeOptions {
  timeoutMs: number;
  /** Called when an agent changes state (progress for long scale-ups). */
  onChange?: (agent: AgentStatus) => void;
  pollMs?: number;
  /**
   * When the request was made: a crash loop reported before it is the one the request revives,
   * not a reason to fail.
   */
  since?: number;
}

/**
 * Waits until exactly `n` agents are up (idle or working) and no others run. Fails early on
 * a crash loop or when the supervisor goes away; times out with what it saw.
 */
export async function waitForAgents(
  ctx: Context,
  redis: Redis | undefined,
  n: number,
  opts: ConvergeOptions,
): Promise<AgentStatus[]> {
  const deadline = Date.now() + opts.timeoutMs;
  const lastSeen = new Map<string, string>();
  for (;;) {
    const s = await buildStatus(ctx, redis);
    // Runners started elsewhere (other hosts) are not this supervisor's to count.
    s.agents = s.agents.filter((a) => !a.external);
    for (const a of s.agents) {
      if (lastSeen.get(a.id) !== a.state) {
        lastSeen.set(a.id, a.state);
        opts.onChange?.(a);
      }
    }
    const up = s.agents.filter(
      (a) => a.state === 'idle' || a.state === 'working',
    );
    // Quarantined since this request: broken (crash loop, unusable worktree) even after a repair.
    const quarantined = s.agents.filter(
      (a) => a.state === 'quarantined' && a.since >= (opts.since ?? 0),
    );
    if (quarantined.length) {
      const ids = quarantined.map((a) => a.id);
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        `${ids.join(', ')} keep crashing or stay broken: ${quarantined[0]!.lastError}`,
        {
          hint: `see \`supervisor logs ${ids[0]}\`; once fixed: supervisor restart ${ids[0]}`,
        },
      );
    }
    if (up.length === n && s.agents.length === n) return s.agents;
    if (!runningDaemon(ctx.paths.pidFile))
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        'the supervisor stopped while scaling',
      );
    if (Date.now() > deadline) {
      throw new SupervisorError(
        'ERR_SUP_TIMEOUT',
        `not converged after ${Math.round(opts.timeoutMs / 1000)}s: ${up.length}/${n} agents up`,
        { hint: 'see `supervisor status` and `supervisor logs`' },
      );
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 200));
  }
}
