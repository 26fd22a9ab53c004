import { join } from 'node:path';
import { RunnerConfigSchema, slotId } from '../../../contract/job.js';
import type { Context } from '../../context.js';
import { runnerSpending } from '../../config.js';
import { SupervisorError } from '../../errors.js';
import { ensureWorktree } from '../../worktrees.js';
import {
  chooseUser,
  ensureMountSources,
  prepareOwnership,
  privateAgentRefs,
  worktreeAdminDir,
} from './mounts.js';
import { runnerBaseOf } from '../../land/base.js';

/**
 * The variables docker/docker-compose.yml reads, for `n` slots: their worktrees are created
 * (and handed to the container user) as the scaler would, and each gets its runner
 * configuration. The supervisor itself still runs on the host (`supervisor start --agents 0`)
 * to feed and record; compose-started runners register in Redis like any other.
 */
export async function composeVariables(
  ctx: Context,
  n: number,
  redisUrl: string,
): Promise<Record<string, string>> {
  const { paths, config } = ctx;
  if (!config.agentCommandResolved) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      'no agent command is configured',
      {
        hint: 'set "agentCommand" (or "agentPreset") in supervisor.config.json, or SUPERVISOR_AGENT_COMMAND',
      },
    );
  }
  const user = chooseUser(paths.gitCommonDir, config.docker.user, {
    uid: process.getuid?.() ?? 1000,
    gid: process.getgid?.() ?? 1000,
  });
  const vars: Record<string, string> = {
    REPO_DIR: paths.root,
    GIT_DIR: paths.gitCommonDir,
    REPO_ID: paths.repoId,
    RUNNER_IMAGE: config.docker.image,
    AGENT_UID: String(user.uid),
    AGENT_GID: String(user.gid),
    AGENT_MEMORY: String(ctx.platform.memoryPerAgentBytes),
    AGENT_CPUS: String(ctx.platform.cpusPerAgent),
  };
  for (let i = 1; i <= n; i++) {
    const agentId = slotId(i);
    const wt = await ensureWorktree(paths, agentId, await runnerBaseOf(ctx));
    ctx.slots.ensure(i, wt.path, wt.branch);
    const cfg = RunnerConfigSchema.parse({
      agentId,
      redisUrl,
      prefix: config.prefix,
      queueName: ctx.queueName,
      repoPath: paths.root,
      worktreePath: wt.path,
      branch: wt.branch,
      baseBranch: await runnerBaseOf(ctx),
      agentCommand: config.agentCommandResolved,
      logDir: join(paths.logDir, agentId),
      runDir: join(paths.runDir, agentId),
      lease: config.leaseResolved,
      heartbeatMs: config.heartbeat,
      ...runnerSpending(config),
      // The runner is root in its container (docker-compose.yml); its agent is not.
      agentUser: { uid: user.uid, gid: user.gid },
    });
    // Without `host`, the runner registers under its container's hostname (agent-00N).
    const { host: _host, ...runner } = cfg;
    const slot = {
      repoRoot: paths.root,
      gitCommonDir: paths.gitCommonDir,
      worktree: wt.path,
      adminDir: worktreeAdminDir(wt.path),
      logDir: runner.logDir,
      logFile: join(paths.logDir, `${agentId}.log`),
      runDir: runner.runDir,
    };
    ensureMountSources(slot);
    prepareOwnership(slot, user);
    const key = `AGENT_${agentId.slice('agent-'.length)}`;
    vars[`${key}_CONFIG`] = JSON.stringify(runner);
    vars[`${key}_WORKTREE`] = wt.path;
    vars[`${key}_ADMIN`] = slot.adminDir;
    const own = privateAgentRefs(slot);
    vars[`${key}_REFS`] = own.refs;
    vars[`${key}_REFLOGS`] = own.logs;
  }
  return vars;
}

/** `export NAME='value'` lines for `eval`. */
export function shellExports(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'`)
    .join('\n');
}
