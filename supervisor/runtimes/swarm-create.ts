import { join } from 'node:path';
import type Docker from 'dockerode';
import { dockerClient } from './docker/client.js';
import { RunnerConfigSchema } from '../../contract/job.js';
import type { Context } from '../context.js';
import { runnerSpending } from '../config.js';
import { SupervisorError } from '../errors.js';
import { runningDaemon } from '../pidfile.js';
import { servedGitUrl } from '../remote.js';
import {
  SWARM_CACHE_DIR,
  SwarmRuntime,
  checkSwarm,
  type SwarmTemplate,
} from './swarm.js';
import { runnerBaseOf } from '../land/base.js';
import { refuseImageWithoutAgentUser } from './docker.js';
import { DEFAULT_AGENT_UID } from './docker/mounts.js';

/**
 * The swarm runtime of a repository, after checking that this engine is a swarm manager. The
 * tasks' git remote is `swarm.gitUrl`, else `git.remoteUrl`, else this supervisor's dashboard
 * (`/git/repo.git`), known once the dashboard listens: until then the scaler waits.
 */
export async function createSwarmRuntime(
  ctx: Context,
  redisUrl: string,
  o: {
    log: (msg: string, fields?: Record<string, unknown>) => void;
    docker?: Docker;
  },
): Promise<SwarmRuntime> {
  const docker = o.docker ?? dockerClient();
  await checkSwarm(docker);
  const c = ctx.config;
  const labels = await docker
    .getImage(c.docker.image)
    .inspect()
    .then(
      (i) => i.Config.Labels ?? {},
      () => undefined,
    );
  if (!labels) {
    o.log(
      `warning: the image ${c.docker.image} is not on this node; every node of the swarm must have it or pull it from a registry (supervisor image build / docker push)`,
    );
  } else refuseImageWithoutAgentUser(c.docker.image, labels);
  const template = async (): Promise<SwarmTemplate> => {
    const dashboardUrl = runningDaemon(ctx.paths.pidFile)?.dashboardUrl;
    const gitUrl =
      c.swarm.gitUrl ??
      c.git.remoteUrl ??
      (dashboardUrl ? servedGitUrl(dashboardUrl) : undefined);
    if (!gitUrl) {
      throw new SupervisorError(
        'ERR_SUP_CONFIG',
        'swarm runners need a git remote they can reach, and there is none yet (no dashboard, no git.remoteUrl)',
        {
          hint: 'run the dashboard where the nodes reach it (--dashboard-host <address> with SUPERVISOR_DASHBOARD_TOKEN), or set git.remoteUrl / swarm.gitUrl in supervisor.config.json',
        },
      );
    }
    const gitToken = c.git.token ?? c.dashboard.token;
    const agentId = 'agent-001';
    const slotDir = join(SWARM_CACHE_DIR, agentId);
    const [uid, gid] = (
      c.docker.user ?? `${DEFAULT_AGENT_UID}:${DEFAULT_AGENT_UID}`
    )
      .split(':')
      .map(Number) as [number, number];
    const runner = RunnerConfigSchema.parse({
      agentId,
      host: 'swarm',
      redisUrl: c.swarm.redisUrl ?? redisUrl,
      prefix: c.prefix,
      queueName: ctx.queueName,
      repoPath: join(SWARM_CACHE_DIR, 'repo.git'),
      worktreePath: join(slotDir, 'worktree'),
      branch: 'agent/001',
      baseBranch: await runnerBaseOf(ctx),
      agentCommand: c.agentCommandResolved,
      logDir: join(slotDir, 'logs'),
      runDir: join(slotDir, 'run'),
      lease: c.leaseResolved,
      heartbeatMs: c.heartbeat,
      ...runnerSpending(c),
      // The image's `agent` user (or docker.user): never the runner's root.
      agentUser: { uid, gid },
      git: {
        mode: 'remote',
        url: gitUrl,
        cacheDir: SWARM_CACHE_DIR,
        timeoutMs: c.git.timeout,
        ...(gitToken ? { credentialsFile: '/run/secrets/git-token' } : {}),
      },
    });
    const env = c.docker.passEnv
      .filter((k) => process.env[k])
      .map((k) => `${k}=${process.env[k]}`);
    const imageId = await docker
      .getImage(c.docker.image)
      .inspect()
      .then(
        (i) => i.Id,
        () => undefined,
      );
    return {
      image: c.docker.image,
      imageId,
      runner,
      gitToken,
      env,
      memoryBytes: ctx.platform.memoryPerAgentBytes,
      nanoCpus: Math.round(ctx.platform.cpusPerAgent * 1e9),
      network: c.swarm.network,
      constraints: c.swarm.constraints,
      stopGraceMs: c.stopGrace,
      healthIntervalMs: c.docker.healthInterval,
      pidsLimit: c.docker.pidsLimit,
      tmpSizeBytes: c.docker.tmpSizeMiB * 1024 * 1024,
    };
  };
  return new SwarmRuntime(docker, {
    repoId: ctx.paths.repoId,
    repoPath: ctx.paths.root,
    template,
    log: o.log,
  });
}
