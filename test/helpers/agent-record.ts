/**
 * The scripted agent's own record of its attempts (AGENT_RECORD_FILE, written outside the
 * supervisor's reach): one line per event, appended in the order they happened,
 *   start <issue> <key> <pid> <agent> <epoch-ms>
 *   end   <issue> <key> <pid> <agent> <epoch-ms> <exit-code>
 *   term  <issue> <key> <pid> <agent> <epoch-ms> <exit-code>     (it got SIGTERM)
 * where <key> is random per agent process: pids are reused, keys are not. A SIGKILLed agent
 * writes no closing line; its end is the moment a watcher saw its pid gone.
 * Pure functions, so the pairing rules have unit tests (test/unit/agent-record.test.ts).
 */

export interface RecordLine {
  what: 'start' | 'end' | 'term';
  issue: string;
  key: string;
  pid: number;
  agent: string;
  at: number;
  /** Exit code for `end` and `term` lines. */
  exit?: number;
}

export interface Attempt {
  issue: string;
  key: string;
  agent: string;
  pid: number;
  start: number;
  /** The closing line's time, or when the process was seen gone, or "now" if still alive. */
  end: number;
  /** How it ended by its own word: an exit code, or undefined (killed, or still running). */
  exit?: number;
  closedBy: 'end' | 'term' | 'death' | 'open';
}

/** Parses complete lines (a last line still being written, without its newline, waits). */
export function parseRecord(text: string): RecordLine[] {
  const out: RecordLine[] = [];
  const lines = text.split('\n');
  lines.pop();
  for (const l of lines) {
    if (!l.trim()) continue;
    const [what, issue, key, pid, agent, at, exit] = l.trim().split(' ');
    if (
      (what !== 'start' && what !== 'end' && what !== 'term') ||
      !issue ||
      !key ||
      !agent ||
      !Number.isFinite(Number(pid)) ||
      !Number.isFinite(Number(at))
    )
      throw new Error(`malformed agent record line: ${JSON.stringify(l)}`);
    out.push({
      what,
      issue,
      key,
      pid: Number(pid),
      agent,
      at: Number(at),
      ...(exit !== undefined ? { exit: Number(exit) } : {}),
    });
  }
  return out;
}

/**
 * Pairs each attempt's start with its closing line, in file order. Anything out of order is an
 * error, never silently repaired: a closing line before (or without) its start, a second start
 * or a second closing line for one key, a closing line from another issue or pid, or time
 * running backwards within an attempt.
 */
export function pairAttempts(
  lines: RecordLine[],
  deaths: ReadonlyMap<string, number>,
  now: number,
): { attempts: Attempt[]; errors: string[] } {
  const open = new Map<string, Attempt>();
  const closed = new Set<string>();
  const attempts: Attempt[] = [];
  const errors: string[] = [];
  lines.forEach((l, i) => {
    const where = `line ${i + 1} (${l.what} #${l.issue} ${l.key})`;
    if (l.what === 'start') {
      if (open.has(l.key) || closed.has(l.key)) {
        errors.push(`${where}: a second start for this attempt`);
        return;
      }
      const a: Attempt = {
        issue: l.issue,
        key: l.key,
        agent: l.agent,
        pid: l.pid,
        start: l.at,
        end: now,
        closedBy: 'open',
      };
      open.set(l.key, a);
      attempts.push(a);
      return;
    }
    const a = open.get(l.key);
    if (!a) {
      errors.push(
        closed.has(l.key)
          ? `${where}: a second closing line for this attempt`
          : `${where}: closes an attempt that never started`,
      );
      return;
    }
    if (a.issue !== l.issue || a.pid !== l.pid || a.agent !== l.agent)
      errors.push(`${where}: closes an attempt of #${a.issue} pid ${a.pid}`);
    if (l.at < a.start) errors.push(`${where}: ends before it started`);
    a.end = l.at;
    a.exit = l.exit;
    a.closedBy = l.what;
    open.delete(l.key);
    closed.add(l.key);
  });
  for (const a of open.values()) {
    const died = deaths.get(a.key);
    if (died !== undefined) {
      a.end = Math.max(a.start, died);
      a.closedBy = 'death';
    }
  }
  return { attempts, errors };
}

export interface Overlap {
  issue: string;
  a: Attempt;
  b: Attempt;
  ms: number;
}

/** Pairs of attempts of one issue alive at the same time. */
export function overlapsOf(attempts: Attempt[]): Overlap[] {
  const byIssue = new Map<string, Attempt[]>();
  for (const a of attempts)
    byIssue.set(a.issue, [...(byIssue.get(a.issue) ?? []), a]);
  const out: Overlap[] = [];
  for (const [issue, list] of byIssue) {
    list.sort((x, y) => x.start - y.start);
    for (let i = 0; i < list.length; i++)
      for (let j = i + 1; j < list.length; j++) {
        const a = list[i]!;
        const b = list[j]!;
        if (b.start < a.end) out.push({ issue, a, b, ms: a.end - b.start });
      }
  }
  return out;
}
