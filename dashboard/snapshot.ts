import os from 'node:os';
import type { Priority } from '../contract/job.js';
import { coerceError } from '../supervisor/errors.js';
import { ResourceSampler } from '../supervisor/resources.js';
import {
  buildStatus,
  type AgentStatus,
  type QueueCounts,
  type Status,
} from '../supervisor/status.js';
import { ReviewModel, type ReviewItem } from './review.js';
import type { Activity, DashboardSource } from './source.js';

export interface PendingIssue {
  id: number;
  title: string;
  priority: Priority;
  status: string;
}

export interface RecentResult {
  id: number;
  title: string;
  /** done, failed, or a landing status (merged, conflict, …). */
  status: string;
  agent: string | null;
  branch: string | null;
  commit: string | null;
  durationMs: number | null;
  finishedAt: number;
  error: string | null;
  /** The failed attempt's kind, a stable code (contract/errors.ts); null when not failed. */
  errorKind: string | null;
}

/** Everything the page shows, as one JSON document (`GET /api/status`, and each SSE `status` event). */
export interface Snapshot {
  at: number;
  readOnly: boolean;
  repo: { root: string; queue: string };
  supervisor: Status['supervisor'];
  desiredAgents: number;
  /** Claiming paused: why and until when (`status --json` carries the same). */
  pause: Status['pause'];
  maxAgents: number;
  agents: AgentStatus[];
  queue: QueueCounts | null;
  issues: Record<string, number>;
  /** Tokens and cost today and this week, and the budgets (`status --json` carries the same). */
  costs: Status['costs'];
  pending: { total: number; items: PendingIssue[] };
  recent: RecentResult[];
  platform: Status['platform'] & { usedMemoryBytes: number };
  activity: Activity[];
  warnings: string[];
  /** Done issues to review and land, and issues a landing or a failure sent back. */
  review: ReviewItem[];
}

const PENDING_SHOWN = 50;
const RECENT_SHOWN = 15;
const ACTIVITY_KEPT = 8;
const REDIS_TIMEOUT_MS = 3000;
const FIRST_CONNECT_WAIT_MS = 1000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not answer within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Waits for a connection that is still being made (not one that is retrying). */
function waitReady(redis: DashboardSource['redis'], ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    redis.once('ready', done);
  });
}

/** One sampler per page source: CPU % is the difference between two looks. */
const samplers = new WeakMap<DashboardSource, ResourceSampler>();
const reviews = new WeakMap<DashboardSource, ReviewModel>();

export async function buildSnapshot(
  source: DashboardSource,
  opts: { readOnly: boolean; activity: Activity[] },
): Promise<Snapshot> {
  const { ctx } = source;
  // A Redis that is down must not stall the page: without it the status says so and shows SQLite's view.
  if (['wait', 'connecting', 'connect'].includes(source.redis.status))
    await waitReady(source.redis, FIRST_CONNECT_WAIT_MS);
  const redisReady = source.redis.status === 'ready';
  let sampler = samplers.get(source);
  if (!sampler) samplers.set(source, (sampler = new ResourceSampler()));
  let status: Status;
  try {
    status = await withTimeout(
      buildStatus(ctx, redisReady ? source.redis : undefined, {
        queue: source.queue,
        envFor: (id) => source.envFor(id),
        sampler,
      }),
      REDIS_TIMEOUT_MS,
      'Redis',
    );
  } catch (err) {
    status = await buildStatus(ctx, undefined, {
      envFor: (id) => source.envFor(id),
    });
    status.warnings.unshift(coerceError(err).message);
  }
  const pendingTotal = (status.issues.open ?? 0) + (status.issues.queued ?? 0);
  const pending = ctx.issues.pending(PENDING_SHOWN).map((i) => ({
    id: i.id,
    title: i.title,
    priority: i.priority,
    status: i.status,
  }));
  const recent: RecentResult[] = ctx.issues
    .recentlyFinished(RECENT_SHOWN)
    .map((i) => {
      const runs = ctx.runs.forIssue(i.id);
      const want =
        i.status === 'failed' || i.status === 'cancelled'
          ? 'failed'
          : 'succeeded';
      const run =
        [...runs].reverse().find((r) => r.outcome === want) ??
        runs[runs.length - 1];
      const durationMs = run
        ? (run.durationMs ??
          (run.startedAt && run.finishedAt
            ? run.finishedAt - run.startedAt
            : null))
        : null;
      return {
        id: i.id,
        title: i.title,
        status: i.status,
        agent: i.agent,
        branch: i.branch,
        commit: i.commit,
        durationMs,
        finishedAt: run?.finishedAt ?? i.updatedAt,
        error: i.error,
        errorKind: want === 'failed' ? (run?.errorKind ?? null) : null,
      };
    });
  let review = reviews.get(source);
  if (!review) reviews.set(source, (review = new ReviewModel(source)));
  const free = os.freemem();
  return {
    at: Date.now(),
    readOnly: opts.readOnly,
    repo: { root: ctx.paths.root, queue: ctx.queueName },
    supervisor: status.supervisor,
    desiredAgents: status.desiredAgents,
    pause: status.pause,
    maxAgents: status.platform.maxAgents,
    agents: status.agents,
    queue: status.queue,
    issues: status.issues,
    costs: status.costs,
    pending: { total: pendingTotal, items: pending },
    recent,
    platform: {
      ...status.platform,
      freeMemoryBytes: free,
      usedMemoryBytes: status.platform.memoryBytes - free,
    },
    activity: [...opts.activity],
    warnings: status.warnings,
    review: await review.build(),
  };
}

/** The part of a snapshot that changes when something happens (not the clock, not free memory). */
function fingerprint(s: Snapshot): string {
  return JSON.stringify([
    s.supervisor,
    s.desiredAgents,
    s.pause,
    s.agents,
    s.queue,
    s.issues,
    s.costs,
    s.pending,
    s.recent,
    s.activity,
    s.warnings,
    s.review,
  ]);
}

export type Subscriber = (snapshot: Snapshot, seq: number) => void;

/**
 * Builds snapshots for every open event stream at once, when something changed: the source's
 * events (the recorder's results, the scaler's progress) at once, and any committed SQLite write
 * (claims, results, feeds, slot states, by this process or another) within `pollMs` — seen from
 * SQLite's own change counters, two constant-time reads, so an idle supervisor builds nothing.
 * A full rebuild every `refreshMs` catches what only Redis knows (a runner's heartbeat state);
 * in between, the last snapshot is pushed again every `heartbeatMs` so the page knows it is live.
 */
export class StatusHub {
  private readonly subscribers = new Set<Subscriber>();
  private readonly activity: Activity[] = [];
  private timer: NodeJS.Timeout | undefined;
  private building: Promise<Snapshot> | undefined;
  private last:
    | {
        snapshot: Snapshot;
        seq: number;
        print: string;
        pushedAt: number;
        builtAt: number;
      }
    | undefined;
  private seq = 0;
  private closed = false;
  private token = '';
  private readonly unsubscribe: () => void;
  /** Snapshots built since the hub was made (the bench and tests read it). */
  builds = 0;

  constructor(
    private readonly source: DashboardSource,
    private readonly opts: {
      readOnly: boolean;
      pollMs?: number;
      heartbeatMs?: number;
      refreshMs?: number;
      log?: (msg: string, fields?: Record<string, unknown>) => void;
    },
  ) {
    this.unsubscribe = source.onChange((a) => {
      if (a) {
        this.activity.push(a);
        if (this.activity.length > ACTIVITY_KEPT) this.activity.shift();
      }
      this.kick();
    });
  }

  /** A fresh snapshot (for the JSON API and the first page render). */
  snapshot(): Promise<Snapshot> {
    this.building ??= buildSnapshot(this.source, {
      readOnly: this.opts.readOnly,
      activity: this.activity,
    }).finally(() => {
      this.building = undefined;
    });
    this.builds += 1;
    return this.building;
  }

  /** The latest pushed snapshot and its sequence number, if any. */
  latest(): { snapshot: Snapshot; seq: number } | undefined {
    return this.last;
  }

  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    if (this.subscribers.size === 1) this.kick();
    return () => {
      this.subscribers.delete(fn);
      if (this.subscribers.size === 0 && this.timer) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Builds and pushes now (coalesced with a build already running). */
  kick(): void {
    if (this.closed || this.subscribers.size === 0) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    void this.tick(true);
  }

  /** What SQLite says about writes: another connection's commits, and this connection's own. */
  private changeToken(): string {
    const db = this.source.ctx.db;
    const version = db.pragma('data_version', { simple: true }) as number;
    const own = (
      db.prepare('SELECT total_changes() AS n').get() as { n: number }
    ).n;
    return `${version}:${own}`;
  }

  private async tick(force: boolean): Promise<void> {
    try {
      const now = Date.now();
      const token = this.changeToken();
      const stale =
        !this.last || now - this.last.builtAt >= (this.opts.refreshMs ?? 5000);
      if (force || stale || token !== this.token) {
        this.token = token;
        const snapshot = await this.snapshot();
        const print = fingerprint(snapshot);
        if (!this.last || print !== this.last.print) {
          this.push(snapshot, print, Date.now());
        } else this.last.builtAt = Date.now();
      }
      const last = this.last;
      if (
        last &&
        Date.now() - last.pushedAt >= (this.opts.heartbeatMs ?? 1000) - 50
      )
        this.push(
          { ...last.snapshot, at: Date.now() },
          last.print,
          last.builtAt,
        );
    } catch (err) {
      if (!this.closed)
        this.opts.log?.('dashboard: status failed', {
          error: coerceError(err).message,
        });
    }
    if (!this.closed && this.subscribers.size > 0 && !this.timer)
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.tick(false);
      }, this.opts.pollMs ?? 500);
  }

  private push(snapshot: Snapshot, print: string, builtAt: number): void {
    this.seq += 1;
    this.last = {
      snapshot,
      seq: this.seq,
      print,
      pushedAt: Date.now(),
      builtAt,
    };
    for (const s of this.subscribers) s(snapshot, this.seq);
  }

  close(): void {
    this.closed = true;
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    this.subscribers.clear();
  }
}
