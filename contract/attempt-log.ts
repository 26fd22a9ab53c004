/**
 * The lines a runner writes to its own log around each attempt, shared by the runner (which
 * writes them) and `supervisor logs` / the dashboard (which splice the attempt's output, written
 * once to its attempt log, in between: supervisor/logs/slot-log.ts).
 *
 *   2026-05-01T10:00:00.000Z --- agent-001 issue-5 attempt 1 [issue-5-attempt-1.log]: title
 *   2026-05-01T10:03:12.000Z --- end: agent exited 0
 */

export const ATTEMPT_LOG_FILE = /^issue-\d+-attempt-\d+\.log$/;
const START =
  /^(?:\S+Z )?--- agent-\d{3} \S+ attempt \d+ \[(issue-\d+-attempt-\d+\.log)\]/;
const END = /^(?:\S+Z )?--- end: /;

/** The line the runner writes to its log when an attempt starts (the title's first line last). */
export function attemptStartLine(o: {
  agentId: string;
  jobId: string;
  attempt: number;
  logFile: string;
  title: string;
}): string {
  return `--- ${o.agentId} ${o.jobId} attempt ${o.attempt} [${o.logFile}]: ${o.title.split('\n')[0]}`;
}

/** The line the runner writes to its log when an attempt's agent has exited. */
export function attemptEndLine(how: string): string {
  return `--- end: agent ${how}`;
}

/** The attempt log a start line names, if `line` is one. */
export function attemptFileOf(line: string): string | undefined {
  return START.exec(line)?.[1];
}

export function isAttemptEndLine(line: string): boolean {
  return END.test(line);
}
