import { appendFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { attemptFileOf, attemptStartLine } from '../../contract/attempt-log.js';
import {
  decodePosition,
  encodePosition,
  followSlot,
  slotHistory,
} from '../../supervisor/logs/slot-log.js';

const T = '2026-05-01T10:00:00.000Z ';

function slot() {
  const dir = mkdtempSync(join(tmpdir(), 'sup-slotlog-'));
  mkdirSync(join(dir, 'agent-001'));
  const runner = join(dir, 'agent-001.log');
  const attempt = (n: number) =>
    join(dir, 'agent-001', `issue-${n}-attempt-1.log`);
  const start = (n: number) =>
    `${T}${attemptStartLine({ agentId: 'agent-001', jobId: `issue-${n}`, attempt: 1, logFile: `issue-${n}-attempt-1.log`, title: `issue ${n}\nsecond line` })}\n`;
  return { runner, attempt, start };
}

describe("a slot's log: the runner's lines with each attempt's output spliced in", () => {
  it('splices finished and running attempts into the history, and knows where to follow on', () => {
    const s = slot();
    writeFileSync(
      s.runner,
      `ready\n${s.start(1)}${T}--- end: agent exited 0\n${s.start(2)}`,
    );
    writeFileSync(s.attempt(1), 'one-a\none-b\n');
    writeFileSync(s.attempt(2), 'two-a\n');
    const h = slotHistory(s.runner, 100);
    expect(h.lines).toEqual([
      'ready',
      s.start(1).trimEnd(),
      'one-a',
      'one-b',
      `${T}--- end: agent exited 0`,
      s.start(2).trimEnd(),
      'two-a',
    ]);
    expect(h.position.attempt).toEqual({
      file: 'issue-2-attempt-1.log',
      offset: 'two-a\n'.length,
    });
    expect(slotHistory(s.runner, 2).lines).toEqual([
      s.start(2).trimEnd(),
      'two-a',
    ]);
    // Asked for no lines, it still knows the attempt in progress.
    expect(slotHistory(s.runner, 0)).toMatchObject({
      lines: [],
      position: { attempt: { file: 'issue-2-attempt-1.log' } },
    });
  });

  it('follows the running attempt and reads the rest of its output before its end line', async () => {
    const s = slot();
    writeFileSync(s.runner, 'ready\n');
    const seen: string[] = [];
    let last = '';
    const stop = followSlot(
      s.runner,
      slotHistory(s.runner, 10).position,
      (lines, pos) => {
        seen.push(...lines);
        last = encodePosition(pos);
      },
      10,
    );
    appendFileSync(s.runner, s.start(3));
    writeFileSync(s.attempt(3), 'three-a\n');
    await new Promise((r) => setTimeout(r, 100));
    expect(decodePosition(last)?.attempt?.file).toBe('issue-3-attempt-1.log');
    // The output's last lines and the end line arrive in the same tick: the output comes first.
    appendFileSync(s.attempt(3), 'three-b\n');
    appendFileSync(s.runner, `${T}--- end: agent exited 0\n`);
    await new Promise((r) => setTimeout(r, 100));
    stop();
    expect(seen).toEqual([
      s.start(3).trimEnd(),
      'three-a',
      'three-b',
      `${T}--- end: agent exited 0`,
    ]);
    expect(decodePosition(last)?.attempt).toBeUndefined();
  });

  it('reads a marker only from a start line it wrote, and positions only with attempt file names', () => {
    expect(
      attemptFileOf(
        `${T}--- agent-001 issue-1 attempt 2 [issue-1-attempt-2.log]: x`,
      ),
    ).toBe('issue-1-attempt-2.log');
    expect(
      attemptFileOf(
        `${T}--- agent-001 issue-1 attempt 2 [../../etc/passwd]: x`,
      ),
    ).toBeUndefined();
    expect(decodePosition('12:3:../x.log')).toBeUndefined();
    expect(decodePosition('12:3:issue-1-attempt-1.log')).toEqual({
      runner: 12,
      attempt: { file: 'issue-1-attempt-1.log', offset: 3 },
    });
    expect(decodePosition('x')).toBeUndefined();
  });
});
