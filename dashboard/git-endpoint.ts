import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ResultRefs } from '../supervisor/results.js';
import type { Logger } from '../supervisor/daemon.js';
import { GitHttp } from './git-http.js';
import { CLAIM_HEADER } from '../contract/result-claim.js';
import { claimRefusal } from './result-claims.js';
import type { DashboardSecurity } from './security.js';
import type { DashboardSource } from './source.js';

const safeEqual = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/**
 * Whether an Authorization header carries one of the tokens: `Bearer <token>` (a runner's
 * http.extraHeader) or Basic with the token as password (credential helpers, `https://x:token@…`).
 */
export function gitTokenAccepted(
  header: string | undefined,
  tokens: readonly string[],
): boolean {
  if (!header) return false;
  const m = /^(Bearer|Basic)\s+(\S+)$/i.exec(header.trim());
  if (!m?.[1] || !m[2]) return false;
  let presented = m[2];
  if (m[1].toLowerCase() === 'basic') {
    const decoded = Buffer.from(m[2], 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) return false;
    presented = decoded.slice(i + 1);
  }
  return tokens.some((t) => safeEqual(presented, t));
}

/**
 * The dashboard's git endpoint for runners on other hosts. Access: the dashboard token, or the
 * narrower git token (`git.token` / SUPERVISOR_GIT_TOKEN), which opens only this endpoint —
 * fetching the repository and pushing result refs — and none of the dashboard's controls.
 * Without any token the dashboard listens on loopback only, and so does this.
 */
export async function gitEndpoint(
  source: DashboardSource,
  security: DashboardSecurity,
  dashboardToken: string | undefined,
  log: Logger,
): Promise<GitHttp> {
  const { paths, config } = source.ctx;
  const results = new ResultRefs({
    repoRoot: paths.root,
    gitCommonDir: paths.gitCommonDir,
    stateDir: paths.stateDir,
    log,
  });
  await results.ensure();
  const tokens = [dashboardToken, config.git.token].filter(
    (t): t is string => typeof t === 'string' && t.length > 0,
  );
  return new GitHttp({
    gitDir: paths.gitCommonDir,
    resultsRepo: results.resultsRepo,
    log,
    checkPush: (ref, req) =>
      claimRefusal(ref, req.headers[CLAIM_HEADER.toLowerCase()], {
        redis: source.redis,
        queue: source.queue,
      }),
    authorize: (req: IncomingMessage) => {
      const host = req.headers.host;
      if (!security.hostAllowed(host))
        return {
          status: 403,
          message:
            'this endpoint only answers on a loopback address (127.0.0.1 / localhost)',
        };
      if (tokens.length === 0) return undefined;
      if (gitTokenAccepted(req.headers.authorization, tokens)) return undefined;
      return {
        status: 401,
        message:
          'authentication required: send Authorization: Bearer <token> (the git or dashboard token)',
        headers: { 'WWW-Authenticate': 'Basic realm="agent-supervisor git"' },
      };
    },
  });
}
