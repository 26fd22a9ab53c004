/**
 * A remote runner's result push names the claim it holds: the job and the BullMQ lock token of
 * its attempt (the claim's fencing token), in this header. The git endpoint accepts a push to
 * `refs/supervisor/results/<issue>/<attempt>` only from the current holder of exactly that
 * attempt, so nobody — another runner, an agent with the git token — can take the ref first.
 */
export const CLAIM_HEADER = 'X-Supervisor-Claim';

export interface ResultClaim {
  jobId: string;
  token: string;
}

export function encodeClaim(c: ResultClaim): string {
  return Buffer.from(JSON.stringify([c.jobId, c.token]), 'utf8').toString(
    'base64url',
  );
}

export function decodeClaim(
  value: string | string[] | undefined,
): ResultClaim | undefined {
  if (typeof value !== 'string' || value.length > 2048) return undefined;
  try {
    const v = JSON.parse(
      Buffer.from(value.trim(), 'base64url').toString('utf8'),
    ) as unknown;
    if (
      Array.isArray(v) &&
      v.length === 2 &&
      typeof v[0] === 'string' &&
      typeof v[1] === 'string' &&
      v[0].length > 0 &&
      v[1].length > 0
    )
      return { jobId: v[0], token: v[1] };
  } catch {
    /* malformed */
  }
  return undefined;
}
