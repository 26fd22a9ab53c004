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
