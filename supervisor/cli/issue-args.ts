// Issue ids as every issue command reads them, and the API's issue summary (shared by issues.ts,
// issue-controls.ts and land.ts without importing one another).
import { SupervisorError } from '../errors.js';

export { issueSummary } from '../api.js';

/** `12,13` or `#12, #13` → [12, 13]. */
export function parseIdList(raw: string): number[] {
  const parts = raw
    .split(',')
    .map((p) => p.trim().replace(/^#/, ''))
    .filter(Boolean);
  if (parts.length === 0)
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `--after needs issue ids, got "${raw}"`,
      { hint: 'e.g. --after 12,13' },
    );
  return parts.map(parseIssueId);
}

export function parseIssueId(raw: string): number {
  // Beyond 2^53 a number is rounded: 9007199254740993 would show issue 9007199254740992.
  if (
    !/^\d+$/.test(raw.trim()) ||
    Number(raw) < 1 ||
    !Number.isSafeInteger(Number(raw))
  ) {
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `issue id must be a positive whole number (at most ${Number.MAX_SAFE_INTEGER}), got "${raw}"`,
      { hint: 'e.g. supervisor issue show 3' },
    );
  }
  return Number(raw);
}
