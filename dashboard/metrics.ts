import {
  Counter,
  Gauge,
  Registry,
  collectDefaultMetrics,
  type Metric,
} from 'prom-client';
import { ISSUE_STATUSES } from '../supervisor/store/issues.js';
import {
  DURATION_BUCKETS,
  readRunAggregates,
} from '../supervisor/store/read-model.js';
import { PAUSE_KINDS } from '../supervisor/pause.js';
import { usageByModel } from '../supervisor/store/usage-totals.js';
import type { Snapshot } from './snapshot.js';
import type { DashboardSource } from './source.js';

const AGENT_STATES = [
  'starting',
  'idle',
  'working',
  'stopping',
  'crashed',
  'blocked',
  'quarantined',
] as const;
const QUEUE_STATES = [
  'waiting',
  'prioritized',
  'active',
  'delayed',
  'completed',
  'failed',
] as const;
/** Final outcomes of an attempt: each run is counted once, when it leaves `running`. */
const FINAL_OUTCOMES = ['succeeded', 'failed', 'lost', 'released'] as const;

/**
 * Prometheus metrics. Nothing here scans the history: gauges come from the snapshot the page
 * shows (itself built from bounded reads), and the run counters and the duration histogram from
 * aggregates SQLite keeps up to date as results are recorded (supervisor/store/read-model.ts), so
 * a scrape reads a few dozen rows at 1,000 runs as at 1,000,000, and the numbers survive restarts.
 */
export class DashboardMetrics {
  readonly registry = new Registry();
  private snap: Snapshot | undefined;
  private runs: ReturnType<typeof readRunAggregates> | undefined;

  constructor(private readonly source: DashboardSource) {
    const r = this.registry;
    // prom-client calls collect() with `this` bound to the metric.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    new Gauge({
      name: 'supervisor_up',
      help: 'Whether the supervisor (control plane) of this repository runs (1) or not (0).',
      registers: [r],
      collect() {
        this.set(self.snap?.supervisor.running ? 1 : 0);
      },
    });
    new Gauge({
      name: 'supervisor_redis_up',
      help: 'Whether Redis answered for this scrape (1) or not (0).',
      registers: [r],
      collect() {
        this.set(self.snap?.queue ? 1 : 0);
      },
    });
    new Gauge({
      name: 'supervisor_agents',
      help: 'Agent slots by state (starting, idle, working, stopping, crashed, blocked, quarantined).',
      labelNames: ['state'],
      registers: [r],
      collect() {
        for (const s of AGENT_STATES)
          this.set(
            { state: s },
            self.snap?.agents.filter((a) => a.state === s).length ?? 0,
          );
      },
    });
    new Gauge({
      name: 'supervisor_agents_quarantined',
      help: 'Agent slots quarantined: broken even after a repair, taking no jobs until `supervisor restart <agent>`.',
      registers: [r],
      collect() {
        this.set(
          self.snap?.agents.filter((a) => a.state === 'quarantined').length ??
            0,
        );
      },
    });
    new Gauge({
      name: 'supervisor_paused',
      help: 'Claiming paused (1) or not (0), by kind: usage-limit, budget, manual.',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        this.reset();
        const p = self.snap?.pause;
        for (const k of PAUSE_KINDS)
          this.set({ kind: k }, p?.kind === k ? 1 : 0);
      },
    });
    new Gauge({
      name: 'supervisor_pause_until_seconds',
      help: 'When the current pause ends (Unix seconds); 0 when not paused or paused until resumed.',
      registers: [r],
      collect() {
        const until = self.snap?.pause?.until;
        this.set(until ? Math.round(until / 1000) : 0);
      },
    });
    new Gauge({
      name: 'supervisor_agent_cpu_percent',
      help: 'CPU of an agent slot (runner, agent and children), percent of one core.',
      labelNames: ['agent'],
      registers: [r],
      collect() {
        this.reset();
        for (const a of self.snap?.agents ?? [])
          if (a.resources) this.set({ agent: a.id }, a.resources.cpuPercent);
      },
    });
    new Gauge({
      name: 'supervisor_agent_memory_bytes',
      help: 'Resident memory of an agent slot (runner, agent and children).',
      labelNames: ['agent'],
      registers: [r],
      collect() {
        this.reset();
        for (const a of self.snap?.agents ?? [])
          if (a.resources) this.set({ agent: a.id }, a.resources.memoryBytes);
      },
    });
    new Gauge({
      name: 'supervisor_agents_desired',
      help: 'The desired number of agents (supervisor scale N).',
      registers: [r],
      collect() {
        this.set(self.snap?.desiredAgents ?? 0);
      },
    });
    new Gauge({
      name: 'supervisor_agents_max',
      help: 'The most agents this machine may run (total memory / memory per agent).',
      registers: [r],
      collect() {
        this.set(self.snap?.maxAgents ?? 0);
      },
    });
    new Gauge({
      name: 'supervisor_queue_jobs',
      help: 'Jobs in the BullMQ queue by state (absent while Redis does not answer).',
      labelNames: ['state'],
      registers: [r],
      collect() {
        this.reset();
        const q = self.snap?.queue;
        if (q) for (const s of QUEUE_STATES) this.set({ state: s }, q[s]);
      },
    });
    new Gauge({
      name: 'supervisor_queue_oldest_waiting_seconds',
      help: 'How long the longest-waiting issue (open, or queued and not yet claimed) has waited; 0 when none waits.',
      registers: [r],
      collect() {
        const since = source.ctx.issues.oldestWaitingSince();
        this.set(
          since === undefined ? 0 : Math.max(0, (Date.now() - since) / 1000),
        );
      },
    });
    new Gauge({
      name: 'supervisor_issues',
      help: 'Issues by status.',
      labelNames: ['status'],
      registers: [r],
      collect() {
        const counts = self.snap?.issues ?? {};
        for (const s of new Set([...ISSUE_STATUSES, ...Object.keys(counts)]))
          this.set({ status: s }, counts[s] ?? 0);
      },
    });
    new Counter({
      name: 'supervisor_runs_started_total',
      help: 'Agent runs (attempts) started: claims recorded in SQLite since the database was created.',
      registers: [r],
      collect() {
        this.reset();
        this.inc(self.runAggregates().started);
      },
    });
    new Counter({
      name: 'supervisor_runs_total',
      help: 'Agent runs (attempts) finished, by final outcome (succeeded, failed, lost, released), since the database was created.',
      labelNames: ['outcome'],
      registers: [r],
      collect() {
        this.reset();
        const totals = self.runAggregates().totals;
        for (const o of FINAL_OUTCOMES)
          this.inc({ outcome: o }, totals[o] ?? 0);
      },
    });
    new Gauge({
      name: 'supervisor_runs_running',
      help: 'Agent runs (attempts) in progress: agents working on an issue.',
      registers: [r],
      collect() {
        this.set(
          self.snap?.agents.filter((a) => a.state === 'working').length ?? 0,
        );
      },
    });
    r.registerMetric(this.durationHistogram() as unknown as Metric);
    new Counter({
      name: 'supervisor_agent_restarts_total',
      help: 'Agent runners restarted by the supervisor after they exited or crashed, over all slots.',
      registers: [r],
      collect() {
        this.reset();
        const row = source.ctx.db
          .prepare('SELECT COALESCE(SUM(restarts), 0) AS n FROM slots')
          .get() as { n: number };
        this.inc(row.n);
      },
    });
    new Counter({
      name: 'supervisor_landings_total',
      help: 'Landings finished, by outcome (merged, conflict, check-failed, interrupted, refused), since the database was created.',
      labelNames: ['outcome'],
      registers: [r],
      collect() {
        this.reset();
        const l = self.runAggregates().landings;
        for (const o of [
          'merged',
          'conflict',
          'check-failed',
          'interrupted',
          'refused',
        ])
          this.inc({ outcome: o }, l[o] ?? 0);
      },
    });
    new Counter({
      name: 'supervisor_agent_cost_usd_total',
      help: 'USD spent by agent runs, by model ("unknown" when the agent named none): as the agents reported it, else at the price table; since the database was created.',
      labelNames: ['model'],
      registers: [r],
      collect() {
        this.reset();
        for (const u of self.usage())
          this.inc({ model: u.model || 'unknown' }, u.costUsd);
      },
    });
    new Counter({
      name: 'supervisor_agent_tokens_total',
      help: 'Tokens used by agent runs, by model and kind (input: neither read from nor written to the cache, output, cache_read, cache_write), since the database was created.',
      labelNames: ['model', 'kind'],
      registers: [r],
      collect() {
        this.reset();
        for (const u of self.usage()) {
          const model = u.model || 'unknown';
          this.inc({ model, kind: 'input' }, u.inputTokens);
          this.inc({ model, kind: 'output' }, u.outputTokens);
          this.inc({ model, kind: 'cache_read' }, u.cacheReadTokens);
          this.inc({ model, kind: 'cache_write' }, u.cacheWriteTokens);
        }
      },
    });
    new Gauge({
      name: 'supervisor_cost_today_usd',
      help: 'USD spent by the agent runs that ended today (local day); budget.daily pauses claiming when it reaches that.',
      registers: [r],
      collect() {
        this.set(self.snap?.costs.today.costUsd ?? 0);
      },
    });
    const stat = (name: string, help: string, key: string) =>
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          this.reset();
          const v = source.recorderStats()?.[key];
          if (v !== undefined) this.inc(v);
        },
      });
    stat(
      'supervisor_lease_losses_total',
      'Runs whose runner lost its lease (lock renewal failed), since the supervisor started.',
      'leaseLosses',
    );
    stat(
      'supervisor_runs_superseded_total',
      'Attempts superseded by a newer claim of the same job (the older runner froze), since the supervisor started.',
      'superseded',
    );
    stat(
      'supervisor_agent_timeouts_total',
      'Agents killed for showing no progress (no output, no file change) for the progress timeout, since the supervisor started.',
      'timeouts',
    );
    stat(
      'supervisor_agent_oom_kills_total',
      'Agents the kernel killed for memory, since the supervisor started.',
      'oomKills',
    );
    stat(
      'supervisor_issues_refed_total',
      'Issues fed to the queue again because their job vanished from Redis, since the supervisor started.',
      'refed',
    );
    stat(
      'supervisor_jobs_adopted_total',
      'Jobs added to the queue by other producers and adopted as issues, since the supervisor started.',
      'adopted',
    );
    new Gauge({
      name: 'supervisor_env_allocations',
      help: 'Agent slots holding an environment allocation (ports, Redis DB, Postgres database).',
      registers: [r],
      collect() {
        this.set(
          self.snap?.agents.filter((a) => a.env !== undefined && a.env !== null)
            .length ?? 0,
        );
      },
    });
    collectDefaultMetrics({ register: r });
    // Gauges named like counters (promtool check metrics refuses them); their per-type
    // breakdowns (nodejs_active_handles{type}, …) stay.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ])
      r.removeSingleMetric(name);
  }

  /** Tokens and cost by model: a few rows SQLite keeps summed (store/usage-totals.ts). */
  private usage(): ReturnType<typeof usageByModel> {
    return usageByModel(this.source.ctx.db);
  }

  /** The run aggregates, read once per scrape. */
  private runAggregates(): ReturnType<typeof readRunAggregates> {
    this.runs ??= readRunAggregates(this.source.ctx.db);
    return this.runs;
  }

  /**
   * supervisor_run_duration_seconds, a histogram whose buckets are the aggregate's counts made
   * cumulative (prom-client's Histogram only observes single values).
   */
  private durationHistogram() {
    const name = 'supervisor_run_duration_seconds';
    const help =
      'Duration of finished agent runs (succeeded or failed), since the database was created.';
    return {
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      reset: () => undefined,
      get: async () => {
        const values: Array<{
          labels: Record<string, string | number>;
          value: number;
          metricName: string;
        }> = [];
        const { byOutcome } = this.runAggregates().durations;
        for (const outcome of ['succeeded', 'failed']) {
          const h = byOutcome.get(outcome);
          let cumulative = 0;
          DURATION_BUCKETS.forEach((le, i) => {
            cumulative += h?.counts[i] ?? 0;
            values.push({
              labels: { le, outcome },
              value: cumulative,
              metricName: `${name}_bucket`,
            });
          });
          cumulative += h?.counts[DURATION_BUCKETS.length] ?? 0;
          values.push({
            labels: { le: '+Inf', outcome },
            value: cumulative,
            metricName: `${name}_bucket`,
          });
          values.push({
            labels: { outcome },
            value: (h?.sumMs ?? 0) / 1000,
            metricName: `${name}_sum`,
          });
          values.push({
            labels: { outcome },
            value: cumulative,
            metricName: `${name}_count`,
          });
        }
        return { name, help, type: 'histogram', aggregator: 'sum', values };
      },
    };
  }

  /** The exposition text for one scrape, computed from `snapshot`. */
  async render(snapshot: Snapshot): Promise<string> {
    this.snap = snapshot;
    this.runs = undefined;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
