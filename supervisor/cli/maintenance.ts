import {
  existsSync,
  readFileSync,
  readdirSync,
  rmSync,
  rmdirSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { initRepo, openContext } from '../context.js';
import { dropReleasedSlotDatabases, releaseSlotEnv } from '../extensions.js';
import { removeSwarmService } from '../runtimes/swarm.js';
import { SupervisorError } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { resolveRepo } from '../repo.js';
import { removeStoppedContainers } from '../runtimes/docker/create.js';
import { removeWorktree } from '../worktrees.js';
import { removeMergedBranches } from '../land/cleanup-merged.js';
import { pruneLogs, rotateRunnerLogs } from '../logs/retention.js';
import { printJson, progress, say, type GlobalOpts } from './output.js';

function runnerAlive(runDir: string, agentId: string): boolean {
  try {
    const rec = JSON.parse(
      readFileSync(join(runDir, agentId, 'runner.json'), 'utf8'),
    ) as { pid: number };
    process.kill(rec.pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function registerMaintenanceCommands(
  program: Command,
  globals: () => GlobalOpts,
): void {
  program
    .command('init')
    .description(
      'prepare a repository: .supervisor/ state, and git excludes for .supervisor/ and .worktrees/',
    )
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const paths = await resolveRepo(globals().repo ?? process.cwd());
      const { created, baseBranch } = await initRepo(paths);
      if (o.json)
        printJson({
          repo: paths.root,
          stateDir: paths.stateDir,
          created,
          baseBranch,
        });
      else
        say(
          `${created ? 'initialised' : 'already initialised'}: ${paths.stateDir} (agents branch off ${baseBranch})`,
        );
    });

  program
    .command('cleanup')
    .description(
      'remove worktrees and agent/* branches of stopped slots (issue/* branches are kept)',
    )
    .option(
      '--force',
      'run even while the supervisor runs (stopped slots only)',
    )
    .option('--drop-databases', "also drop the slots' Postgres databases")
    .option(
      '--merged',
      'only remove the issue/* branches of merged issues (safe while the supervisor runs)',
    )
    .option('--json', 'print JSON')
    .action(
      async (o: {
        force?: boolean;
        dropDatabases?: boolean;
        merged?: boolean;
        json?: boolean;
      }) => {
        const ctx = await openContext({ repo: globals().repo });
        try {
          if (o.merged) {
            const r = await removeMergedBranches(ctx);
            if (o.json) return printJson(r);
            if (r.kept.length)
              progress(
                `kept ${r.kept.join(', ')}: moved since the issue's result (delete by hand if you mean it)`,
              );
            return say(
              r.removed.length
                ? `removed ${r.removed.length} branch${r.removed.length === 1 ? '' : 'es'} of merged issues: ${r.removed.join(', ')}`
                : 'no branches of merged issues to remove',
            );
          }
          const daemon = runningDaemon(ctx.paths.pidFile);
          if (daemon && !o.force) {
            throw new SupervisorError(
              'ERR_SUP_ALREADY_RUNNING',
              `the supervisor is running (pid ${daemon.pid}); cleanup would pull worktrees from under its agents`,
              {
                hint: 'stop it first (`supervisor stop`), or pass --force to clean only stopped slots',
              },
            );
          }
          const removed: string[] = [];
          const skipped: string[] = [];
          // Stopped runner containers go (found by label); a slot whose container runs is kept.
          // (And the repository's network, unless a supervisor runs: it would start containers on it.)
          const containers = await removeStoppedContainers(
            ctx.paths.repoId,
            undefined,
            !daemon,
          );
          // The swarm service goes too, unless a supervisor runs (it would create it again).
          const swarmServiceRemoved = daemon
            ? false
            : await removeSwarmService(ctx.paths.repoId, ctx.paths.root);
          for (const slot of ctx.slots.list()) {
            const stopped = daemon ? slot.state === 'stopped' : true;
            if (
              !stopped ||
              runnerAlive(ctx.paths.runDir, slot.id) ||
              containers?.running.has(slot.id)
            ) {
              skipped.push(slot.id);
              continue;
            }
            if (!o.json)
              progress(
                `removing ${slot.id}: worktree ${slot.worktree}, branch ${slot.branch}`,
              );
            await removeWorktree(ctx.paths, slot.id);
            rmSync(join(ctx.paths.runDir, slot.id), {
              recursive: true,
              force: true,
            });
            await releaseSlotEnv(ctx, slot.id, {
              dropDatabases: o.dropDatabases === true,
            });
            ctx.slots.remove(slot.id);
            removed.push(slot.id);
          }
          // Logs: rotated past logs.runnerMaxBytes, deleted past logs.keep.
          const logCfg = ctx.config.logs;
          rotateRunnerLogs(
            ctx.paths.logDir,
            logCfg.runnerMaxBytes,
            logCfg.runnerFiles,
          );
          const logsPruned = pruneLogs(ctx.paths.logDir, logCfg.keep);
          // Databases of slots released by an earlier cleanup are remembered until dropped.
          const databases = o.dropDatabases
            ? await dropReleasedSlotDatabases(ctx)
            : { dropped: [], otherServer: [] };
          if (
            existsSync(ctx.paths.worktreesDir) &&
            readdirSync(ctx.paths.worktreesDir).length === 0
          )
            rmdirSync(ctx.paths.worktreesDir);
          const containersRemoved = containers?.removed ?? [];
          if (o.json)
            printJson({
              removed,
              skipped,
              containersRemoved,
              swarmServiceRemoved,
              databasesDropped: databases.dropped,
              logsDeleted: logsPruned,
              databasesOnOtherServers: databases.otherServer,
            });
          else {
            if (swarmServiceRemoved)
              say(
                'removed the swarm service of this repository and its secrets',
              );
            if (containersRemoved.length)
              say(
                `removed ${containersRemoved.length} stopped container${containersRemoved.length === 1 ? '' : 's'}: ${containersRemoved.join(', ')}`,
              );
            if (logsPruned.files)
              say(
                `deleted ${logsPruned.files} log file${logsPruned.files === 1 ? '' : 's'} older than logs.keep (${(logsPruned.bytes / 1024 / 1024).toFixed(1)} MiB)`,
              );
            if (databases.dropped.length)
              say(
                `dropped ${databases.dropped.length} database${databases.dropped.length === 1 ? '' : 's'} of slots released earlier: ${databases.dropped.join(', ')}`,
              );
            if (databases.otherServer.length)
              progress(
                `kept databases recorded on another server than POSTGRES_URL: ${databases.otherServer.join(', ')}`,
              );
            say(
              removed.length
                ? `removed ${removed.length} slot${removed.length === 1 ? '' : 's'}: ${removed.join(', ')}`
                : 'nothing to clean up',
            );
          }
        } finally {
          ctx.close();
        }
      },
    );
}
