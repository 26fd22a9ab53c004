/**
 * The autoscaling rule (supervisor/autoscaler.ts), driven directly and through its loop with an
 * in-memory database and a scripted queue and registry: a backlog grows the agents at once up to
 * the maximum (and the resource limit), idle agents go after the grace period down to the
 * minimum (to zero when it is 0), highest slot first and never a busy one, and a pause holds the
 * count. The same rule against a real supervisor: test/agentops/autoscale.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  AutoscaleLoop,
  decideAgents,
  parseAutoscaleRange,
  readAutoscale,
  writeAutoscale,
  type AutoscaleInput,
} from '../../supervisor/autoscaler.js';
import { slotId } from '../../contract/job.js';
import type { RegisteredAgent } from '../../supervisor/registry.js';
import {
  openDatabase,
  setSetting,
  type Db,
} from '../../supervisor/store/db.js';
import {
  DESIRED_KEY,
  readDesired,
  requestScale,
} from '../../supervisor/scaler.js';

const GRACE = 60_000;
const policy = { min: 0, max: 4, idleGraceMs: GRACE };

function input(over: Partial<AutoscaleInput>): AutoscaleInput {
  return {
    policy,
    current: 0,
    waiting: 0,
    busy: 0,
    paused: false,
    limit: 16,
    idleForMs: () => undefined,
    ...over,
  };
}

describe('decideAgents', () => {
  it('a backlog grows the agents at once, up to the maximum and the resource limit', () => {
    expect(decideAgents(input({ waiting: 2 }))).toBe(2);
    expect(decideAgents(input({ waiting: 50 }))).toBe(4);
    expect(decideAgents(input({ current: 2, waiting: 1, busy: 2 }))).toBe(3);
    expect(decideAgents(input({ waiting: 50, limit: 3 }))).toBe(3);
    // Already above what resources allow (memory went): back to the limit.
    expect(decideAgents(input({ current: 4, busy: 4, limit: 2 }))).toBe(2);
  });

  it('idle agents go after the grace period, highest slot first, down to the minimum', () => {
    const idle = (ms: Record<number, number>) => (n: number) => ms[n];
    // Not yet: idle for less than the grace.
    expect(
      decideAgents(
        input({ current: 3, idleForMs: idle({ 1: 1, 2: 1, 3: GRACE - 1 }) }),
      ),
    ).toBe(3);
    expect(
      decideAgents(
        input({
          current: 3,
          idleForMs: idle({ 1: GRACE, 2: GRACE, 3: GRACE }),
        }),
      ),
    ).toBe(0);
    expect(
      decideAgents(
        input({
          policy: { ...policy, min: 1 },
          current: 3,
          idleForMs: idle({ 1: GRACE, 2: GRACE, 3: GRACE }),
        }),
      ),
    ).toBe(1);
    // Slot 3 busy: nothing stops (slots stop from the top; a busy one is never stopped).
    expect(
      decideAgents(
        input({ current: 3, busy: 1, idleForMs: idle({ 1: GRACE, 2: GRACE }) }),
      ),
    ).toBe(3);
    // Slot 2 busy, 3 idle: 3 goes, 2 stays.
    expect(
      decideAgents(
        input({ current: 3, busy: 1, idleForMs: idle({ 1: GRACE, 3: GRACE }) }),
      ),
    ).toBe(2);
  });

  it('a pause holds the count: no growth for a backlog nobody may claim, no shrinking either', () => {
    expect(decideAgents(input({ paused: true, waiting: 10 }))).toBe(0);
    expect(
      decideAgents(
        input({ paused: true, current: 3, idleForMs: () => GRACE * 10 }),
      ),
    ).toBe(3);
  });
});

describe('the loop and its setting', () => {
  let db: Db;
  beforeEach(() => (db = openDatabase(':memory:')));
  afterEach(() => db.close());

  function loop(state: {
    waiting: number;
    paused?: boolean;
    agents: Record<number, { state: RegisteredAgent['state']; since: number }>;
    now: number;
  }) {
    const logs: string[] = [];
    const l = new AutoscaleLoop({
      db,
      waiting: async () => state.waiting,
      registry: async () =>
        new Map(
          Object.entries(state.agents).map(([n, a]) => [
            slotId(Number(n)),
            { agentId: slotId(Number(n)), ...a } as RegisteredAgent,
          ]),
        ),
      paused: () => state.paused === true,
      limit: (n) => n,
      readDesired: () => readDesired(db),
      setDesired: (n) => setSetting(db, DESIRED_KEY, String(n)),
      log: (m) => logs.push(m),
      now: () => state.now,
    });
    return { l, logs };
  }

  it('does nothing while off; backlog up → max, pause holds, idle → min', async () => {
    const state = {
      waiting: 9,
      paused: false,
      agents: {} as Record<
        number,
        { state: RegisteredAgent['state']; since: number }
      >,
      now: 1_000_000,
    };
    const { l, logs } = loop(state);
    expect(await l.tick()).toBeUndefined();
    expect(readDesired(db)).toBe(0);
    writeAutoscale(db, { min: 1, max: 3, idleGraceMs: GRACE });
    state.paused = true;
    expect(await l.tick()).toBe(0);
    expect(logs.join('\n')).toMatch(
      /holding 0 agents while claiming is paused \(9 waiting\)/,
    );
    state.paused = false;
    expect(await l.tick()).toBe(3);
    expect(readDesired(db)).toBe(3);
    for (const n of [1, 2, 3])
      state.agents[n] = { state: 'working', since: state.now };
    state.waiting = 0;
    expect(await l.tick()).toBe(3);
    for (const n of [1, 2, 3])
      state.agents[n] = { state: 'idle', since: state.now };
    state.now += GRACE;
    expect(await l.tick()).toBe(1);
    expect(logs.at(-1)).toMatch(/autoscale: 3 → 1 agents/);
    // A fixed count turns autoscaling off.
    requestScale(db, 2);
    expect(readAutoscale(db)).toBeUndefined();
    expect(await l.tick()).toBeUndefined();
    expect(readDesired(db)).toBe(2);
  });

  it('MIN..MAX is checked: a range, MIN ≤ MAX, MAX within the maximum', () => {
    expect(parseAutoscaleRange('0..4', 8)).toEqual({ min: 0, max: 4 });
    expect(() => parseAutoscaleRange('4', 8)).toThrow(/MIN\.\.MAX/);
    expect(() => parseAutoscaleRange('3..1', 8)).toThrow(/MIN ≤ MAX/);
    expect(() => parseAutoscaleRange('0..0', 8)).toThrow(/MAX ≥ 1/);
    expect(() => parseAutoscaleRange('0..9', 8)).toThrow(/maximum of 8/);
  });
});
