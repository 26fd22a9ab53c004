import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import type { Daemon, Logger } from '../supervisor/daemon.js';
import { DEFAULT_DASHBOARD_PORT } from '../supervisor/config.js';
import { SupervisorError, coerceError } from '../supervisor/errors.js';
import { bullBoardRouter } from './bull-board.js';
import type { DashboardDeps } from './deps.js';
import { ExpressDashboard } from './express-adapter.js';
import { gitEndpoint } from './git-endpoint.js';
import { DashboardMetrics } from './metrics.js';
import { dashboardRoutes } from './routes.js';
import { DashboardSecurity, checkListenAddress } from './security.js';
import { StatusHub } from './snapshot.js';
import { daemonSource, type DashboardSource } from './source.js';

export interface DashboardOptions {
  /** @defaultValue "127.0.0.1" — other addresses need `token`. */
  host: string;
  /**
   * Exactly this port (an error when it is taken); 0: any free port. Unset: 7420, or the next
   * free one with a warning in the log.
   */
  port: number | undefined;
  token?: string | undefined;
  readOnly: boolean;
  log: Logger;
}

export interface RunningDashboard {
  url: string;
  host: string;
  port: number;
  /** The snapshot hub (its `builds` count shows what an open page costs). */
  hub: StatusHub;
  close(): Promise<void>;
}

/** Dev servers agents commonly run; never hand these to the dashboard. */
const AVOID = new Set([3000, 5173, 8000, 8080]);
const PORT_ATTEMPTS = 20;

function listenOnce(
  server: Server,
  port: number,
  host: string,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/**
 * Listens on the port asked for (taken: an error naming it, never silently another), or, when
 * none was asked for, on 7420 or the next free port after it, saying so.
 */
async function listen(
  server: Server,
  asked: number | undefined,
  host: string,
  log: Logger,
): Promise<number> {
  if (asked === 0) return listenOnce(server, 0, host);
  if (asked !== undefined) {
    try {
      return await listenOnce(server, asked, host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new SupervisorError(
        'ERR_SUP_CONFIG',
        code === 'EADDRINUSE'
          ? `the dashboard port ${host}:${asked} is taken by another program`
          : `the dashboard cannot listen on ${host}:${asked}: ${coerceError(err).message}`,
        {
          hint: 'stop what holds it, pick another port with --dashboard-port (SUPERVISOR_DASHBOARD_PORT, "dashboard.port"), use 0 for any free port, or --no-dashboard',
          cause: err,
        },
      );
    }
  }
  const port = DEFAULT_DASHBOARD_PORT;
  let lastError: Error | undefined;
  for (let p = port, tries = 0; tries < PORT_ATTEMPTS && p <= 65535; p++) {
    if (AVOID.has(p)) continue;
    tries += 1;
    try {
      const got = await listenOnce(server, p, host);
      if (got !== port)
        log(
          `warning: the dashboard's default port ${port} is taken; serving on ${got} instead (set --dashboard-port to choose one)`,
        );
      return got;
    } catch (err) {
      lastError = coerceError(err);
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EADDRINUSE' && code !== 'EACCES') break;
    }
  }
  throw new SupervisorError(
    'ERR_SUP_CONFIG',
    `the dashboard cannot listen on ${host}:${port} or the ${PORT_ATTEMPTS - 1} ports after it: ${lastError?.message ?? 'unknown error'}`,
    {
      hint: 'pick another port with --dashboard-port (SUPERVISOR_DASHBOARD_PORT), or --no-dashboard',
      cause: lastError,
    },
  );
}

export function dashboardUrl(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' ? hostname() : host;
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}/`;
}

/** Serves the dashboard for a source (the in-process control plane, or a repository's state). */
export async function startDashboard(
  source: DashboardSource,
  o: DashboardOptions,
): Promise<RunningDashboard> {
  checkListenAddress(o.host, o.token);
  const security = new DashboardSecurity({
    token: o.token,
    readOnly: o.readOnly,
    host: o.host,
  });
  const hub = new StatusHub(source, { readOnly: o.readOnly, log: o.log });
  const deps: DashboardDeps = {
    source,
    hub,
    security,
    metrics: new DashboardMetrics(source),
    log: o.log,
  };
  const web = new ExpressDashboard(deps, dashboardRoutes(deps), {
    basePath: '/queues',
    router: bullBoardRouter(source.queue, {
      basePath: '/queues',
      readOnly: o.readOnly,
      repoName: basename(source.ctx.paths.root),
    }),
  });
  // Runners on other hosts fetch the repository and push result refs here (`/git/repo.git`).
  const git = await gitEndpoint(source, security, o.token, o.log);
  const server = createServer((req, res) =>
    git.handles(req) ? git.handle(req, res) : web.app(req, res),
  );
  server.keepAliveTimeout = 5_000;
  let port: number;
  try {
    port = await listen(server, o.port, o.host, o.log);
  } catch (err) {
    hub.close();
    throw err;
  }
  const url = dashboardUrl(o.host, port);
  let closing: Promise<void> | undefined;
  return {
    url,
    host: o.host,
    port,
    hub,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        hub.close();
        web.closeStreams();
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

/** Refuses a dashboard configuration that must not start (a non-loopback address without a token), before anything runs. */
export function checkDashboardConfig(dashboard: {
  host: string;
  token?: string | undefined;
}): void {
  checkListenAddress(dashboard.host, dashboard.token);
}

/**
 * Starts the dashboard of `supervisor start` on the running control plane, logs its URL and
 * records it in the pid file (so `supervisor status` and tests find it); stops with the daemon.
 */
export async function attachDashboard(
  daemon: Daemon,
  log: Logger,
): Promise<void> {
  const { dashboard } = daemon.ctx.config;
  const source = await daemonSource(daemon);
  let running: RunningDashboard;
  try {
    running = await startDashboard(source, {
      host: dashboard.host,
      port: dashboard.port,
      token: dashboard.token,
      readOnly: dashboard.readOnly,
      log,
    });
  } catch (err) {
    // The CLI exits on this error: hand the agents' jobs back first rather than orphan them.
    await source.close();
    await daemon.stop();
    throw err;
  }
  daemon.once('stopped', () => {
    void running.close().then(() => source.close());
  });
  log(
    `dashboard: ${running.url}${dashboard.token ? ' (token required)' : ''}${dashboard.readOnly ? ' (read-only)' : ''}`,
  );
  daemon.setDashboardUrl(running.url);
}
