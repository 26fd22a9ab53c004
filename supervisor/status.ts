import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Context } from './context.js';
import { runningDaemon } from './pidfile.js';
import { readRegistry, type RegisteredAgent } from './registry.js';
import { readDesired } from './scaler.js';
import { pauseJson, readPause } from './pause.js';
import { recentUsage, type UsageTotals } from './store/usage-totals.js';
import { readRunningConfig } from './running-config.js';
import {
  ResourceSampler,
  availableMemoryBytes,
  type AgentResources,
} from './resources.js';

type WithRoots = AgentStatus & {
  _roots?: { runnerPid: number | null; agentPid: number | null };
};

/** CPU and memory of local process-runtime slots (containers: not sampled here). */
async function addResources(
  agents: WithRoots[],
  sampler = new ResourceSampler(),
  intervalMs = 300,
): Promise<void> {
  const slots = new Map<
    string,
    { runnerPid: number | null; agentPid: number | null }
  >();
  for (const a of agents) {
    if (
      a._roots?.runnerPid &&
      a.state !== 'crashed' &&
      a.state !== 'quarantined'
    )
      slots.set(a.id, a._roots);
    delete a._roots;
  }
  const fresh = sampler.size === 0;
  const usage = await sampler.sample(slots, fresh ? { intervalMs } : {});
  for (const a of agents) a.resources = usage.get(a.id) ?? null;
}

/**
 * `blocked`: the runner takes no jobs until something it needs is back (its program, memory, a
 * git remote). `quarantined`: the slot is broken and given up on (docs/agents.md, "Slot health").
 */
export type AgentState =
  | 'starting'
  | 'idle'
  | 'working'
  | 'stopping'
  | 'crashed'
  | 'blocked'
  | 'quarantined';

export interface AgentStatus {
  id: string;
  state: AgentState;
  /** The issue it works on; the id is a number, as everywhere else in --json and the API. */
  issue: { id: number; title: string | null } | null;
  since: number;
  pid: number | null;
  host: string | null;
  containerId: string | null;
  health: string | null;
  restarts: number;
  lastError: string | null;
  worktree: string;
  branch: string;
  env?: unknown;
  /** Started outside this supervisor (another host, Swarm, Kubernetes): seen in the registry only. */
  external?: boolean;
  /** CPU and memory of the runner, its agent and their children (process runtime, Linux). */
  resources: AgentResources | null;
}

export interface QueueCounts {
  waiting: number;
  active: number;
  completed: number;
  failed: number;
  delayed: number;
  prioritized: number;
}

export interface Status {
  supervisor: {
    running: boolean;
    pid: number | null;
    dashboardUrl: string | null;
    repo: string;
    queueName: string;
    prefix: string;
  };
  desiredAgents: number;
  /** Claiming paused (usage limit, budget, by hand): why and until when; null when not. */
  pause: ReturnType<typeof pauseJson>;
  agents: AgentStatus[];
  queue: QueueCounts | null;
  issues: Record<string, number>;
  /** Tokens and cost of the runs that ended today and this week (local, from Monday), and the budgets. */
  costs: {
    today: UsageTotals;
    week: UsageTotals;
    budget: { perIssue: number | null; daily: number | null };
  };
  platform: {
    os: string;
    arch: string;
    cpus: number;
    memoryBytes: number;
    freeMemoryBytes: number;
    /** MemAvailable: what admission compares with the per-agent budget. */
    availableMemoryBytes: number;
    memoryPerAgentBytes: number;
    maxAgents: number;
  };
  warnings: string[];
}

/** The registry carries the issue id as text (a Redis hash field); the contract says number. */
function issueOf(reg: RegisteredAgent | undefined): AgentStatus['issue'] {
  const id = Number(reg?.issueId);
  return reg?.issueId && Number.isSafeInteger(id) && id > 0
    ? { id, title: reg.title }
    : null;
}

/**
 * One view of the agents: the control plane's slots merged with what runners report in Redis.
 * Long-lived callers (the dashboard) pass `extra.queue` so that no Queue is created per call.
 */
export async function buildStatus(
  ctx: Context,
  redis: Redis | undefined,
  extra: {
    envFor?: (agentId: string) => unknown;
    queue?: Queue;
    /** A long-lived sampler (the dashboard): per-agent CPU and memory. */
    sampler?: ResourceSampler;
    /** Sample CPU and memory now (over 300 ms) without a long-lived sampler (`status`). */
    resources?: boolean;
  } = {},
): Promise<Status> {
  const warnings: string[] = [];
  const daemon = runningDaemon(ctx.paths.pidFile);
  let registry = new Map<string, RegisteredAgent>();
  let queue: QueueCounts | null = null;
  if (redis) {
    try {
      registry = await readRegistry(
        redis,
        ctx.config.prefix,
        ctx.queueName,
        Math.max(3 * ctx.config.heartbeat, 3000),
      );
      const own = extra.queue
        ? undefined
        : new Queue(ctx.queueName, {
            connection: redis,
            prefix: ctx.config.prefix,
          });
      own?.on('error', () => undefined);
      const q = extra.queue ?? own!;
      const c = await q
        .getJobCounts(
          'waiting',
          'active',
          'completed',
          'failed',
          'delayed',
          'prioritized',
        )
        .finally(() => own?.close().catch(() => undefined));
      queue = {
        waiting: c.waiting ?? 0,
        active: c.active ?? 0,
        completed: c.completed ?? 0,
        failed: c.failed ?? 0,
        delayed: c.delayed ?? 0,
        prioritized: c.prioritized ?? 0,
      };
    } catch (err) {
      warnings.push(`Redis did not answer: ${(err as Error).message}`);
    }
  } else {
    warnings.push(
      'Redis is not reachable: queue counts and live agent states are unavailable',
    );
  }
  const agents: WithRoots[] = [];
  const seen = new Set<string>();
  for (const slot of ctx.slots.list()) {
    const reg = registry.get(slot.id);
    seen.add(slot.id);
    let state: AgentState | undefined;
    let since = slot.stateSince;
    if (
      slot.state === 'starting' ||
      slot.state === 'stopping' ||
      slot.state === 'crashed' ||
      slot.state === 'quarantined'
    )
      state = slot.state;
    else if (reg) {
      state = reg.state;
      since = reg.since;
    } else if (slot.state === 'running')
      state = daemon ? 'starting' : undefined;
    if (!state) continue;
    agents.push({
      id: slot.id,
      state,
      issue: issueOf(reg),
      since,
      // A container's pid is in its own namespace: meaningless (and dangerous) on the host.
      pid: slot.containerId ? null : (reg?.pid ?? slot.pid),
      host: reg?.host ?? null,
      containerId: slot.containerId,
      health: slot.health,
      restarts: slot.restarts,
      // A dead runner's registry entry outlives it for a few heartbeats: the slot's note wins then.
      lastError:
        slot.state === 'crashed' || slot.state === 'quarantined'
          ? (slot.lastError ?? reg?.error ?? null)
          : (reg?.error ?? slot.lastError),
      worktree: slot.worktree,
      branch: slot.branch,
      ...(extra.envFor ? { env: extra.envFor(slot.id) } : {}),
      resources: null,
      ...(slot.containerId
        ? {}
        : {
            _roots: {
              runnerPid: reg?.pid ?? slot.pid,
              agentPid: reg?.agentPid ?? null,
            },
          }),
    });
  }
  // Runners that registered themselves from elsewhere (another host, a StatefulSet).
  for (const reg of registry.values()) {
    if (seen.has(reg.agentId)) continue;
    agents.push({
      id: reg.agentId,
      state: reg.state,
      issue: issueOf(reg),
      since: reg.since,
      pid: reg.pid,
      host: reg.host,
      containerId: null,
      health: null,
      restarts: 0,
      lastError: reg.error,
      worktree: '',
      branch: '',
      external: true,
      resources: null,
    });
  }
  if (extra.sampler || extra.resources)
    await addResources(agents, extra.sampler);
  else for (const a of agents) delete a._roots;
  const p = ctx.platform;
  return {
    supervisor: {
      running: Boolean(daemon),
      pid: daemon?.pid ?? null,
      dashboardUrl: daemon?.dashboardUrl ?? null,
      repo: ctx.paths.root,
      queueName: ctx.queueName,
      prefix: ctx.config.prefix,
    },
    desiredAgents: readDesired(ctx.db),
    pause: pauseJson(readPause(ctx.db)),
    agents,
    queue,
    issues: ctx.issues.counts(),
    costs: {
      ...recentUsage(ctx.db, Date.now()),
      budget: {
        perIssue: ctx.config.budget.perIssue ?? null,
        daily: ctx.config.budget.daily ?? null,
      },
    },
    platform: {
      os: p.os,
      arch: p.arch,
      cpus: p.cpus,
      memoryBytes: p.memoryBytes,
      freeMemoryBytes: p.freeMemoryBytes,
      availableMemoryBytes: availableMemoryBytes(p.freeMemoryBytes),
      memoryPerAgentBytes:
        readRunningConfig(ctx.db, daemon?.pid)?.memoryPerAgentBytes ??
        p.memoryPerAgentBytes,
      // The running supervisor's maximum (its flags), else this machine's default.
      maxAgents:
        readRunningConfig(ctx.db, daemon?.pid)?.maxAgents ?? p.maxAgents,
    },
    warnings,
  };
}
