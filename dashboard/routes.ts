import type { DashboardDeps } from './deps.js';
import {
  getIssues,
  getLogs,
  getSession,
  getStatus,
  postRestart,
  postScale,
} from './handlers/api.js';
import {
  postCancel,
  postEdit,
  postLand,
  postReopen,
  postRetry,
} from './handlers/controls.js';
import { logEvents, statusEvents } from './handlers/events.js';
import {
  getLogin,
  loginForm,
  page,
  postLogin,
  postLogout,
  script,
  stylesheet,
} from './handlers/pages.js';
import type { DashRequest, DashResponse, Route, RouteKind } from './http.js';

/** GET /metrics — Prometheus exposition. */
const metrics = (d: DashboardDeps) => async (): Promise<DashResponse> => ({
  status: 200,
  type: 'prometheus',
  // The pushed snapshot when it is fresh (a page is open), else one built for this scrape.
  body: await d.metrics.render(
    d.hub.latest() && Date.now() - d.hub.latest()!.snapshot.at < 1000
      ? d.hub.latest()!.snapshot
      : await d.hub.snapshot(),
  ),
  headers: { 'Content-Type': d.metrics.contentType },
});

/** Every route of the dashboard except Bull Board (mounted by the adapter under /queues). */
export function dashboardRoutes(d: DashboardDeps): Route[] {
  return [
    { method: 'GET', path: '/', kind: 'page', handler: page(d) },
    {
      method: 'GET',
      path: '/assets/app.css',
      kind: 'page',
      handler: stylesheet,
    },
    { method: 'GET', path: '/assets/app.js', kind: 'page', handler: script },
    { method: 'GET', path: '/login', kind: 'login', handler: getLogin(d) },
    { method: 'POST', path: '/login', kind: 'login', handler: postLogin(d) },
    { method: 'POST', path: '/logout', kind: 'login', handler: postLogout(d) },
    { method: 'GET', path: '/api/status', kind: 'api', handler: getStatus(d) },
    { method: 'GET', path: '/api/issues', kind: 'api', handler: getIssues(d) },
    {
      method: 'GET',
      path: '/api/session',
      kind: 'api',
      handler: getSession(d),
    },
    {
      method: 'POST',
      path: '/api/scale',
      kind: 'write',
      handler: postScale(d),
    },
    {
      method: 'POST',
      path: '/api/agents/:id/restart',
      kind: 'write',
      handler: postRestart(d),
    },
    {
      method: 'GET',
      path: '/api/events',
      kind: 'api',
      handler: statusEvents(d),
    },
    {
      method: 'GET',
      path: '/api/agents/:id/logs',
      kind: 'api',
      handler: getLogs(d),
    },
    {
      method: 'GET',
      path: '/api/agents/:id/logs/stream',
      kind: 'api',
      handler: logEvents(d),
    },
    { method: 'GET', path: '/metrics', kind: 'api', handler: metrics(d) },
    ...issueControlRoutes(d),
  ];
}

/** The issue controls (retry, cancel, edit, reopen, land): writes, so CSRF and read-only apply. */
function issueControlRoutes(d: DashboardDeps): Route[] {
  const controls = {
    retry: postRetry,
    cancel: postCancel,
    edit: postEdit,
    reopen: postReopen,
    land: postLand,
  };
  return Object.entries(controls).map(([verb, handler]) => ({
    method: 'POST',
    path: `/api/issues/:id/${verb}`,
    kind: 'write',
    handler: handler(d),
  }));
}

/**
 * The guard in front of every request (Bull Board's too). A browser that is not logged in gets
 * the login form where it asked for a page, everything else a 401 JSON answer.
 */
export function gate(
  d: DashboardDeps,
  req: Pick<DashRequest, 'method' | 'path' | 'headers'>,
  kind: RouteKind | 'queues',
): DashResponse | undefined {
  const refused = d.security.guard(req, kind);
  if (
    refused &&
    refused.status === 401 &&
    req.method === 'GET' &&
    (req.headers.accept ?? '').includes('text/html')
  ) {
    return loginForm(401);
  }
  return refused;
}
