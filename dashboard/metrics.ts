import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
} from 'prom-client';
import { RUN_OUTCOMES } from '../supervisor/store/runs.js';
import { ISSUE_STATUSES } from '../supervisor/store/issues.js';
import type { Snapshot } from './snapshot.js';
import type { DashboardSource } from './source.js';

const AGENT_STATES = [
  'starting',
  'idle',
  'working',
  'stopping',
  'crashed',
  'blocked',
] as const;
const QUEUE_STATES = [
  'waiting',
  'prioritized',
  'active',
  'delayed',
  'completed',
  'failed',
] as const;
/** Agent runs take seconds to hours. */
const DURATION_BUCKETS = [
  1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
];

/**
 * Prometheus metrics, computed at scrape time from the same snapshot the page shows plus the
 * runs in SQLite (so counts survive restarts), and the recorder's counters when it runs here.
 */
export class DashboardMetrics {
  readonly registry = new Registry();
  private snap: Snapshot | undefined;

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
      help: 'Whether Redis answered for this scrape.',
      registers: [r],
      collect() {
        this.set(self.snap?.queue ? 1 : 0);
      },
    });
    new Gauge({
      name: 'supervisor_agents',
      help: 'Agent slots by state.',
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
      help: 'Jobs in the BullMQ queue by state.',
      labelNames: ['state'],
      registers: [r],
      collect() {
        this.reset();
        const q = self.snap?.queue;
        if (q) for (const s of QUEUE_STATES) this.set({ state: s }, q[s]);
      },
    });
    new Gauge({
      name: 'supervisor_issues',
      help: 'Issues by status.',
      labelNames: ['status'],
      registers: [r],
      collect() {
        for (const s of ISSUE_STATUSES)
          this.set({ status: s }, self.snap?.issues[s] ?? 0);
      },
    });
    new Counter({
      name: 'supervisor_runs_total',
      help: 'Agent runs (attempts) by outcome, from the run history in SQLite.',
      labelNames: ['outcome'],
      registers: [r],
      collect() {
        this.reset();
        const counts = source.ctx.runs.countByOutcome();
        for (const o of RUN_OUTCOMES) this.inc({ outcome: o }, counts[o] ?? 0);
      },
    });
    new Histogram({
      name: 'supervisor_run_duration_seconds',
      help: 'Duration of finished agent runs (succeeded or failed), from SQLite.',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
      registers: [r],
      collect() {
        this.reset();
        for (const row of self.finishedRunDurations())
          this.observe({ outcome: row.outcome }, row.ms / 1000);
      },
    });
    const stat = (name: string, key: string, help: string) =>
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
      'Runs whose runner lost its lease (lock renewal failed) since the supervisor started.',
      'leaseLosses',
    );
    stat(
      'supervisor_runs_superseded_total',
      'Attempts superseded by a newer claim of the same job since the supervisor started.',
      'superseded',
    );
    stat(
      'supervisor_issues_refed_total',
      'Issues fed again because their job vanished from Redis, since the supervisor started.',
      'refed',
    );
    stat(
      'supervisor_jobs_adopted_total',
      'Jobs added by other producers and adopted as issues, since the supervisor started.',
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
  }

  private finishedRunDurations(): Array<{ outcome: string; ms: number }> {
    // A read of the run history; the recorder remains its only writer.
    return this.source.ctx.db
      .prepare(
        `SELECT outcome, COALESCE(duration_ms, finished_at - started_at) AS ms FROM runs
         WHERE outcome IN ('succeeded','failed') AND COALESCE(duration_ms, finished_at - started_at) IS NOT NULL`,
      )
      .all() as Array<{ outcome: string; ms: number }>;
  }

  /** The exposition text for one scrape, computed from `snapshot`. */
  async render(snapshot: Snapshot): Promise<string> {
    this.snap = snapshot;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
