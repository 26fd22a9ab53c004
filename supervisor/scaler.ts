import { EventEmitter } from 'node:events';
import {
  agentBranch,
  slotId,
  slotNumber,
  type RunnerConfig,
} from '../contract/job.js';
import { EXIT_SLOT_BROKEN } from '../contract/errors.js';
import { writeAutoscale } from './autoscaler.js';
import { SupervisorError, coerceError } from './errors.js';
import { getSetting, setSetting, type Db } from './store/db.js';
import type { SlotStore } from './store/slots.js';
import type {
  AgentRuntime,
  RunnerExit,
  RuntimeAgent,
} from './runtimes/runtime.js';
import type { RegisteredAgent } from './registry.js';

export interface ScalerOptions {
  db: Db;
  slots: SlotStore;
  runtime: AgentRuntime;
  maxAgents: number;
  restartBackoffMs: number;
  stopGraceMs: number;
  /** Creates the slot's worktree and environment; returns its runner configuration. */
  prepareSlot: (agentId: string) => Promise<RunnerConfig>;
  /** Throws when the environment cannot serve `n` agents (port blocks, Redis DBs). */
  checkCount?: (n: number) => void;
  /**
   * Re-creates a broken slot's worktree from scratch (its environment is prepared again by the
   * `prepareSlot` that follows). Without it, a broken slot is only restarted.
   */
  repairSlot?: (agentId: string) => Promise<void>;
  /** Hands back, unspent, the job a dead runner of this slot still held; returns its id. */
  releaseHeld?: (agentId: string) => Promise<string | undefined>;
  /** Runners that report themselves alive in Redis. */
  registry: () => Promise<Map<string, RegisteredAgent>>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  intervalMs?: number;
}

export interface ScalerEvents {
  progress: [{ agentId: string; state: string; message: string }];
}

const QUICK_CRASH_MS = 10_000;
const MAX_QUICK_CRASHES = 5;
const MAX_BACKOFF_MS = 30_000;

export const DESIRED_KEY = 'desired_agents';

export function readDesired(db: Db): number {
  return Number(getSetting(db, DESIRED_KEY) ?? '0');
}

const REQUEST_KEY = 'scale_requested_at';

/**
 * Sets the desired count as a new request (CLI, API, page): even the same count again gives
 * crashed, crash-looping slots another chance — `scale 3` with 3 wanted revives them. A fixed
 * count turns autoscaling off.
 */
export function requestScale(db: Db, n: number): void {
  db.transaction(() => {
    // A fixed count ends autoscaling (`scale --auto` starts it again).
    writeAutoscale(db, undefined);
    setSetting(db, DESIRED_KEY, String(n));
    setSetting(db, REQUEST_KEY, `${Date.now()}-${process.pid}`);
  })();
}

const RESTART_KEY = 'restart_requests';

function readRestartRequests(db: Db): Record<string, string> {
  try {
    return JSON.parse(getSetting(db, RESTART_KEY) ?? '{}') as Record<
      string,
      string
    >;
  } catch {
    return {};
  }
}

/**
 * Asks the running supervisor to restart one agent (CLI, API, page): its runner is stopped (the
 * job handed back unspent) and started again, and a quarantine ends. Returns the request's stamp.
 */
export function requestRestart(db: Db, agentId: string): string {
  const stamp = `${Date.now()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  db.transaction(() => {
    const all = readRestartRequests(db);
    all[agentId] = stamp;
    setSetting(db, RESTART_KEY, JSON.stringify(all));
  })();
  return stamp;
}

/** Checks a requested agent count; usage errors carry ERR_SUP_USAGE or ERR_SUP_SCALE_LIMIT. */
export function validateAgentCount(
  raw: string | number,
  maxAgents: number,
  /** The maximum is the running supervisor's (its hint says how to change that). */
  running = false,
): number {
  const s = String(raw).trim();
  if (!/^\d+$/.test(s)) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `agent count must be a whole number ≥ 0, got "${s}"`,
      { hint: 'e.g. supervisor scale 3' },
    );
  }
  const n = Number(s);
  if (n > maxAgents) {
    throw new SupervisorError(
      'ERR_SUP_SCALE_LIMIT',
      `${n} agents is above the maximum of ${maxAgents} ${running ? 'the running supervisor was started with' : 'for this machine'}`,
      {
        hint: running
          ? `stop it and start it again with a higher maximum: supervisor stop && supervisor start --max-agents ${n} (or maxAgents in supervisor.config.json)`
          : 'the maximum is total memory ÷ memory per agent; raise it with start --max-agents / SUPERVISOR_MAX_AGENTS or lower memoryPerAgent in supervisor.config.json',
      },
    );
  }
  return n;
}

interface SlotRuntimeState {
  busy: boolean;
  quickCrashes: number;
  restartAt: number;
  /** Quarantined: not started again until a restart of this agent or a new scale request. */
  gaveUp: boolean;
  startedAt: number;
  takeover: boolean;
  /** The next start re-creates the slot's worktree and environment first. */
  repairNext: boolean;
  /** Repaired since its runner last reported in: broken again means quarantine. */
  repaired: boolean;
}

/**
 * The desired-state reconciler: makes the running slots match the desired count (kept in
 * SQLite so the CLI, the API and the dashboard all set it the same way) and restarts
 * runners that die, with backoff, giving up on a crash loop.
 */
export class Scaler extends EventEmitter<ScalerEvents> {
  private readonly state = new Map<string, SlotRuntimeState>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private passing: Promise<void> | undefined;
  private lastDesired: string | undefined;
  private kicked = false;
  /** Restart requests already handled, by agent (their stamps). */
  private readonly handledRestarts = new Map<string, string>();

  constructor(private readonly o: ScalerOptions) {
    super();
    o.runtime.onExit((e) => this.onRunnerExit(e));
  }

  get desired(): number {
    return readDesired(this.o.db);
  }

  setDesired(n: number): void {
    const v = validateAgentCount(n, this.o.maxAgents);
    this.o.checkCount?.(v);
    requestScale(this.o.db, v);
    this.lastDesired = undefined;
    this.kick();
  }

  private st(agentId: string): SlotRuntimeState {
    let s = this.state.get(agentId);
    if (!s) {
      s = {
        busy: false,
        quickCrashes: 0,
        restartAt: 0,
        gaveUp: false,
        startedAt: 0,
        takeover: false,
        repairNext: false,
        repaired: false,
      };
      this.state.set(agentId, s);
    }
    return s;
  }

  async start(): Promise<void> {
    // Requests made for an earlier supervisor were for its runners, not for these.
    for (const [id, stamp] of Object.entries(readRestartRequests(this.o.db)))
      this.handledRestarts.set(id, stamp);
    const known = this.o.slots.list();
    const adopted = await this.o.runtime.adopt(known.map((s) => s.id));
    const adoptedIds = new Set(adopted.map((a) => a.agentId));
    for (const a of adopted) {
      this.o.slots.setState(a.agentId, 'running', {
        pid: a.pid ?? null,
        containerId: a.containerId ?? null,
      });
      this.st(a.agentId).startedAt = a.startedAt;
      this.o.log('adopted a runner that outlived the previous supervisor', {
        agentId: a.agentId,
        pid: a.pid,
      });
    }
    for (const s of known) {
      if (!adoptedIds.has(s.id) && s.state !== 'stopped') {
        this.o.slots.setState(s.id, 'stopped', { pid: null });
        this.st(s.id).takeover = true;
      }
    }
    this.loop();
  }

  private loop(): void {
    if (this.closed) return;
    this.passing = this.converge()
      .catch((err) =>
        this.o.log('scaler error', { error: coerceError(err).message }),
      )
      .finally(() => {
        this.passing = undefined;
        // A kick during the pass (a new count, a runner exit) gets its own pass at once.
        const delay = this.kicked ? 0 : (this.o.intervalMs ?? 250);
        this.kicked = false;
        if (!this.closed) this.timer = setTimeout(() => this.loop(), delay);
      });
  }

  kick(): void {
    if (this.closed) return;
    if (this.passing) {
      this.kicked = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.loop();
  }

  /** One pass: start what is missing, stop what is too many, promote runners that report in. */
  async converge(): Promise<void> {
    const desired = this.desired;
    const request = `${desired}/${getSetting(this.o.db, REQUEST_KEY) ?? ''}`;
    if (request !== this.lastDesired) {
      // A new request (CLI, API, dashboard) gives quarantined slots another chance.
      this.lastDesired = request;
      for (const [id, s] of this.state) this.revive(id, s);
    }
    await this.restartRequested();
    if (this.o.runtime.scaleTo)
      return this.syncSlots(await this.o.runtime.scaleTo(desired));
    const now = Date.now();
    const registry = await this.o
      .registry()
      .catch(() => new Map<string, RegisteredAgent>());
    const slots = new Map(this.o.slots.list().map((s) => [s.id, s]));
    const work: Promise<void>[] = [];
    for (
      let n = 1;
      n <= Math.max(desired, ...[...slots.values()].map((s) => s.number));
      n++
    ) {
      const id = slotId(n);
      const slot = slots.get(id);
      const s = this.st(id);
      if (s.busy) continue;
      const want = n <= desired;
      const state = slot?.state ?? 'stopped';
      if (want) {
        if (state === 'starting') {
          const reg = registry.get(id);
          const ours =
            reg &&
            (this.o.runtime.owns
              ? this.o.runtime.owns(id, reg)
              : reg.pid === slot?.pid);
          if (ours) {
            this.o.slots.setState(id, 'running');
            // It reported in, so its worktree passed the runner's check: healthy again.
            s.repaired = false;
          }
          continue;
        }
        if (state === 'running') continue;
        if (state === 'quarantined' && s.gaveUp) continue;
        if (state === 'crashed' && (s.gaveUp || now < s.restartAt)) continue;
        work.push(this.startSlot(n));
      } else if (state === 'running' || state === 'starting') {
        work.push(this.stopSlot(id));
      } else if (state === 'crashed' || state === 'quarantined') {
        this.o.slots.setState(id, 'stopped', { pid: null });
      }
    }
    await Promise.all(work);
  }

  private async startSlot(n: number): Promise<void> {
    const id = slotId(n);
    const s = this.st(id);
    s.busy = true;
    const repairing = s.repairNext && this.o.repairSlot !== undefined;
    try {
      this.emit('progress', {
        agentId: id,
        state: 'starting',
        message: repairing
          ? 're-creating its worktree and environment'
          : 'preparing worktree and environment',
      });
      if (repairing) {
        s.repairNext = false;
        s.repaired = true;
        await this.o.repairSlot!(id);
      }
      const config = await this.o.prepareSlot(id);
      const started = await this.o.runtime.start({
        agentId: id,
        config,
        takeover: s.takeover,
      });
      s.startedAt = started.startedAt;
      s.takeover = false;
      this.o.slots.setState(id, 'starting', {
        pid: started.pid ?? null,
        containerId: started.containerId ?? null,
        lastError: null,
      });
      this.emit('progress', {
        agentId: id,
        state: 'starting',
        message: `runner started${started.pid ? ` (pid ${started.pid})` : ''}`,
      });
    } catch (err) {
      const e = coerceError(err);
      this.o.log('could not start a runner', { agentId: id, error: e.message });
      if (repairing) {
        await this.quarantine(id, `the repair failed: ${e.message}`);
        return;
      }
      s.quickCrashes += 1;
      this.crashed(id, e.message);
    } finally {
      s.busy = false;
    }
  }

  private async stopSlot(id: string): Promise<void> {
    const s = this.st(id);
    s.busy = true;
    try {
      this.o.slots.setState(id, 'stopping');
      this.emit('progress', {
        agentId: id,
        state: 'stopping',
        message: 'handing back its job and stopping',
      });
      await this.o.runtime.stop(id, this.o.stopGraceMs);
      this.o.slots.setState(id, 'stopped', { pid: null, containerId: null });
      this.emit('progress', {
        agentId: id,
        state: 'stopped',
        message: 'stopped',
      });
    } finally {
      s.busy = false;
    }
  }

  private onRunnerExit(e: RunnerExit): void {
    const s = this.st(e.agentId);
    s.takeover = true;
    this.o.slots.incrementRestarts(e.agentId);
    if (e.code === EXIT_SLOT_BROKEN) {
      // The runner found its worktree unusable and handed its job back: re-create the slot
      // once; broken again right after that, it is quarantined.
      if (s.repaired || !this.o.repairSlot)
        void this.quarantine(
          e.agentId,
          `its worktree is still unusable after a repair (runner ${e.reason}; see \`supervisor logs ${e.agentId}\`)`,
        );
      else {
        s.repairNext = true;
        s.restartAt = 0;
        this.setCrashed(
          e.agentId,
          `slot broken: its worktree could not be prepared (runner ${e.reason}); re-creating its worktree and environment`,
        );
      }
      this.kick();
      return;
    }
    const ranFor = Date.now() - s.startedAt;
    s.quickCrashes = ranFor < QUICK_CRASH_MS ? s.quickCrashes + 1 : 1;
    this.crashed(e.agentId, e.reason);
    this.kick();
  }

  /**
   * A runner died or could not start: restarted after a backoff that doubles per quick exit.
   * A crash loop (`MAX_QUICK_CRASHES` quick exits) re-creates the slot's worktree and
   * environment once; a slot that keeps crashing after that is quarantined.
   */
  private crashed(id: string, reason: string): void {
    const s = this.st(id);
    if (s.quickCrashes >= MAX_QUICK_CRASHES) {
      const loop = `crash loop (${s.quickCrashes} quick exits)`;
      if (s.repaired || !this.o.repairSlot) {
        void this.quarantine(
          id,
          `${reason}; ${loop}${s.repaired ? ' after a repair' : ''}`,
        );
        return;
      }
      s.quickCrashes = 0;
      s.repairNext = true;
      s.restartAt = Date.now() + this.o.restartBackoffMs;
      this.setCrashed(
        id,
        `${reason}; ${loop}: re-creating its worktree and environment`,
      );
      return;
    }
    s.restartAt =
      Date.now() +
      Math.min(
        this.o.restartBackoffMs * 2 ** Math.max(s.quickCrashes - 1, 0),
        MAX_BACKOFF_MS,
      );
    this.setCrashed(id, `${reason}; restarting`);
  }

  private setCrashed(id: string, msg: string): void {
    this.o.slots.setState(id, 'crashed', { pid: null, lastError: msg });
    this.emit('progress', { agentId: id, state: 'crashed', message: msg });
    this.o.log('runner exited', { agentId: id, reason: msg });
  }

  /**
   * Gives up on a slot until `supervisor restart <agent>` or a new scale request: it is not
   * started again, and a job its dead runner still held goes back to the queue unspent.
   */
  private async quarantine(id: string, why: string): Promise<void> {
    const s = this.st(id);
    s.gaveUp = true;
    s.repairNext = false;
    const msg = `quarantined: ${why}`;
    this.o.slots.setState(id, 'quarantined', { pid: null, lastError: msg });
    this.emit('progress', { agentId: id, state: 'quarantined', message: msg });
    this.o.log('slot quarantined', { agentId: id, reason: msg });
    const jobId = await this.o.releaseHeld?.(id).catch((err) => {
      this.o.log('could not hand back the job of a quarantined slot', {
        agentId: id,
        error: coerceError(err).message,
      });
      return undefined;
    });
    if (jobId)
      this.o.log('handed back the job of a quarantined slot', {
        agentId: id,
        jobId,
      });
  }

  /** Another chance for a quarantined or crash-looping slot (a new request by a person). */
  private revive(id: string, s: SlotRuntimeState): void {
    if (this.o.slots.get(id)?.state === 'quarantined') s.repairNext = true;
    s.gaveUp = false;
    s.quickCrashes = 0;
    s.restartAt = 0;
    s.repaired = false;
  }

  /** Asks for one agent to be restarted (its quarantine, if any, ends); the loop does it. */
  restart(agentId: string): void {
    requestRestart(this.o.db, agentId);
    this.kick();
  }

  /**
   * Restart requests (CLI, API, page) not handled yet: a running runner is stopped (it hands
   * its job back) and started again; a quarantined or crashed one is revived and started.
   */
  private async restartRequested(): Promise<void> {
    const requests = readRestartRequests(this.o.db);
    for (const [id, stamp] of Object.entries(requests)) {
      if (this.handledRestarts.get(id) === stamp) continue;
      const s = this.st(id);
      if (s.busy) continue;
      this.handledRestarts.set(id, stamp);
      this.revive(id, s);
      const slot = this.o.slots.get(id);
      if (!slot) continue;
      if (slot.state === 'running' || slot.state === 'starting')
        await this.stopSlot(id);
      else if (slot.state === 'crashed' || slot.state === 'quarantined')
        this.o.slots.setState(id, 'stopped', { pid: null });
      this.emit('progress', {
        agentId: id,
        state: 'stopped',
        message: 'restart requested',
      });
    }
  }

  /** A runtime that scales as a whole reported its runners: the slot table follows it. */
  private syncSlots(agents: RuntimeAgent[]): void {
    const seen = new Set<string>();
    for (const a of agents) {
      seen.add(a.agentId);
      const slot = this.o.slots.ensure(
        slotNumber(a.agentId),
        '',
        agentBranch(a.agentId),
      );
      const state = a.state ?? 'running';
      if (
        slot.state !== state ||
        slot.containerId !== (a.containerId ?? null) ||
        slot.lastError !== (a.lastError ?? null)
      ) {
        this.o.slots.setState(a.agentId, state, {
          pid: null,
          containerId: a.containerId ?? null,
          lastError: a.lastError ?? null,
        });
        this.emit('progress', {
          agentId: a.agentId,
          state,
          message: a.lastError ?? `task ${state}`,
        });
      }
    }
    for (const s of this.o.slots.list())
      if (!seen.has(s.id) && s.state !== 'stopped')
        this.o.slots.setState(s.id, 'stopped', {
          pid: null,
          containerId: null,
        });
  }

  /** Stops every runner (graceful), for supervisor shutdown. */
  async stopAll(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.passing;
    if (this.o.runtime.scaleTo)
      return this.syncSlots(await this.o.runtime.scaleTo(0));
    const running = this.o.slots
      .list()
      .filter((s) => s.state === 'running' || s.state === 'starting');
    await Promise.all(running.map((s) => this.stopSlot(s.id)));
  }

  /** Leaves runners running (supervisor crash-like exit, e.g. for upgrades). */
  detach(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
