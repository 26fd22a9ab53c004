import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { RunnerConfigSchema } from '../../contract/job.js';
import { openContext } from '../context.js';
import { runnerSpending } from '../config.js';
import { SupervisorError, redactSecrets } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { servedGitUrl } from '../remote.js';
import { getSetting } from '../store/db.js';
import { agentUserFlag } from './args.js';
import { printJson, type GlobalOpts } from './output.js';
import { runnerBaseOf } from '../land/base.js';

const RUNNER_MAIN = fileURLToPath(
  new URL('../../agent-runner/main.js', import.meta.url),
);
const isLoopback = (url: string) =>
  /^[a-z+]+:\/\/([^@/]*@)?(127\.|localhost|\[::1\])/i.test(url);

/** `runner-config` (on the supervisor's host) and `runner` (on any host): plain runners elsewhere. */
export function registerRemoteCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('runner-config')
    .description(
      "print the JSON configuration of a runner on another host (remote git mode, this repository's queue)",
    )
    .option(
      '--git-url <url>',
      "git remote the runner reaches (default: git.remoteUrl, else this supervisor's dashboard /git/repo.git)",
    )
    .option(
      '--push-url <url>',
      'where result refs go, when not to the git remote (a path remote: <repo>/.supervisor/results.git)',
    )
    .option(
      '--redis-url <url>',
      "Redis as the runner reaches it (default: the supervisor's)",
    )
    .option(
      '--cache-dir <dir>',
      "the runner's clone cache on its host",
      '/var/lib/agent-supervisor',
    )
    .option(
      '--credentials-file <file>',
      'file with the git token on the runner host (default: SUPERVISOR_GIT_TOKEN in its environment)',
    )
    .option(
      '--agent-user <uid:gid>',
      'run the agent under this uid (never 0); the runner must then be root with CAP_SETUID and CAP_SETGID, as in deploy/kubernetes',
    )
    .action(
      (o: {
        gitUrl?: string;
        pushUrl?: string;
        redisUrl?: string;
        cacheDir: string;
        credentialsFile?: string;
        agentUser?: string;
      }) => {
        return openContext({ repo: globals().repo }).then(async (ctx) => {
          try {
            const c = ctx.config;
            if (!c.agentCommandResolved) {
              throw new SupervisorError(
                'ERR_SUP_CONFIG',
                'no agent command is configured',
                {
                  hint: 'set "agentCommand" or "agentPreset" in supervisor.config.json (or SUPERVISOR_AGENT_COMMAND)',
                },
              );
            }
            const redisUrl =
              o.redisUrl ?? c.redisUrl ?? getSetting(ctx.db, 'redis_url');
            const dashboardUrl = runningDaemon(ctx.paths.pidFile)?.dashboardUrl;
            const gitUrl =
              o.gitUrl ??
              c.git.remoteUrl ??
              (dashboardUrl ? servedGitUrl(dashboardUrl) : undefined);
            if (!redisUrl)
              throw new SupervisorError(
                'ERR_SUP_USAGE',
                'no Redis URL known yet',
                {
                  hint: 'pass --redis-url (as the other host reaches it), or start the supervisor once',
                },
              );
            if (!gitUrl)
              throw new SupervisorError(
                'ERR_SUP_USAGE',
                'no git remote known',
                {
                  hint: 'pass --git-url, set git.remoteUrl, or start the supervisor with a dashboard the other host reaches',
                },
              );
            for (const [what, url] of [
              ['Redis', redisUrl],
              ['git', gitUrl],
            ] as const) {
              if (isLoopback(url))
                process.stderr.write(
                  `warning: the ${what} URL ${redactSecrets(url)} is a loopback address; another host cannot reach it (pass --${what === 'git' ? 'git' : 'redis'}-url)\n`,
                );
            }
            const agentUser = o.agentUser && agentUserFlag(o.agentUser);
            const cfg = RunnerConfigSchema.parse({
              agentId: 'agent-101',
              host: 'remote',
              redisUrl,
              prefix: c.prefix,
              queueName: ctx.queueName,
              repoPath: `${o.cacheDir}/repo.git`,
              worktreePath: `${o.cacheDir}/agent-101/worktree`,
              branch: 'agent/101',
              baseBranch: await runnerBaseOf(ctx),
              agentCommand: c.agentCommandResolved,
              logDir: `${o.cacheDir}/agent-101/logs`,
              runDir: `${o.cacheDir}/agent-101/run`,
              lease: c.leaseResolved,
              heartbeatMs: c.heartbeat,
              ...runnerSpending(c),
              ...(agentUser ? { agentUser } : {}),
              git: {
                mode: 'remote',
                url: gitUrl,
                ...(o.pushUrl ? { pushUrl: o.pushUrl } : {}),
                cacheDir: o.cacheDir,
                timeoutMs: c.git.timeout,
                ...(o.credentialsFile
                  ? { credentialsFile: o.credentialsFile }
                  : {}),
              },
            });
            // Derived on the runner's host from its slot id (SUPERVISOR_AGENT_ID / --agent-id).
            const {
              repoPath: _r,
              worktreePath: _w,
              branch: _b,
              logDir: _l,
              runDir: _d,
              agentEnv: _e,
              beforeJob: _j,
              includeRoot: _i,
              ...portable
            } = cfg;
            // Printed output never carries a password: the runner gets the real URL from its
            // environment instead (SUPERVISOR_REDIS_URL replaces redisUrl).
            if (redactSecrets(redisUrl) !== redisUrl)
              process.stderr.write(
                `warning: the Redis password is not printed (redisUrl shows ***): give the runner the whole URL as SUPERVISOR_REDIS_URL in its environment (a Kubernetes Secret, a root-only file) — the runner prefers it to redisUrl\n`,
              );
            printJson(portable);
          } finally {
            ctx.close();
          }
        });
      },
    );

  program
    .command('runner')
    .description(
      'run one agent-runner here, e.g. on another host (its configuration from `supervisor runner-config`)',
    )
    .requiredOption('--config <file>', 'the runner configuration (JSON)')
    .option(
      '--agent-id <id>',
      "its slot id, agent-N or N (default: the agentId in the file); keep it clear of the supervisor's own slots, e.g. 101",
    )
    .action(async (o: { config: string; agentId?: string }) => {
      const file = resolve(o.config);
      if (!existsSync(file))
        throw new SupervisorError('ERR_SUP_USAGE', `no such file: ${file}`, {
          hint: "write it with `supervisor runner-config … > runner.json` on the supervisor's host",
        });
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        SUPERVISOR_RUNNER_CONFIG_FILE: file,
      };
      delete env.SUPERVISOR_RUNNER_CONFIG;
      if (o.agentId) env.SUPERVISOR_AGENT_ID = o.agentId;
      // The runner stops when this command is gone (even killed with SIGKILL): no orphan.
      env.SUPERVISOR_RUNNER_PARENT = String(process.pid);
      const child = spawn(process.execPath, [RUNNER_MAIN], {
        env,
        stdio: 'inherit',
      });
      const forward = (sig: NodeJS.Signals) => child.kill(sig);
      process.on('SIGTERM', forward);
      process.on('SIGINT', forward);
      const code = await new Promise<number | null>((r) =>
        child.once('exit', (c) => r(c)),
      );
      process.off('SIGTERM', forward);
      process.off('SIGINT', forward);
      if (code !== 0)
        throw new SupervisorError(
          'ERR_SUP_NOT_RUNNING',
          `the runner exited with code ${code ?? 'signal'}`,
          { hint: 'its messages are above' },
        );
    });
}
