import type { Context } from './context.js';
import { runningDaemon } from './pidfile.js';
import { getSetting, setSetting, type Db } from './store/db.js';

/**
 * What the running supervisor was started with (flags included), recorded in SQLite at start:
 * `scale`, `status` and the page use the running supervisor's maximum and agent command, not
 * whatever the command line of the caller would resolve to.
 */
export interface RunningConfig {
  pid: number;
  agentCommand: string | undefined;
  runtime: string;
  image: string;
  maxAgents: number;
  memoryPerAgentBytes: number;
}

const KEY = 'running_config';

export function recordRunningConfig(db: Db, rc: RunningConfig): void {
  setSetting(db, KEY, JSON.stringify(rc));
}

/** The record of the supervisor with this pid (undefined for another one or none). */
export function readRunningConfig(
  db: Db,
  pid: number | undefined,
): RunningConfig | undefined {
  if (pid === undefined) return undefined;
  const raw = getSetting(db, KEY);
  if (!raw) return undefined;
  try {
    const rc = JSON.parse(raw) as RunningConfig;
    return rc.pid === pid ? rc : undefined;
  } catch {
    return undefined;
  }
}

/** The maximum `scale` allows: the running supervisor's, else this machine's default. */
export function effectiveMaxAgents(ctx: Context): {
  maxAgents: number;
  running: boolean;
} {
  const rc = readRunningConfig(ctx.db, runningDaemon(ctx.paths.pidFile)?.pid);
  return rc
    ? { maxAgents: rc.maxAgents, running: true }
    : { maxAgents: ctx.platform.maxAgents, running: false };
}
