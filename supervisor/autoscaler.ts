import { slotId } from '../contract/job.js';
import { SupervisorError } from './errors.js';
import { getSetting, setSetting, type Db } from './store/db.js';
import type { RegisteredAgent } from './registry.js';

/**
 * Autoscaling on queue depth: the agent count follows the jobs waiting to be claimed plus the
 * agents busy on one, between `min` and `max`. Growth is at once; an agent is stopped only
 * when it has been idle for `idleGrace` and is the highest-numbered one running (a busy agent
 * is never stopped to scale down); a pause holds the count where it is.
 */
export interface AutoscalePolicy {
  min: number;
  max: number;
  /** @defaultValue 2m — how long an agent stays idle before it is scaled away. */
  idleGraceMs: number;
}

export const DEFAULT_IDLE_GRACE_MS = 120_000;
const KEY = 'autoscale';

/** The policy in force (set by `scale --auto`, or from the configuration at start); undefined: off. */
export function readAutoscale(db: Db): AutoscalePolicy | undefined {
  const raw = getSetting(db, KEY);
  if (!raw) return undefined;
  try {
    const p = JSON.parse(raw) as AutoscalePolicy;
    return Number.isInteger(p.min) && Number.isInteger(p.max) ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Turns autoscaling on with `p`, or off (a fixed `scale N`). */
export function writeAutoscale(db: Db, p: AutoscalePolicy | undefined): void {
  if (p) setSetting(db, KEY, JSON.stringify(p));
  else db.prepare('DELETE FROM settings WHERE key = ?').run(KEY);
}

/** `MIN..MAX` (e.g. `0..4`), checked against the maximum agent count. */
export function parseAutoscaleRange(
  raw: string,
  maxAgents: number,
): { min: number; max: number } {
  const m = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(raw);
  if (!m) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--auto takes MIN..MAX, got "${raw}"`,
      { hint: 'e.g. supervisor scale --auto 0..4' },
    );
  }
  return checkAutoscale(
    { min: Number(m[1]), max: Number(m[2]) },
    maxAgents,
    '--auto',
  );
}

/** Checks min ≤ max ≤ the maximum agent count; `where` names the setting in errors. */
export function checkAutoscale(
  r: { min: number; max: number },
  maxAgents: number,
  where: string,
): { min: number; max: number } {
  if (r.max < 1 || r.min > r.max) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${where}: ${r.min}..${r.max} is not a range of agent counts (MIN ≤ MAX, MAX ≥ 1)`,
      {
        hint: 'e.g. 0..4: no agent while nothing waits, up to 4 with a backlog',
      },
    );
  }
  if (r.max > maxAgents) {
    throw new SupervisorError(
      'ERR_SUP_SCALE_LIMIT',
      `${where}: ${r.max} agents is above the maximum of ${maxAgents}`,
      {
        hint: 'the maximum is total memory ÷ memory per agent; raise it with start --max-agents / SUPERVISOR_MAX_AGENTS or lower memoryPerAgent in supervisor.config.json',
      },
    );
  }
  return r;
}

/** What one decision looks at. */
export interface AutoscaleInput {
  policy: AutoscalePolicy;
  /** The desired count now. */
  current: number;
  /** Jobs waiting to be claimed (BullMQ's wait list and prioritized set). */
  waiting: number;
  /** Agents working on a job. */
  busy: number;
  /** Claiming is paused (usage limit, budget, by hand): the count is held. */
  paused: boolean;
  /** The most agents the machine and the environment can serve now (resources). */
  limit: number;
  /** How long each slot has been idle (ms), by slot number; absent: not idle. */
  idleForMs: (slot: number) => number | undefined;
}

/** The desired agent count for `i`. Pure: the tests drive it, the loop below feeds it. */
export function decideAgents(i: AutoscaleInput): number {
  const limit = Math.max(0, Math.min(i.policy.max, i.limit));
  if (i.paused) return Math.min(i.current, limit);
  const target = Math.min(limit, Math.max(i.policy.min, i.busy + i.waiting));
  if (target >= i.current) return target;
  if (i.current > limit) return limit;
  let n = i.current;
  while (n > target && (i.idleForMs(n) ?? -1) >= i.policy.idleGraceMs) n -= 1;
  return n;
}

/** How long each registered slot has been idle, from the runners' own reports. */
export function idleTimes(
  registry: ReadonlyMap<string, RegisteredAgent>,
  now: number,
): (slot: number) => number | undefined {
  return (slot) => {
    const a = registry.get(slotId(slot));
    return a?.state === 'idle' ? Math.max(0, now - a.since) : undefined;
  };
}

export interface AutoscaleLoopOptions {
  db: Db;
  /** Jobs waiting to be claimed: BullMQ's wait list and prioritized set (LLEN + ZCARD). */
  waiting: () => Promise<number>;
  registry: () => Promise<Map<string, RegisteredAgent>>;
  paused: () => boolean;
  /** The most agents the machine and environment can serve, up to `n` (resources). */
  limit: (n: number) => number;
  readDesired: () => number;
  /** Sets the desired count and wakes the scaler. */
  setDesired: (n: number) => void;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** @defaultValue 1000 */
  intervalMs?: number;
  now?: () => number;
}

/**
 * Runs `decideAgents` every second while a policy is set (reads: one SQLite setting, two Redis
 * counts, the registry); does nothing else while autoscaling is off.
 */
export class AutoscaleLoop {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<void> | undefined;
  private heldLogged = false;

  constructor(private readonly o: AutoscaleLoopOptions) {}

  start(): void {
    const loop = () => {
      if (this.closed) return;
      this.running = this.tick()
        .then(() => undefined)
        .catch((err: Error) =>
          this.o.log('autoscale: retrying', { error: err.message }),
        )
        .finally(() => {
          if (!this.closed)
            this.timer = setTimeout(loop, this.o.intervalMs ?? 1000);
        });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** One decision now; returns the desired count it left (undefined: autoscaling is off). */
  async tick(): Promise<number | undefined> {
    const policy = readAutoscale(this.o.db);
    if (!policy) return undefined;
    const [waiting, registry] = await Promise.all([
      this.o.waiting(),
      this.o.registry(),
    ]);
    const now = (this.o.now ?? Date.now)();
    const current = this.o.readDesired();
    const paused = this.o.paused();
    // Said once per pause, so an operator (and a test) sees the backlog is held on purpose.
    if (paused && waiting > 0 && !this.heldLogged)
      this.o.log(
        `autoscale: holding ${current} agents while claiming is paused (${waiting} waiting)`,
      );
    this.heldLogged = paused && (this.heldLogged || waiting > 0);
    // Our own slots only: runners on other hosts serve the same queue but are not ours to scale.
    let busy = 0;
    for (let n = 1; n <= current; n++)
      if (registry.get(slotId(n))?.state === 'working') busy += 1;
    const next = decideAgents({
      policy,
      current,
      waiting,
      busy,
      paused,
      limit: this.o.limit(policy.max),
      idleForMs: idleTimes(registry, now),
    });
    if (next !== current) {
      this.o.log(
        `autoscale: ${current} → ${next} agents (${waiting} waiting, ${busy} working, range ${policy.min}..${policy.max})`,
      );
      this.o.setDesired(next);
    }
    return next;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
