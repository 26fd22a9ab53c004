/**
 * The scaler's restart rule with a scripted runtime and a fake clock: a runner that dies is
 * restarted after a backoff that doubles per quick exit (capped at 30 s); after 5 quick exits the
 * slot is a crash loop: its worktree and environment are re-created once, and if it keeps
 * crashing it is quarantined until a restart of the agent or a new scale request. A runner that
 * exits 78 (its slot is broken) gets the same repair at once, and quarantine when broken again.
 * Runs in milliseconds; the same rule against real containers: test/docker/faults.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RunnerConfig } from '../../contract/job.js';
import type {
  AgentRuntime,
  RunnerExit,
  RunnerSpec,
} from '../../supervisor/runtimes/runtime.js';
import { Scaler } from '../../supervisor/scaler.js';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { SlotStore } from '../../supervisor/store/slots.js';

const BACKOFF = 200;
let db: Db;
let now = 1_000_000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(now);
  db = openDatabase(':memory:');
});
afterEach(() => {
  vi.useRealTimers();
  db.close();
});

function setup(restartBackoffMs = BACKOFF) {
  const slots = new SlotStore(db);
  const starts: string[] = [];
  const repairs: string[] = [];
  const released: string[] = [];
  const stops: string[] = [];
  const registry = new Map<string, any>();
  const broken = { prepare: false };
  let exit: ((e: RunnerExit) => void) | undefined;
  const runtime: AgentRuntime = {
    kind: 'process',
    adopt: async () => [],
    start: async (spec: RunnerSpec) => {
      starts.push(spec.agentId);
      return { agentId: spec.agentId, pid: 4242, startedAt: Date.now() };
    },
    stop: async (id: string) => void stops.push(id),
    killAgent: async () => false,
    onExit: (l) => void (exit = l),
    logFile: () => undefined,
    close: async () => undefined,
  };
  const scaler = new Scaler({
    db,
    slots,
    runtime,
    maxAgents: 4,
    restartBackoffMs,
    stopGraceMs: 1000,
    prepareSlot: async (id) => {
      if (broken.prepare) throw new Error('the environment cannot be prepared');
      slots.ensure(Number(id.slice(-3)), `/tmp/${id}`, `agent/${id.slice(-3)}`);
      return {} as RunnerConfig;
    },
    repairSlot: async (id) => void repairs.push(id),
    releaseHeld: async (id) => {
      released.push(id);
      return undefined;
    },
    registry: async () => registry,
    log: () => undefined,
  });
  // Passes are driven by hand: no timers, no kicks.
  scaler.detach();
  const crash = (code = 3) =>
    exit!({
      agentId: 'agent-001',
      code,
      signal: null,
      reason: `exited with code ${code}`,
    });
  /** The runner reports in (the scaler then counts it running, its worktree checked). */
  const reportIn = () =>
    registry.set('agent-001', { agentId: 'agent-001', pid: 4242 });
  const advance = (ms: number) => {
    now += ms;
    vi.setSystemTime(now);
  };
  return {
    scaler,
    slots,
    starts,
    crash,
    advance,
    repairs,
    released,
    stops,
    reportIn,
    broken,
  };
}

describe('scaler: restarts with backoff, gives up on a crash loop', () => {
  it('restarts a dead runner only after the backoff, doubling per quick exit', async () => {
    const { scaler, starts, crash, advance } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    expect(starts).toHaveLength(1);
    for (const wait of [BACKOFF, 2 * BACKOFF, 4 * BACKOFF]) {
      const n = starts.length;
      crash();
      advance(wait - 1);
      await scaler.converge();
      expect(starts, `not before ${wait} ms`).toHaveLength(n);
      advance(1);
      await scaler.converge();
      expect(starts, `after ${wait} ms`).toHaveLength(n + 1);
    }
  });

  it('an exit after 10 s or more is not quick: the backoff starts over', async () => {
    const { scaler, starts, crash, advance } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    crash();
    advance(BACKOFF);
    await scaler.converge();
    expect(starts).toHaveLength(2);
    advance(10_000);
    crash();
    advance(BACKOFF - 1);
    await scaler.converge();
    expect(starts).toHaveLength(2);
    advance(1);
    await scaler.converge();
    expect(starts).toHaveLength(3);
  });

  it('caps the backoff at 30 s', async () => {
    const { scaler, starts, crash, advance } = setup(20_000);
    scaler.setDesired(1);
    await scaler.converge();
    crash();
    advance(20_000);
    await scaler.converge();
    expect(starts).toHaveLength(2);
    crash(); // quick again: 40 s, capped
    advance(29_999);
    await scaler.converge();
    expect(starts).toHaveLength(2);
    advance(1);
    await scaler.converge();
    expect(starts).toHaveLength(3);
  });

  it('after 5 quick exits it re-creates the slot once, then quarantines it until a new scale request', async () => {
    const { scaler, slots, starts, crash, advance, repairs, released } =
      setup();
    scaler.setDesired(1);
    await scaler.converge();
    const loop = async () => {
      for (let i = 1; i <= 5; i++) {
        crash();
        advance(30_000);
        await scaler.converge();
      }
    };
    await loop();
    expect(repairs).toEqual(['agent-001']);
    expect(slots.get('agent-001')!.state).not.toBe('quarantined');
    await loop();
    const slot = slots.get('agent-001')!;
    expect(slot.state).toBe('quarantined');
    expect(slot.lastError).toMatch(
      /quarantined: .*crash loop \(5 quick exits\) after a repair/,
    );
    expect(slot.restarts).toBe(10);
    expect(released).toEqual(['agent-001']);
    const n = starts.length;
    advance(3_600_000);
    await scaler.converge();
    expect(starts).toHaveLength(n);
    // The same count again: a new request revives it, repaired first.
    scaler.setDesired(1);
    await scaler.converge();
    expect(starts).toHaveLength(n + 1);
    expect(repairs).toEqual(['agent-001', 'agent-001']);
  });
});

describe('scaler: broken slots', () => {
  it('a runner that exits 78 (slot broken) is re-created at once, and quarantined when broken again', async () => {
    const { scaler, slots, starts, crash, repairs, released } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    crash(78);
    expect(slots.get('agent-001')!.lastError).toMatch(
      /slot broken: .*re-creating its worktree and environment/,
    );
    await scaler.converge();
    expect(repairs).toEqual(['agent-001']);
    expect(starts).toHaveLength(2);
    // Broken again before it ever reported in: the repair did not help.
    crash(78);
    await scaler.converge();
    const slot = slots.get('agent-001')!;
    expect(slot.state).toBe('quarantined');
    expect(slot.lastError).toMatch(/still unusable after a repair/);
    expect(released).toEqual(['agent-001']);
    expect(starts).toHaveLength(2);
  });

  it('a slot whose environment cannot be prepared is re-created after 5 tries, then quarantined', async () => {
    const { scaler, slots, advance, repairs, broken } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    broken.prepare = true;
    slots.setState('agent-001', 'crashed');
    for (let i = 0; i < 12; i++) {
      advance(30_000);
      await scaler.converge();
    }
    expect(repairs).toEqual(['agent-001']);
    const slot = slots.get('agent-001')!;
    expect(slot.state).toBe('quarantined');
    expect(slot.lastError).toMatch(
      /^quarantined: the repair failed: the environment cannot be prepared/,
    );
  });

  it('a slot that reported in after its repair is healthy again: the next break repairs, not quarantines', async () => {
    const { scaler, slots, crash, repairs, reportIn } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    crash(78);
    await scaler.converge();
    reportIn();
    await scaler.converge();
    expect(slots.get('agent-001')!.state).toBe('running');
    crash(78);
    await scaler.converge();
    expect(repairs).toEqual(['agent-001', 'agent-001']);
    expect(slots.get('agent-001')!.state).not.toBe('quarantined');
  });

  it('restart of one agent ends its quarantine; restart of a running one stops and starts it', async () => {
    const { scaler, slots, starts, crash, stops, reportIn } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    crash(78);
    await scaler.converge();
    crash(78);
    await scaler.converge();
    expect(slots.get('agent-001')!.state).toBe('quarantined');
    const n = starts.length;
    scaler.restart('agent-001');
    await scaler.converge();
    expect(starts).toHaveLength(n + 1);
    reportIn();
    await scaler.converge();
    expect(slots.get('agent-001')!.state).toBe('running');
    scaler.restart('agent-001');
    await scaler.converge();
    expect(stops).toEqual(['agent-001']);
    expect(starts).toHaveLength(n + 2);
  });
});
