import { readFileSync, renameSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { replaceSlotFile, type FileOwner } from './slot-files.js';

/** What a runner writes about the agent it runs, so a successor or the supervisor can kill it. */
export interface AgentRecord {
  pid: number;
  /** A random value in the agent's environment: proves a pid still belongs to this agent. */
  marker: string;
  jobId: string;
  attempt: number;
  startedAt: number;
}

export function writeAgentRecord(
  file: string,
  rec: AgentRecord,
  owner?: FileOwner,
): void {
  replaceSlotFile(`${file}.tmp`, JSON.stringify(rec), owner);
  renameSync(`${file}.tmp`, file);
}

export function readAgentRecord(file: string): AgentRecord | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as AgentRecord;
  } catch {
    return undefined;
  }
}

/** True when `rec.pid` is alive and still the agent that record describes (pids get reused). */
export function isOurAgent(rec: AgentRecord): boolean {
  try {
    process.kill(rec.pid, 0);
  } catch {
    return false;
  }
  try {
    return readFileSync(`/proc/${rec.pid}/environ`).includes(
      `SUPERVISOR_RUN_MARKER=${rec.marker}`,
    );
  } catch {
    // No /proc (macOS): ask ps for the environment of the process.
    try {
      return execFileSync(
        'ps',
        ['eww', '-o', 'command=', '-p', String(rec.pid)],
        { encoding: 'utf8' },
      ).includes(rec.marker);
    } catch {
      return false;
    }
  }
}
