import type { Command } from 'commander';
import { startDashboard } from '../../dashboard/server.js';
import { stateSource } from '../../dashboard/source.js';
import { openContext } from '../context.js';
import { redactSecrets } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { wholeNumberFlag } from './args.js';
import { progress, say, type GlobalOpts } from './output.js';

interface DashboardOpts {
  port?: string;
  host?: string;
  readOnly?: boolean;
}

function logLine(msg: string, fields?: Record<string, unknown>): void {
  const extra =
    fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
  process.stderr.write(
    redactSecrets(`${new Date().toISOString()} ${msg}${extra}\n`),
  );
}

/**
 * `supervisor dashboard`: the dashboard alone, on a repository's state (SQLite and Redis). It
 * scales like `supervisor scale`, by writing the desired count the running supervisor converges to.
 */
export function registerDashboardCommand(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('dashboard')
    .description(
      'serve the dashboard for this repository without running the supervisor in this process',
    )
    .option(
      '--port <port>',
      'port (default 7420; the next free one if taken; 0 for any)',
    )
    .option(
      '--host <host>',
      'address (default 127.0.0.1; others need SUPERVISOR_DASHBOARD_TOKEN)',
    )
    .option(
      '--read-only',
      'no controls (scale, review buttons, POST /api/issues/…); Bull Board read-only',
    )
    .addHelpText(
      'after',
      `
The page: agents with Start/Stop, the queue, recent results, and Review & Land (done issues with
diffstat, behind, mergeable and conflicts between them; Land, Retry, Cancel buttons).
JSON API: GET /api/status, /api/issues; POST /api/scale, /api/issues/:id/{retry,cancel,edit,reopen,land}
(with the X-Supervisor-CSRF token from GET /api/session, or a bearer token). See docs/dashboard.md.`,
    )
    .action(async (o: DashboardOpts) => {
      const dash: Record<string, unknown> = {};
      if (o.port !== undefined) dash.port = wholeNumberFlag('--port', o.port);
      if (o.host !== undefined) dash.host = o.host;
      if (o.readOnly) dash.readOnly = true;
      const ctx = await openContext({
        repo: globals().repo,
        flags: Object.keys(dash).length ? { dashboard: dash } : {},
      });
      const { dashboard } = ctx.config;
      const source = await stateSource(ctx);
      let running;
      try {
        running = await startDashboard(source, {
          host: dashboard.host,
          port: dashboard.port,
          token: dashboard.token,
          readOnly: dashboard.readOnly,
          log: logLine,
        });
      } catch (err) {
        await source.close();
        ctx.close();
        throw err;
      }
      say(
        `dashboard: ${running.url}${dashboard.token ? ' (token required)' : ''}${dashboard.readOnly ? ' (read-only)' : ''}`,
      );
      if (!runningDaemon(ctx.paths.pidFile))
        progress(
          'note: the supervisor is not running for this repository; start it with `supervisor start` to run agents',
        );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await running.close();
      await source.close();
      ctx.close();
    });
}
