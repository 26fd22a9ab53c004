import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { SupervisorError } from './errors.js';
import { processExists as alive } from './processes.js';

export interface DaemonInfo {
  pid: number;
  startedAt: number;
  dashboardUrl?: string;
  /** Set once the control plane is up (feeder, recorder and scaler running). */
  ready?: boolean;
}

/** The running supervisor of a repository, if any (a stale pid file is ignored). */
export function runningDaemon(pidFile: string): DaemonInfo | undefined {
  let info: DaemonInfo;
  try {
    info = JSON.parse(readFileSync(pidFile, 'utf8')) as DaemonInfo;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(info.pid) || !alive(info.pid)) return undefined;
  try {
    const cmd = readFileSync(`/proc/${info.pid}/cmdline`, 'utf8');
    if (!cmd.includes('supervisor') && !cmd.includes('node')) return undefined;
  } catch {
    /* no /proc */
  }
  return info;
}

/** Takes the repository's supervisor lock; refuses when another supervisor holds it. */
export function acquirePidFile(pidFile: string, info: DaemonInfo): void {
  const other = runningDaemon(pidFile);
  if (other && other.pid !== info.pid) {
    throw new SupervisorError(
      'ERR_SUP_ALREADY_RUNNING',
      `a supervisor is already running for this repository (pid ${other.pid})`,
      {
        hint: 'use `supervisor status`, or stop it first with `supervisor stop`',
      },
    );
  }
  rmSync(pidFile, { force: true });
  try {
    writeFileSync(pidFile, JSON.stringify(info), { flag: 'wx' });
  } catch (cause) {
    const again = runningDaemon(pidFile);
    throw new SupervisorError(
      'ERR_SUP_ALREADY_RUNNING',
      `a supervisor is already running for this repository${again ? ` (pid ${again.pid})` : ''}`,
      { cause },
    );
  }
}

export function updatePidFile(pidFile: string, info: DaemonInfo): void {
  writeFileSync(pidFile, JSON.stringify(info));
}

export function releasePidFile(pidFile: string, pid: number): void {
  const info = runningDaemon(pidFile);
  if (!info || info.pid === pid) rmSync(pidFile, { force: true });
}
