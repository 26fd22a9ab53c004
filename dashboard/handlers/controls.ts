import { issueSummary } from '../../supervisor/api.js';
import { SupervisorError } from '../../supervisor/errors.js';
import {
  IssueControls,
  type IssueEdit,
} from '../../supervisor/issue-controls.js';
import type { DashboardDeps } from '../deps.js';
import { json, type DashRequest, type DashResponse } from '../http.js';

/** How long a landing asked for on the page waits for another landing to finish. */
const LAND_LOCK_WAIT_MS = 30_000;

function issueIdParam(raw: string | undefined): number {
  if (!raw || !/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw)))
    throw new SupervisorError(
      'ERR_SUP_USAGE',
      `issue id must be a positive whole number, got "${raw ?? ''}"`,
    );
  return Number(raw);
}

/**
 * The issue controls of the CLI and the API (supervisor/issue-controls.ts), as the page's
 * writes: recorded as done by `dashboard`. The queue is asked only while Redis answers, so a
 * control never hangs on a Redis that is down (SQLite is the truth; the feeder follows).
 */
function controls(d: DashboardDeps): IssueControls {
  const { source } = d;
  return new IssueControls(
    source.ctx,
    async () => (source.redis.status === 'ready' ? source.queue : undefined),
    'dashboard',
  );
}

function done(d: DashboardDeps, what: string): void {
  d.hub.kick();
  d.log(`dashboard: ${what}`);
}

/** POST /api/issues/:id/retry — a failed, conflicting, check-failed, cancelled or blocked issue back to the agents. */
export const postRetry =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const id = issueIdParam(req.params.id);
    const issue = controls(d).retry(id);
    done(d, `retried issue #${id}`);
    return json(200, issueSummary(issue));
  };

/** POST /api/issues/:id/reopen — works an issue again from scratch, whatever it came to. */
export const postReopen =
  (d: DashboardDeps) =>
  (req: DashRequest): DashResponse => {
    const id = issueIdParam(req.params.id);
    const issue = controls(d).reopen(id);
    done(d, `reopened issue #${id}`);
    return json(200, issueSummary(issue));
  };

/** POST /api/issues/:id/cancel — its waiting job removed, a running attempt stopped, a late result refused. */
export const postCancel =
  (d: DashboardDeps) =>
  async (req: DashRequest): Promise<DashResponse> => {
    const id = issueIdParam(req.params.id);
    const issue = await controls(d).cancel(id, 'cancelled on the dashboard');
    done(d, `cancelled issue #${id}`);
    return json(200, issueSummary(issue));
  };

/** POST /api/issues/:id/edit {title?, body?, priority?, dependsOn?} — not while it runs or lands. */
export const postEdit =
  (d: DashboardDeps) =>
  async (req: DashRequest): Promise<DashResponse> => {
    const id = issueIdParam(req.params.id);
    const issue = await controls(d).edit(id, parseEdit(req.body));
    done(d, `edited issue #${id}`);
    return json(200, issueSummary(issue));
  };

/**
 * POST /api/issues/:id/land — lands one done issue through the merge queue (the same one as
 * `supervisor land`; serialised with it and with land.auto) and answers with its outcome.
 */
export const postLand =
  (d: DashboardDeps) =>
  async (req: DashRequest): Promise<DashResponse> => {
    const id = issueIdParam(req.params.id);
    d.log(`dashboard: landing issue #${id}`);
    const [outcome] = await d.source.land([id], {
      lockTimeoutMs: LAND_LOCK_WAIT_MS,
    });
    d.hub.kick();
    return json(200, outcome);
  };

function parseEdit(body: unknown): IssueEdit {
  const b = (body ?? {}) as Record<string, unknown>;
  const usage = (msg: string) =>
    new SupervisorError('ERR_SUP_USAGE', msg, {
      hint: 'send {"title"?: string, "body"?: string, "priority"?: "urgent"|"high"|"medium"|"low", "dependsOn"?: [ids]}',
    });
  const edit: IssueEdit = {};
  for (const k of ['title', 'body', 'priority'] as const) {
    if (b[k] === undefined) continue;
    if (typeof b[k] !== 'string') throw usage(`"${k}" must be a string`);
    edit[k] = b[k];
  }
  if (b.dependsOn !== undefined) {
    if (
      !Array.isArray(b.dependsOn) ||
      !b.dependsOn.every((x) => Number.isSafeInteger(x) && (x as number) > 0)
    )
      throw usage('"dependsOn" must be an array of issue ids');
    edit.dependsOn = b.dependsOn as number[];
  }
  return edit;
}
