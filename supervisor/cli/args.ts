import { SupervisorError } from '../errors.js';

/** A flag that takes a whole number (ports, counts): a usage error (exit 2) otherwise. */
export function wholeNumberFlag(flag: string, raw: string): number {
  const s = raw.trim();
  if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s))) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${flag} must be a whole number, got "${raw}"`,
    );
  }
  return Number(s);
}

/** A flag that takes a number of seconds (`--timeout 30`, `--timeout 0.5`). */
export function secondsFlag(flag: string, raw: string): number {
  const s = raw.trim();
  if (!/^\d+(\.\d+)?$/.test(s) || !Number.isFinite(Number(s))) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `${flag} must be a number of seconds, got "${raw}"`,
      { hint: `e.g. ${flag} 60` },
    );
  }
  return Number(s);
}

/** `--agent-user 1000:1000`: a usage error (exit 2) for anything else, root included. */
export function agentUserFlag(raw: string): { uid: number; gid: number } {
  const m = /^([1-9]\d*):(\d+)$/.exec(raw.trim());
  if (!m)
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--agent-user must be uid:gid with a uid other than 0, got "${raw}"`,
      { hint: "e.g. --agent-user 1000:1000 (the runner image's agent user)" },
    );
  return { uid: Number(m[1]), gid: Number(m[2]) };
}
