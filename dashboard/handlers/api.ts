import { SupervisorError } from '../../supervisor/errors.js';
import {
  ISSUE_STATUSES,
  type Issue,
  type IssueStatus,
} from '../../supervisor/store/issues.js';
import { json, type DashRequest, type DashResponse } from '../http.js';
import { slotHistory } from '../../supervisor/logs/slot-log.js';
import { cleanLine } from '../../supervisor/logs/tail.js';
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

type Brief = Pick<
  Issue,
  | 'id'
  | 'title'
  | 'priority'
  | 'status'
  | 'agent'
  | 'branch'
  | 'commit'
  | 'error'
  | 'updatedAt'
>;
const brief = (i: Issue): Brief => ({
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

/**
 * GET /api/issues?status=&since=&before=&limit= — the counts, open issues in queue order, recent
 * results, and one page of all issues (newest first; `next` is the `before` of the next page).
 * Every part is bounded by `limit`, so the answer costs the same whatever the history.
 */
export const getIssues =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const limit = intParam(req.query.limit, 100, 1000);
    const status = req.query.status;
    if (
      status !== undefined &&
      status !== '' &&
      !(ISSUE_STATUSES as readonly string[]).includes(status)
    )
      throw new SupervisorError('ERR_SUP_USAGE', `unknown status "${status}"`, {
        hint: `use one of: ${ISSUE_STATUSES.join(', ')}`,
      });
    const since = req.query.since
      ? intParam(req.query.since, 0, Number.MAX_SAFE_INTEGER)
      : undefined;
    const before = req.query.before
      ? intParam(req.query.before, 0, Number.MAX_SAFE_INTEGER)
      : undefined;
    const { issues } = d.source.ctx;
    const items = [
      ...issues.page({
        limit: limit + 1,
        ...(status ? { status: status as IssueStatus } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(before !== undefined ? { before } : {}),
      }),
    ];
    const page = items.slice(0, limit).map(brief);
    return json(200, {
      counts: issues.counts(),
      pending: issues.pending(limit).map(brief),
      recent: issues.recentlyFinished(Math.min(limit, 100)).map(brief),
      items: page,
      next: items.length > limit ? page[page.length - 1]!.id : null,
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

/**
 * POST /api/agents/:id/restart — what `supervisor restart <agent>` asks: the runner hands its job
 * back unspent and starts again, and a quarantine ends. Answers at once (the page shows the rest).
 */
export const postRestart =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const agentId = req.params.id ?? '';
    d.source.restart(agentId);
    d.hub.kick();
    d.log(`dashboard: restart ${agentId}`);
    return json(202, { agentId, restartRequested: true });
  };

/** GET /api/agents/:id/logs?lines=N — the last lines of a slot's log, attempts' output spliced in. */
export const getLogs =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const file = d.source.logFile(req.params.id ?? '');
    const { lines, position } = slotHistory(
      file,
      intParam(req.query.lines, 200, 5000),
    );
    return json(200, {
      agentId: req.params.id,
      lines: lines.map(cleanLine),
      offset: position.runner,
    });
  };
