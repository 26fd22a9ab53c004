import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describeUsage } from '../../contract/usage-text.js';
import { openContext, type Context } from '../context.js';
import { Daemon } from '../daemon.js';
import { useSpawnHelper } from '../../git/runner.js';
import { SupervisorError, redactSecrets } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { validateScale } from '../env/capacity.js';
import { readDesired, requestScale } from '../scaler.js';
import { agentTarget, preflightAgent } from '../preflight.js';
import { readRunningConfig, type RunningConfig } from '../running-config.js';
import { connectEngine } from '../runtimes/docker/create.js';
import { buildStatus, type Status } from '../status.js';
import { waitForAgents } from '../convergence.js';
import { attachExtensions, statusExtras } from '../extensions.js';
import {
  attachDashboard,
  checkDashboardConfig,
} from '../../dashboard/server.js';
import { secondsFlag, wholeNumberFlag } from './args.js';
import { scaleAuto } from './autoscale.js';
import { redisFor } from './connect.js';
import { forTerminal } from './terminal.js';
import {
  ago,
  oneLine,
  outputWidth,
  printJson,
  progress,
  say,
  table,
  wrapWords,
  type GlobalOpts,
} from './output.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function logLine(msg: string, fields?: Record<string, unknown>): void {
  const extra =
    fields && Object.keys(fields).length ? ` ${JSON.stringify(fields)}` : '';
  process.stderr.write(
    forTerminal(redactSecrets(`${new Date().toISOString()} ${msg}${extra}\n`)),
  );
}

interface StartOpts {
  agents?: string;
  runtime?: string;
  agentCommand?: string;
  agent?: string;
  detach?: boolean;
  maxAgents?: string;
  progressTimeout?: string;
  dashboard?: boolean;
  dashboardPort?: string;
  dashboardHost?: string;
  readOnly?: boolean;
  waitRedis?: boolean;
}

function startFlags(o: StartOpts): Record<string, unknown> {
  const flags: Record<string, unknown> = {};
  if (o.runtime) flags.runtime = o.runtime;
  if (o.agentCommand) flags.agentCommand = o.agentCommand;
  if (o.agent) flags.agentPreset = o.agent;
  if (o.maxAgents !== undefined)
    flags.maxAgents = wholeNumberFlag('--max-agents', o.maxAgents);
  if (o.progressTimeout) flags.lease = { progressTimeout: o.progressTimeout };
  const dash: Record<string, unknown> = {};
  if (o.dashboard === false) dash.enabled = false;
  if (o.dashboardPort !== undefined)
    dash.port = wholeNumberFlag('--dashboard-port', o.dashboardPort);
  if (o.dashboardHost !== undefined) dash.host = o.dashboardHost;
  if (o.readOnly) dash.readOnly = true;
  if (Object.keys(dash).length) flags.dashboard = dash;
  return flags;
}

async function startDetached(ctx: Context): Promise<void> {
  const running = runningDaemon(ctx.paths.pidFile);
  if (running) {
    throw new SupervisorError(
      'ERR_SUP_ALREADY_RUNNING',
      `a supervisor is already running for this repository (pid ${running.pid})`,
      { hint: 'use `supervisor status`, or `supervisor stop` first' },
    );
  }
  const args = process.argv
    .slice(2)
    .filter((a) => a !== '--detach' && a !== '-d');
  const fd = openSync(ctx.paths.daemonLog, 'a');
  const child = spawn(
    process.execPath,
    [
      ...process.execArgv.filter((f) => !f.startsWith('--inspect')),
      process.argv[1]!,
      ...args,
    ],
    {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: { ...process.env, SUPERVISOR_DETACHED: '1' },
    },
  );
  closeSync(fd);
  child.unref();
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  progress(
    `starting the supervisor in the background (pid ${child.pid}, log ${ctx.paths.daemonLog})`,
  );
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const info = runningDaemon(ctx.paths.pidFile);
    if (info && info.pid === child.pid && info.ready) {
      say(
        `supervisor running (pid ${child.pid})${info.dashboardUrl ? `; dashboard ${info.dashboardUrl}` : ''}`,
      );
      return;
    }
    if (exited !== undefined) {
      // Lost a race with another start: say who won, not the winner's log.
      const winner = runningDaemon(ctx.paths.pidFile);
      if (winner && winner.pid !== child.pid) {
        throw new SupervisorError(
          'ERR_SUP_ALREADY_RUNNING',
          `a supervisor is already running for this repository (pid ${winner.pid})`,
          { hint: 'use `supervisor status`, or `supervisor stop` first' },
        );
      }
      const tail = readFileSync(ctx.paths.daemonLog, 'utf8')
        .trim()
        .split('\n')
        .slice(-5)
        .join('\n');
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        `the supervisor exited during start (code ${exited}):\n${tail}`,
        { hint: `see ${ctx.paths.daemonLog}` },
      );
    }
    await sleep(100);
  }
  throw new SupervisorError(
    'ERR_SUP_TIMEOUT',
    'the supervisor did not become ready within 60 s',
    { hint: `see ${ctx.paths.daemonLog}` },
  );
}

async function runForeground(
  ctx: Context,
  agents: number | undefined,
  waitRedis: boolean,
): Promise<void> {
  // This process is the supervisor's own (not a library user's): its git calls are started by a
  // small shell instead of forks of this ~130 MB process (git/spawn-helper.ts; the landing's
  // ~9 git processes per issue, merge states, worktrees).
  useSpawnHelper(join(ctx.paths.stateDir, 'git-helper'));
  const daemon = await Daemon.start(ctx, {
    ...(agents !== undefined ? { agents } : {}),
    ...(waitRedis ? { waitRedisMs: Infinity } : {}),
    log: logLine,
    setup: (d) => attachExtensions(d, logLine),
  });
  daemon.scaler.on('progress', (p) => logLine(`${p.agentId}: ${p.message}`));
  daemon.recorder.on('result', ({ issue }) =>
    logLine(
      `issue #${issue.id} ${issue.status}${issue.commit ? ` (${issue.branch} @ ${issue.commit.slice(0, 8)})` : ''}${issue.error ? `: ${issue.error}` : ''}`,
    ),
  );
  if (ctx.config.dashboard.enabled) await attachDashboard(daemon, logLine);
  logLine(
    `supervisor running for ${ctx.paths.root} (pid ${process.pid}, queue ${ctx.queueName}, ${readDesired(ctx.db)} agents)`,
  );
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals += 1;
      if (signals === 1) {
        logLine(`${sig}: stopping runners gracefully (again to force)`);
        daemon.stop().then(resolve, (err: Error) => {
          logLine(`stop failed: ${err.message}`);
          resolve();
        });
      } else {
        logLine(
          `${sig} again: forcing exit; runners left running are adopted by the next start`,
        );
        process.exit(1);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  logLine('supervisor stopped');
  ctx.close();
}

async function preflightForScale(
  ctx: Context,
  rc: RunningConfig,
): Promise<void> {
  const target = {
    agentCommand: rc.agentCommand,
    runtime: rc.runtime,
    image: rc.image,
    root: ctx.paths.root,
  };
  if (rc.runtime === 'docker')
    await preflightAgent(target, { engine: await connectEngine() });
  else await preflightAgent(target);
}

/** "cost: today $0.0421 · 6.0k tok (budget $20.00), this week $0.1203 · 18.2k tok". */
export function costsLine(c: Status['costs']): string {
  const budget =
    c.budget.daily === null
      ? ''
      : ` of $${c.budget.daily.toFixed(2)} daily budget`;
  return `cost: today ${describeUsage(c.today)}${budget}, this week ${describeUsage(c.week)}`;
}

function printStatus(s: Status): void {
  const width = outputWidth();
  // Plain lines wrap between words too; continuation lines are indented.
  const line = (text: string) => say(wrapWords(text, width - 2).join('\n  '));
  const sup = s.supervisor.running
    ? `running (pid ${s.supervisor.pid})`
    : 'not running';
  line(
    `supervisor: ${sup}; agents ${s.agents.length}/${s.desiredAgents} desired${s.supervisor.dashboardUrl ? `; dashboard ${s.supervisor.dashboardUrl}` : ''}`,
  );
  if (s.pause)
    say(
      `${s.pause.text}${s.pause.reason ? ` — ${oneLine(s.pause.reason, 80)}` : ''}`,
    );
  if (s.agents.length) {
    const now = Date.now();
    say(
      table(
        s.agents.map((a) => [
          a.id,
          a.state,
          a.issue
            ? `#${a.issue.id} ${oneLine(a.issue.title ?? '', 120)}`
            : a.state === 'idle'
              ? 'Idle (no issues)'
              : '',
          ago(now - a.since),
          a.containerId
            ? `${a.containerId.slice(0, 12)}${a.health ? ` (${a.health})` : ''}`
            : a.pid
              ? `pid ${a.pid}`
              : '',
          a.resources
            ? `${a.resources.cpuPercent.toFixed(0)}% ${Math.round(a.resources.memoryBytes / 1024 ** 2)}M`
            : '',
          a.lastError &&
          (a.state === 'crashed' ||
            a.state === 'blocked' ||
            a.state === 'quarantined')
            ? oneLine(a.lastError, 200)
            : a.external && a.host
              ? `on ${a.host}`
              : '',
        ]),
        ['AGENT', 'STATE', 'ISSUE', 'FOR', 'RUNNER', 'CPU MEM', 'NOTE'],
        { maxWidth: width, wrap: [2, 6] },
      ),
    );
  }
  for (const a of s.agents) {
    const env = a.env as
      | {
          ports?: Record<string, number>;
          portBlock?: { start: number; end: number } | null;
          redisDb?: number | null;
          postgresDb?: string | null;
        }
      | undefined;
    if (!env) continue;
    const parts = [
      env.portBlock
        ? `ports ${env.portBlock.start}-${env.portBlock.end} (${Object.entries(
            env.ports ?? {},
          )
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`
        : '',
      env.redisDb !== null && env.redisDb !== undefined
        ? `redis db ${env.redisDb}`
        : '',
      env.postgresDb ? `postgres ${env.postgresDb}` : '',
    ].filter(Boolean);
    if (parts.length)
      say(
        wrapWords(`${a.id} env: ${parts.join(' · ')}`, width - 4)
          .map((l, i) => (i === 0 ? `  ${l}` : `      ${l}`))
          .join('\n'),
      );
  }
  const q = s.queue;
  if (q)
    line(
      `queue: ${q.waiting + q.prioritized} waiting, ${q.active} active, ${q.delayed} delayed, ${q.completed} completed, ${q.failed} failed`,
    );
  const i = s.issues;
  line(
    `issues: ${i.open ?? 0} open, ${i.queued ?? 0} queued, ${i.in_progress ?? 0} in progress, ${i.done ?? 0} done, ${i.failed ?? 0} failed`,
  );
  line(costsLine(s.costs));
  const p = s.platform;
  line(
    `platform: ${p.os} ${p.arch}, ${p.cpus} CPUs, ${(p.memoryBytes / 1024 ** 3).toFixed(1)} GiB, max ${p.maxAgents} agents`,
  );
  for (const w of s.warnings) progress(`warning: ${w}`);
}

export function registerLifecycleCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('start')
    .description('run the supervisor (feeder, recorder, agents, dashboard)')
    .option(
      '--agents <n>',
      'number of agents to run (default: the last count set, or 0)',
    )
    .option('--runtime <kind>', 'process | docker | swarm')
    .option(
      '--agent-command <cmd>',
      'agent command, run with /bin/sh -c in the worktree',
    )
    .option('--agent <preset>', 'claude | codex | aider')
    .option(
      '--max-agents <n>',
      'upper bound for scale (default: memory ÷ per-agent budget)',
    )
    .option(
      '--progress-timeout <duration>',
      'kill an agent with no output or file change for this long (default 15m)',
    )
    .option('--no-dashboard', 'do not serve the dashboard')
    .option(
      '--dashboard-port <port>',
      'dashboard port; taken: an error (default 7420, or the next free one with a warning)',
    )
    .option(
      '--dashboard-host <host>',
      'dashboard address (default 127.0.0.1; others need SUPERVISOR_DASHBOARD_TOKEN)',
    )
    .option(
      '--read-only',
      'dashboard without controls (scale, review buttons, POST /api/issues/…)',
    )
    .option('-d, --detach', 'run in the background')
    .option(
      '--wait-redis',
      'wait until Redis answers (default: fail after 15 s with the reason)',
    )
    .action(async (o: StartOpts) => {
      const ctx = await openContext({
        repo: globals().repo,
        init: true,
        check: true,
        flags: startFlags(o),
      });
      const agents =
        o.agents === undefined ? undefined : validateScale(ctx, o.agents);
      if (ctx.config.dashboard.enabled)
        checkDashboardConfig(ctx.config.dashboard);
      // Refused here, before a detached start hides the reason in its log (Docker: at start).
      if (ctx.config.runtime === 'process' && ctx.config.agentCommandResolved)
        await preflightAgent(agentTarget(ctx));
      if (o.detach) {
        try {
          await startDetached(ctx);
        } finally {
          ctx.close();
        }
        return;
      }
      await runForeground(ctx, agents, o.waitRedis === true);
    });

  program
    .command('scale')
    .description(
      'set the number of agents (returns once the supervisor has converged), or a range to autoscale in',
    )
    .argument('[n]', 'agent count (0 stops all agents; turns autoscaling off)')
    .option(
      '--auto <min..max>',
      "autoscale: agents follow the queue's depth between MIN and MAX, idle ones stop after autoscale.idleGrace (2m)",
    )
    .option('--timeout <seconds>', 'give up waiting after this long', '180')
    .option('--no-wait', 'return at once')
    .option('--json', 'print the resulting agents as JSON')
    .action(
      async (
        raw: string | undefined,
        o: { timeout: string; wait: boolean; json?: boolean; auto?: string },
      ) => {
        const timeoutS = secondsFlag('--timeout', o.timeout);
        if ((raw === undefined) === (o.auto === undefined))
          throw new SupervisorError(
            'ERR_SUP_USAGE',
            raw === undefined
              ? 'scale needs an agent count or --auto MIN..MAX'
              : 'give an agent count or --auto MIN..MAX, not both',
            {
              hint: 'e.g. supervisor scale 3, or supervisor scale --auto 0..4',
            },
          );
        const ctx = await openContext({ repo: globals().repo, init: true });
        try {
          if (o.auto !== undefined)
            return scaleAuto(ctx, o.auto, o.json === true);
          const n = validateScale(ctx, raw!);
          const daemon = runningDaemon(ctx.paths.pidFile);
          if (!daemon) {
            throw new SupervisorError(
              'ERR_SUP_NOT_RUNNING',
              'the supervisor is not running for this repository',
              { hint: `start it with \`supervisor start --agents ${n}\`` },
            );
          }
          // The agent the running supervisor runs (its flags), where it runs.
          const rc = readRunningConfig(ctx.db, daemon.pid);
          if (n > 0 && rc) await preflightForScale(ctx, rc);
          const requestedAt = Date.now();
          requestScale(ctx.db, n);
          if (!o.wait) {
            if (o.json) printJson({ desiredAgents: n, converged: false });
            else say(`asked for ${n} agents`);
            return;
          }
          const redis = await redisFor(ctx);
          try {
            const agents = await waitForAgents(ctx, redis, n, {
              timeoutMs: timeoutS * 1000,
              since: requestedAt,
              onChange: (a) => {
                if (!o.json)
                  progress(
                    `  ${a.id}: ${a.state}${(a.state === 'crashed' || a.state === 'quarantined') && a.lastError ? ` (${a.lastError})` : ''}`,
                  );
              },
            });
            if (o.json)
              printJson({ desiredAgents: n, converged: true, agents });
            else say(`${n} agent${n === 1 ? '' : 's'} running`);
          } finally {
            redis?.disconnect();
          }
        } finally {
          ctx.close();
        }
      },
    );

  program
    .command('status')
    .description('show agents, queue and platform')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const ctx = await openContext({ repo: globals().repo });
      const redis = await redisFor(ctx);
      try {
        const { envFor, warnings } = await statusExtras(ctx);
        const s = await buildStatus(ctx, redis, { envFor, resources: true });
        s.warnings.push(...warnings);
        if (o.json) printJson(s);
        else printStatus(s);
      } finally {
        redis?.disconnect();
        ctx.close();
      }
    });

  program
    .command('stop')
    .description(
      'stop the supervisor gracefully (runners hand back or finish their jobs)',
    )
    .option('--timeout <seconds>', 'wait this long before giving up', '120')
    .option('--json', 'print JSON')
    .action(async (o: { timeout: string; json?: boolean }) => {
      const timeoutS = secondsFlag('--timeout', o.timeout);
      const ctx = await openContext({ repo: globals().repo });
      try {
        const info = runningDaemon(ctx.paths.pidFile);
        if (!info) {
          if (o.json) printJson({ stopped: false, running: false });
          else say('the supervisor is not running');
          return;
        }
        process.kill(info.pid, 'SIGTERM');
        if (!o.json) progress(`stopping the supervisor (pid ${info.pid})…`);
        const deadline = Date.now() + timeoutS * 1000;
        while (runningDaemon(ctx.paths.pidFile)?.pid === info.pid) {
          if (Date.now() > deadline) {
            throw new SupervisorError(
              'ERR_SUP_TIMEOUT',
              `the supervisor (pid ${info.pid}) did not stop within ${o.timeout}s`,
              {
                hint: `run \`supervisor stop\` again to force, or kill ${info.pid}`,
              },
            );
          }
          await sleep(100);
        }
        if (o.json) printJson({ stopped: true, pid: info.pid });
        else say('supervisor stopped');
      } finally {
        ctx.close();
      }
    });
}
