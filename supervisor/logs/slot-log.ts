import { join } from 'node:path';
import {
  ATTEMPT_LOG_FILE,
  attemptFileOf,
  isAttemptEndLine,
} from '../../contract/attempt-log.js';
import { FileCursor, lastLines } from './tail.js';

/**
 * A slot's log as people read it: the runner's own log (`<logDir>/agent-NNN.log`: what the runner
 * did, and a line where each attempt starts and ends) with each attempt's output spliced in
 * from its attempt log (`<logDir>/agent-NNN/issue-N-attempt-N.log`). The agent's output is
 * written once, to the attempt log; the start marker names that file. `supervisor logs` and the
 * dashboard's log drawer both read a slot through this module.
 *
 * The agent cannot forge a marker: its output never reaches the runner's log.
 */

/** Runner lines looked at to find the attempt in progress, however few lines are asked for. */
const SCAN = 200;

/** Where a reader of a slot's log is: in the runner's log, and in the running attempt's log. */
export interface SlotPosition {
  runner: number;
  attempt?: { file: string; offset: number } | undefined;
}

/** A position as one opaque token (an SSE event id): `123`, or `123:456:issue-5-attempt-1.log`. */
export function encodePosition(p: SlotPosition): string {
  return p.attempt
    ? `${p.runner}:${p.attempt.offset}:${p.attempt.file}`
    : String(p.runner);
}

export function decodePosition(token: string): SlotPosition | undefined {
  const m = /^(\d+)(?::(\d+):([^:/\\]+))?$/.exec(token);
  if (!m) return undefined;
  if (m[3] !== undefined && !ATTEMPT_LOG_FILE.test(m[3])) return undefined;
  return {
    runner: Number(m[1]),
    attempt:
      m[3] === undefined ? undefined : { file: m[3], offset: Number(m[2]) },
  };
}

/** `<logDir>/agent-001.log` → `<logDir>/agent-001`, where that slot's attempt logs are. */
function attemptDir(runnerLog: string): string {
  return runnerLog.replace(/\.log$/, '');
}

/** The last `n` lines of a slot's log, attempts spliced in, and where to follow on from. */
export function slotHistory(
  runnerLog: string,
  n: number,
): { lines: string[]; position: SlotPosition } {
  const dir = attemptDir(runnerLog);
  const runner = lastLines(runnerLog, Math.max(n, SCAN));
  const lines: string[] = [];
  let attempt: SlotPosition['attempt'];
  for (const line of runner.lines) {
    lines.push(line);
    const file = attemptFileOf(line);
    if (file) {
      const out = lastLines(join(dir, file), Math.max(n, 1));
      lines.push(...out.lines);
      attempt = { file, offset: out.offset };
    } else if (isAttemptEndLine(line)) attempt = undefined;
  }
  return {
    lines: n > 0 ? lines.slice(-n) : [],
    position: { runner: runner.offset, attempt },
  };
}

/** Everything a cursor has left, read in bounded pieces. */
function drain(cursor: FileCursor): string[] {
  const out: string[] = [];
  for (let batch = cursor.read(); batch.length > 0; batch = cursor.read())
    out.push(...batch);
  return out;
}

/**
 * Follows a slot's log from `from` like `tail -F`: runner lines as they come, and the running
 * attempt's output between its start and end lines (the rest of an attempt's output is read
 * before its end line is handed over, so the order is kept).
 */
export function followSlot(
  runnerLog: string,
  from: SlotPosition,
  onLines: (lines: string[], position: SlotPosition) => void,
  intervalMs = 200,
): () => void {
  const dir = attemptDir(runnerLog);
  const runner = new FileCursor(runnerLog, from.runner);
  let attempt = from.attempt
    ? new FileCursor(join(dir, from.attempt.file), from.attempt.offset)
    : undefined;
  let attemptFile = from.attempt?.file;
  const timer = setInterval(() => {
    const out: string[] = [];
    for (const line of runner.read()) {
      const file = attemptFileOf(line);
      if (attempt && (file || isAttemptEndLine(line))) {
        out.push(...drain(attempt));
        attempt = undefined;
        attemptFile = undefined;
      }
      out.push(line);
      if (file) {
        attempt = new FileCursor(join(dir, file), 0);
        attemptFile = file;
      }
    }
    if (attempt) out.push(...attempt.read());
    if (out.length === 0) return;
    onLines(out, {
      runner: runner.offset,
      attempt:
        attempt && attemptFile
          ? { file: attemptFile, offset: attempt.offset }
          : undefined,
    });
  }, intervalMs);
  return () => clearInterval(timer);
}
