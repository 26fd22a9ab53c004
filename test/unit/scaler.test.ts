/**
 * The scaler's restart rule with a scripted runtime and a fake clock: a runner that dies is
 * restarted after a backoff that doubles per quick exit (capped at 30 s); after 5 quick exits the
 * slot is a crash loop and is not restarted until a new scale request. Runs in milliseconds; the
 * same rule against real containers: test/docker/faults.test.ts.
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
  let exit: ((e: RunnerExit) => void) | undefined;
  const runtime: AgentRuntime = {
    kind: 'process',
    adopt: async () => [],
    start: async (spec: RunnerSpec) => {
      starts.push(spec.agentId);
      return { agentId: spec.agentId, pid: 4242, startedAt: Date.now() };
    },
    stop: async () => undefined,
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
      slots.ensure(Number(id.slice(-3)), `/tmp/${id}`, `agent/${id.slice(-3)}`);
      return {} as RunnerConfig;
    },
    registry: async () => new Map(),
    log: () => undefined,
  });
  // Passes are driven by hand: no timers, no kicks.
  scaler.detach();
  const crash = () =>
    exit!({
      agentId: 'agent-001',
      code: 3,
      signal: null,
      reason: 'exited with code 3',
    });
  const advance = (ms: number) => {
    now += ms;
    vi.setSystemTime(now);
  };
  return { scaler, slots, starts, crash, advance };
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

  it('after 5 quick exits it stops restarting (crash loop, in the slot) until a new scale request', async () => {
    const { scaler, slots, starts, crash, advance } = setup();
    scaler.setDesired(1);
    await scaler.converge();
    for (let i = 1; i <= 5; i++) {
      crash();
      advance(30_000);
      await scaler.converge();
    }
    const slot = slots.get('agent-001')!;
    expect(slot.state).toBe('crashed');
    expect(slot.lastError).toMatch(/crash loop \(5 quick exits\)/);
    expect(slot.restarts).toBe(5);
    const n = starts.length;
    advance(3_600_000);
    await scaler.converge();
    expect(starts).toHaveLength(n);
    scaler.setDesired(1);
    await scaler.converge();
    expect(starts).toHaveLength(n + 1);
  });
});
