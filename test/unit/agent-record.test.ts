import { describe, expect, it } from 'vitest';
import {
  overlapsOf,
  pairAttempts,
  parseRecord,
} from '../helpers/agent-record.js';

const rec = (...lines: string[]) => parseRecord(lines.join('\n') + '\n');

describe("the scripted agent's record: parsing and pairing", () => {
  it('parses complete lines and leaves a line still being written', () => {
    const lines = parseRecord(
      'start 1 k1 100 agent-001 1000\nend 1 k1 100 agent-001 1500 0\nstart 2 k2',
    );
    expect(lines).toEqual([
      {
        what: 'start',
        issue: '1',
        key: 'k1',
        pid: 100,
        agent: 'agent-001',
        at: 1000,
      },
      {
        what: 'end',
        issue: '1',
        key: 'k1',
        pid: 100,
        agent: 'agent-001',
        at: 1500,
        exit: 0,
      },
    ]);
    expect(() => parseRecord('begin 1 k 1 a 1\n')).toThrow(/malformed/);
  });

  it('pairs by attempt key, not pid: a reused pid is two attempts', () => {
    const { attempts, errors } = pairAttempts(
      rec(
        'start 1 a 100 agent-001 1000',
        'end 1 a 100 agent-001 2000 0',
        'start 2 b 100 agent-002 3000',
        'term 2 b 100 agent-002 3500 143',
      ),
      new Map(),
      9999,
    );
    expect(errors).toEqual([]);
    expect(
      attempts.map((a) => [a.issue, a.start, a.end, a.exit, a.closedBy]),
    ).toEqual([
      ['1', 1000, 2000, 0, 'end'],
      ['2', 3000, 3500, 143, 'term'],
    ]);
  });

  it('closes a killed attempt when its process was seen gone, else leaves it open until now', () => {
    const { attempts } = pairAttempts(
      rec('start 1 a 100 agent-001 1000', 'start 1 b 200 agent-002 4000'),
      new Map([['a', 3000]]),
      9000,
    );
    expect(attempts.map((a) => [a.end, a.closedBy])).toEqual([
      [3000, 'death'],
      [9000, 'open'],
    ]);
  });

  it('reports lines out of order instead of repairing them', () => {
    const { errors } = pairAttempts(
      rec(
        'end 1 a 100 agent-001 900 0',
        'start 1 a 100 agent-001 1000',
        'start 1 a 100 agent-001 1001',
        'end 1 a 100 agent-001 999 0',
        'end 1 a 100 agent-001 1200 0',
        'start 2 c 300 agent-003 10',
        'end 3 c 301 agent-003 20 0',
      ),
      new Map(),
      5000,
    );
    expect(errors).toEqual([
      'line 1 (end #1 a): closes an attempt that never started',
      'line 3 (start #1 a): a second start for this attempt',
      'line 4 (end #1 a): ends before it started',
      'line 5 (end #1 a): a second closing line for this attempt',
      'line 7 (end #3 c): closes an attempt of #2 pid 300',
    ]);
  });

  it('finds attempts of one issue alive at the same time', () => {
    const { attempts } = pairAttempts(
      rec(
        'start 1 a 100 agent-001 1000',
        'start 2 x 150 agent-003 1100',
        'end 1 a 100 agent-001 2000 0',
        'start 1 b 200 agent-002 1900',
        'end 1 b 200 agent-002 2500 0',
        'start 1 c 300 agent-001 2500',
        'end 1 c 300 agent-001 2600 0',
        'end 2 x 150 agent-003 3000 0',
      ),
      new Map(),
      5000,
    );
    const ov = overlapsOf(attempts);
    expect(ov.map((o) => [o.issue, o.a.key, o.b.key, o.ms])).toEqual([
      ['1', 'a', 'b', 100],
    ]);
  });
});
