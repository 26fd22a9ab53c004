import { agentTarget, preflightAgent } from '../../preflight.js';
import { existsSync } from 'node:fs';
import os from 'node:os';
import type { Context } from '../../context.js';
import { SupervisorError, coerceError } from '../../errors.js';
import { DockerRuntime, refuseImageWithoutAgentUser } from '../docker.js';
import { DockerodeEngine, type DockerEngine } from './engine.js';
import {
  LABELS,
  PROJECT,
  networkLabels,
  repoNetworkName,
  runnerSelector,
} from './labels.js';
import { chooseUser, credentialMounts, parseExtraMount } from './mounts.js';

const GiB = 1024 ** 3;
const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;

/** Where dockerode looks for the engine, for messages. */
function engineAddress(): string {
  return process.env.DOCKER_HOST || 'unix:///var/run/docker.sock';
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} did not answer within ${ms / 1000} s`)),
        ms,
      );
    }),
  ]);
}

/** Connects to the engine, or says clearly why not (not installed, not running, no permission). */
export async function connectEngine(
  engine: DockerEngine = new DockerodeEngine(),
): Promise<DockerEngine> {
  try {
    await withTimeout(engine.ping(), 5000, 'the Docker engine');
    return engine;
  } catch (err) {
    const e = coerceError(err) as NodeJS.ErrnoException;
    const installed = [
      '/usr/bin/docker',
      '/usr/local/bin/docker',
      '/usr/bin/dockerd',
      '/Applications/Docker.app',
    ].some((p) => existsSync(p));
    let what: string;
    if (e.code === 'EACCES') what = `permission denied on ${engineAddress()}`;
    else if (e.code === 'ENOENT' && !installed && !process.env.DOCKER_HOST)
      what = 'Docker is not installed (no engine socket, no docker binary)';
    else
      what = `the Docker engine at ${engineAddress()} is not running or not reachable (${e.code ?? e.message})`;
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `cannot use the Docker runtime: ${what}`,
      {
        hint:
          e.code === 'EACCES'
            ? 'add yourself to the docker group (then log in again), or run without containers: --runtime process'
            : 'start Docker (Linux: `sudo systemctl start docker`; macOS: open Docker Desktop), set DOCKER_HOST if it listens elsewhere, or run without containers: --runtime process',
        cause: err,
      },
    );
  }
}

export interface DockerRuntimeHooks {
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  onHealth?: (agentId: string, health: string | null) => void;
  engine?: DockerEngine;
}

/** The shared infrastructure's queue Redis (`supervisor infra up`), when it runs. */
async function infraRedis(engine: DockerEngine) {
  return (
    await engine.list({
      [LABELS.project]: PROJECT,
      'dev.agent-supervisor.service': 'queue-redis',
    })
  ).find((c) => c.state === 'running');
}

/**
 * Removes the repository's own network once none of its runner containers is left (the infra
 * Redis connected to it is let go first). False when it is still in use or was never made.
 */
export async function removeRepoNetwork(
  engine: DockerEngine,
  repoId: string,
): Promise<boolean> {
  if ((await engine.list(runnerSelector(repoId))).length) return false;
  const infra = await infraRedis(engine);
  return engine.removeNetwork(repoNetworkName(repoId), infra ? [infra.id] : []);
}

/** The alias the shared infrastructure's queue Redis has on a repository's network. */
export const INFRA_REDIS_ALIAS = 'supervisor-redis';

/**
 * When the queue's Redis is `supervisor infra up`'s (its port on the host's loopback), connects
 * that container to the repository's network and returns the URL the runners reach it at: the
 * port is published on 127.0.0.1 only, which containers on a network of their own cannot reach.
 */
async function joinInfraRedis(
  engine: DockerEngine,
  network: string,
  redisUrl: string,
): Promise<string | undefined> {
  const u = new URL(redisUrl);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname))
    return undefined;
  const infra = await infraRedis(engine);
  if (!infra) return undefined;
  if ((await engine.publishedPort(infra.id, 6379)) !== Number(u.port || 6379))
    return undefined;
  await engine.connectNetwork(network, infra.id, INFRA_REDIS_ALIAS);
  u.hostname = INFRA_REDIS_ALIAS;
  u.port = '6379';
  return u.toString();
}

/**
 * The Docker runtime for a repository, after checking what can be checked before any
 * container starts: the engine answers, the image exists, the network exists, the memory
 * asked for fits the engine's machine.
 */
export async function createDockerRuntime(
  ctx: Context,
  redisUrl: string,
  hooks: DockerRuntimeHooks = {},
): Promise<DockerRuntime> {
  const { config, platform, paths } = ctx;
  const d = config.docker;
  if (config.git.runners === 'remote') {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      'the Docker runtime runs runners on worktrees of this repository; git.runners "remote" is not supported with it yet',
      {
        hint: 'use git.runners "shared" (the default) with --runtime docker, or --runtime process for remote runners',
      },
    );
  }
  const engine = await connectEngine(hooks.engine);
  const info = await engine.info();
  if (
    config.memoryPerAgent !== undefined &&
    config.memoryPerAgent > Math.min(info.memoryBytes, platform.memoryBytes)
  ) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `memoryPerAgent is ${gib(config.memoryPerAgent)}, above the ${gib(Math.min(info.memoryBytes, platform.memoryBytes))} the Docker engine's machine has`,
      {
        hint: 'lower memoryPerAgent in supervisor.config.json or SUPERVISOR_MEMORY_PER_AGENT (e.g. 4g); on macOS, Docker Desktop → Settings → Resources sets the VM memory',
      },
    );
  }
  if (
    d.network &&
    !['host', 'bridge'].includes(d.network) &&
    !(await engine.networkExists(d.network))
  ) {
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `the Docker network "${d.network}" does not exist`,
      {
        hint:
          d.network === 'app_local'
            ? 'start the shared infrastructure first: `supervisor infra up`'
            : `create it (docker network create ${d.network}) or change docker.network`,
      },
    );
  }
  // The default budget (12g / 4 CPUs on Linux) is clamped to what the engine has: Docker
  // refuses --cpus above its CPU count, and macOS's VM is smaller than the Mac.
  const memoryBytes = Math.min(platform.memoryPerAgentBytes, info.memoryBytes);
  const cpus = Math.max(0.01, Math.min(platform.cpusPerAgent, info.cpus));
  const labels = await engine.imageLabels(d.image);
  if (!labels) {
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `the runner image ${d.image} does not exist in the Docker engine`,
      {
        hint: 'build it with `supervisor image build` (or `npm run image` in a checkout of agent-supervisor); see docs/docker.md',
      },
    );
  }
  refuseImageWithoutAgentUser(d.image, labels);
  await preflightAgent(agentTarget(ctx), { engine });
  const network = d.network ?? repoNetworkName(paths.repoId);
  let containerRedisUrl = d.redisUrl;
  if (!d.network) {
    await engine.ensureNetwork(network, networkLabels(paths.repoId));
    containerRedisUrl ??= await joinInfraRedis(engine, network, redisUrl);
  }
  const extra = d.mounts.map((m) => {
    try {
      return parseExtraMount(m);
    } catch (err) {
      throw new SupervisorError(
        'ERR_SUP_CONFIG',
        `docker.mounts: ${coerceError(err).message}`,
      );
    }
  });
  const creds = d.credentials
    ? credentialMounts(os.homedir(), '/home/agent', process.env)
    : { mounts: [], env: [] };
  const passed = d.passEnv.flatMap((name) =>
    process.env[name] !== undefined ? [`${name}=${process.env[name]}`] : [],
  );
  const user = chooseUser(paths.gitCommonDir, d.user, {
    uid: process.getuid?.() ?? 1000,
    gid: process.getgid?.() ?? 1000,
  });
  hooks.log?.(
    `docker: engine ${info.serverVersion} (API ${info.apiVersion}), image ${d.image}, network ${network}, ` +
      `${gib(memoryBytes)} / ${cpus} CPUs per agent, agents run as ${user.uid}:${user.gid}${user.dedicated ? ' (dedicated uid: the repository belongs to root)' : ''}`,
  );
  return new DockerRuntime({
    engine,
    repoId: paths.repoId,
    repoRoot: paths.root,
    gitCommonDir: paths.gitCommonDir,
    logDir: paths.logDir,
    runDir: paths.runDir,
    image: d.image,
    network,
    containerRedisUrl,
    user,
    memoryBytes,
    cpus,
    pidsLimit: d.pidsLimit,
    tmpSizeBytes: d.tmpSizeMiB * 1024 * 1024,
    healthIntervalMs: d.healthInterval,
    env: [...passed, ...creds.env],
    mounts: [...creds.mounts, ...extra],
    queue: { redisUrl, prefix: config.prefix, queueName: ctx.queueName },
    ...(hooks.log ? { log: hooks.log } : {}),
    ...(hooks.onHealth ? { onHealth: hooks.onHealth } : {}),
  });
}

/**
 * `supervisor cleanup`: removes the repository's stopped runner containers (by label) and
 * says which slots still have a running one. Undefined when no engine answers.
 */
export async function removeStoppedContainers(
  repoId: string,
  engine?: DockerEngine,
  /** Also the repository's network when nothing is left on it (no supervisor runs). */
  network = false,
): Promise<{ removed: string[]; running: Set<string> } | undefined> {
  let e: DockerEngine;
  try {
    e = await connectEngine(engine);
  } catch {
    return undefined;
  }
  const removed: string[] = [];
  const running = new Set<string>();
  for (const c of await e.list(runnerSelector(repoId))) {
    const slot = c.labels['dev.agent-supervisor.slot'] ?? '';
    if (
      c.state === 'running' ||
      c.state === 'paused' ||
      c.state === 'restarting'
    ) {
      running.add(slot);
      continue;
    }
    await e.remove(c.id);
    removed.push(c.name || c.id.slice(0, 12));
  }
  if (network && !running.size && (await removeRepoNetwork(e, repoId)))
    removed.push(repoNetworkName(repoId));
  return { removed, running };
}
