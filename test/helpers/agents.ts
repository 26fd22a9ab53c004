import { existsSync, readFileSync } from 'node:fs';
import { parseRecord, type RecordLine } from './agent-record.js';
import { cliJson, DEFAULT_WAIT_MS, waitFor } from './cli.js';

export type { RecordLine };

/** The scripted agent's start/end log (AGENT_RECORD_FILE); format: ./agent-record.ts. */
export function readRecord(file: string): RecordLine[] {
  if (!existsSync(file)) return [];
  return parseRecord(readFileSync(file, 'utf8'));
}

/** Alive and not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export async function status(
  dir: string,
  env: Record<string, string>,
): Promise<any> {
  return cliJson(['status'], { cwd: dir, env });
}

/** Waits until an agent works on the given issue; returns its status entry. */
export async function workingOn(
  dir: string,
  env: Record<string, string>,
  issueId: number | string,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<any> {
  return waitFor(
    async () =>
      (await status(dir, env)).agents.find(
        (a: any) => a.state === 'working' && a.issue?.id === Number(issueId),
      ),
    { timeoutMs, what: `an agent working on #${issueId}` },
  );
}
