import { SupervisorError } from '../../supervisor/errors.js';
import { json, type DashRequest, type DashResponse } from '../http.js';
import { lastLines } from '../logtail.js';
import type { DashboardDeps } from '../deps.js';

export function intParam(
  raw: string | undefined,
  fallback: number,
  max: number,
): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `expected a whole number, got "${raw}"`,
    );
  return Math.min(Number(raw), max);
}

/** GET /api/status — the snapshot the page renders. */
export const getStatus =
  (d: DashboardDeps) => async (): Promise<DashResponse> =>
    json(200, await d.hub.snapshot());

/** GET /api/issues — open issues in queue order and recent results. */
export const getIssues =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const limit = intParam(req.query.limit, 100, 1000);
    const { issues } = d.source.ctx;
    const brief = (i: {
      id: number;
      title: string;
      priority: string;
      status: string;
      agent: string | null;
      branch: string | null;
      commit: string | null;
      error: string | null;
      updatedAt: number;
    }) => ({
      id: i.id,
      title: i.title,
      priority: i.priority,
      status: i.status,
      agent: i.agent,
      branch: i.branch,
      commit: i.commit,
      error: i.error,
      updatedAt: i.updatedAt,
    });
    return json(200, {
      counts: issues.counts(),
      pending: issues.pending(limit).map(brief),
      recent: issues.recentlyFinished(Math.min(limit, 100)).map(brief),
    });
  };

/** GET /api/session — what a script needs to call the write API from a browser session. */
export const getSession = (d: DashboardDeps) => (): DashResponse =>
  json(200, {
    csrfToken: d.security.csrfToken,
    csrfHeader: 'X-Supervisor-CSRF',
    readOnly: d.security.readOnly,
    tokenRequired: d.security.requiresToken,
    inProcess: d.source.inProcess,
  });

/** POST /api/scale {count} — the same desired count `supervisor scale N` sets; 0 stops all agents. */
export const postScale =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const body = (req.body ?? {}) as { count?: unknown };
    const raw = body.count;
    if (typeof raw !== 'number' && typeof raw !== 'string') {
      throw new SupervisorError(
        'ERR_SUP_USAGE',
        'send {"count": N} with the number of agents (0 stops all)',
      );
    }
    const desired = d.source.setDesired(raw);
    d.hub.kick();
    d.log(`dashboard: scale to ${desired} agents`);
    return json(200, { desiredAgents: desired });
  };

/** GET /api/agents/:id/logs?lines=N — the last lines of a slot's runner log. */
export const getLogs =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const file = d.source.logFile(req.params.id ?? '');
    const { lines, offset } = lastLines(
      file,
      intParam(req.query.lines, 200, 5000),
    );
    return json(200, { agentId: req.params.id, lines, offset });
  };
