import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { readAgentRecord } from '../../contract/agent-record.js';
import type { RunnerConfig } from '../../contract/job.js';
import { SupervisorError, coerceError } from '../errors.js';
import type { DockerEngine } from './docker/engine.js';
import { failHeldJob, type QueueAddress } from '../held-job.js';
import { LABELS, containerName, runnerSelector } from './docker/labels.js';
import {
  RUNNER_DIR,
  RUNNER_LOG_TARGET,
  ensureMountSources,
  prepareOwnership,
  slotMounts,
  worktreeAdminDir,
  type ContainerUser,
  type SlotPaths,
} from './docker/mounts.js';
import type { BindMount, ContainerEnd } from './docker/engine.js';
import type {
  AgentRuntime,
  RunnerExit,
  RunnerSpec,
  RuntimeAgent,
} from './runtime.js';

export interface DockerRuntimeOptions {
  engine: DockerEngine;
  repoId: string;
  repoRoot: string;
  gitCommonDir: string;
  /** `.supervisor/logs` and `.supervisor/run` of the repository. */
  logDir: string;
  runDir: string;
  image: string;
  /** `host` (Linux default: the runners reach 127.0.0.1 services as on the host), `bridge` or a network name. */
  network: string;
  /** Redis as the containers reach it; default the supervisor's, loopback rewritten off the host network. */
  containerRedisUrl: string | undefined;
  user: ContainerUser;
  memoryBytes: number;
  cpus: number;
  pidsLimit: number;
  tmpSizeBytes?: number;
  healthIntervalMs: number;
  /** Extra environment (`NAME=value`) and mounts: passed-through API keys, credentials, `docker.mounts`. */
  env: string[];
  mounts: BindMount[];
  /** The supervisor's view of the queue, to fail the attempt of a runner killed for memory. */
  queue: QueueAddress;
  pollMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Health of a slot's container changed (`healthy`, `unhealthy`, `starting`; null when gone). */
  onHealth?: (agentId: string, health: string | null) => void;
}

interface Tracked {
  agentId: string;
  containerId: string;
  /** The `host` its runner registers with: tells this container's runner from any other. */
  instance: string;
  startedAt: number;
  stopping: boolean;
  health: string | undefined;
}

const HEALTHCHECK = ['node', '/app/dist/agent-runner/healthcheck.js'];

/**
 * The runner is root in its container with only these capabilities, so that its agent runs
 * under a uid of its own (the slot's user, `user`) and cannot read the runner's configuration
 * and credentials (`/proc/<runner>/environ`, `/proc/1/environ`) nor signal it: SETUID/SETGID to
 * start the agent and the runner's git as that user (every capability goes with the switch),
 * KILL to signal them, DAC_OVERRIDE to write the slot's files in directories that user owns, and
 * CHOWN to give those files to it.
 */
export const RUNNER_CAPABILITIES = [
  'SETUID',
  'SETGID',
  'KILL',
  'DAC_OVERRIDE',
  'CHOWN',
];

/** The label of runner images whose runner starts its agent under a uid of its own. */
export const AGENT_USER_LABEL = 'dev.agent-supervisor.agent-user';

/**
 * An older runner would ignore agentUser and run its agent as root, with the runner's
 * capabilities and configuration: refuse its image rather than weaken the container.
 */
export function refuseImageWithoutAgentUser(
  image: string,
  labels: Record<string, string>,
): void {
  if (labels[AGENT_USER_LABEL] === 'separate') return;
  throw new SupervisorError(
    'ERR_SUP_DOCKER',
    `the runner image ${image} was built by an older agent-supervisor: its runner cannot start the agent under a uid of its own`,
    {
      hint: 'rebuild it with `supervisor image build` (or `npm run image`); see docs/docker.md',
    },
  );
}
const LOOPBACK_RE =
  /(\/\/(?:[^@/\s]*@)?)(127\.0\.0\.1|localhost|\[::1\])(?=[:/]|$)/g;

/** Loopback URLs as a container off the host network reaches them (Docker Desktop, host-gateway). */
export function rewriteLoopback(value: string): string {
  return value.replace(LOOPBACK_RE, '$1host.docker.internal');
}

const MiB = 1024 * 1024;

/** Why a container ended, for `supervisor status` and the scaler's crash-loop accounting. */
export function exitReason(
  end: ContainerEnd | undefined,
  lastLine: string,
  memoryBytes: number,
): string {
  if (!end) return 'container removed';
  // Docker sets OOMKilled when any process in the container was killed for memory; exit 137
  // means that process was the runner itself (the container's main process).
  if (end.oomKilled && end.exitCode === 137)
    return `out of memory: the container was killed at its ${Math.round(memoryBytes / MiB)} MiB memory limit`;
  if (end.error) return `container failed: ${end.error}`;
  if (end.exitCode === 137) return 'container killed (SIGKILL, exit code 137)';
  if (end.exitCode === 143) return 'container stopped (SIGTERM, exit code 143)';
  return `container exited with code ${end.exitCode}${lastLine ? `: ${lastLine}` : ''}`;
}

/** The instance name an adopted container's runner registers with (from its configuration). */
function instanceOf(env: string[]): string {
  const raw = env
    .find((e) => e.startsWith('SUPERVISOR_RUNNER_CONFIG='))
    ?.slice('SUPERVISOR_RUNNER_CONFIG='.length);
  try {
    return String((JSON.parse(raw ?? '{}') as { host?: string }).host ?? '');
  } catch {
    return '';
  }
}

function lastLineOf(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

/**
 * Runners in Docker containers, one per slot: labelled, limited (memory, CPUs, pids), non-root,
 * with the slot's worktree and a read-only git directory bind-mounted at their host paths.
 * Docker's restart policy is "no": the scaler restarts runners (backoff, crash-loop detection),
 * and this runtime reports every exit it did not ask for exactly once.
 */
export class DockerRuntime implements AgentRuntime {
  readonly kind = 'docker' as const;
  private readonly tracked = new Map<string, Tracked>();
  private readonly listeners: Array<(e: RunnerExit) => void> = [];
  private readonly timer: NodeJS.Timeout;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly o: DockerRuntimeOptions) {
    this.timer = setInterval(() => void this.poll(), o.pollMs ?? 1000);
    this.timer.unref();
  }

  private log(msg: string, fields?: Record<string, unknown>): void {
    this.o.log?.(msg, fields);
  }

  logFile(agentId: string): string {
    return join(this.o.logDir, `${agentId}.log`);
  }

  onExit(listener: (e: RunnerExit) => void): void {
    this.listeners.push(listener);
  }

  /** The running container of each slot, by label. */
  private async containersOf(agentId?: string) {
    return this.o.engine.list(runnerSelector(this.o.repoId, agentId));
  }

  async adopt(agentIds: readonly string[]): Promise<RuntimeAgent[]> {
    const wanted = new Set(agentIds);
    const found: RuntimeAgent[] = [];
    const all = (await this.containersOf()).sort(
      (a, b) => b.createdAt - a.createdAt,
    );
    for (const c of all) {
      const agentId = c.labels[LABELS.slot];
      if (!agentId || !wanted.has(agentId)) continue;
      if (c.state !== 'running') {
        // It ended while no supervisor watched: a runner killed for memory still fails its attempt.
        const end = await this.o.engine.inspect(c.id);
        if (end?.oomKilled && end.exitCode === 137)
          await this.failForMemory(agentId);
        continue;
      }
      if (this.tracked.has(agentId)) {
        this.log(
          'a second container runs for one slot: stopping the older one',
          { agentId, containerId: c.id },
        );
        await this.o.engine.stop(c.id, 10);
        await this.o.engine.remove(c.id);
        continue;
      }
      const end = await this.o.engine.inspect(c.id);
      const t: Tracked = {
        agentId,
        containerId: c.id,
        instance: instanceOf(end?.env ?? []),
        startedAt: end?.startedAt ?? c.createdAt,
        stopping: false,
        health: c.health,
      };
      this.tracked.set(agentId, t);
      this.o.onHealth?.(agentId, c.health ?? null);
      found.push({
        agentId,
        containerId: c.id,
        startedAt: t.startedAt,
        ...(c.health ? { health: c.health } : {}),
      });
    }
    return found;
  }

  private slotPaths(cfg: RunnerConfig): SlotPaths {
    return {
      repoRoot: this.o.repoRoot,
      gitCommonDir: this.o.gitCommonDir,
      worktree: cfg.worktreePath,
      adminDir: worktreeAdminDir(cfg.worktreePath),
      logDir: cfg.logDir,
      logFile: this.logFile(cfg.agentId),
      runDir: cfg.runDir,
    };
  }

  /** The runner configuration as the container sees it. */
  private containerConfig(cfg: RunnerConfig, instance: string): RunnerConfig {
    const offHost = this.o.network !== 'host';
    const agentEnv = offHost
      ? Object.fromEntries(
          Object.entries(cfg.agentEnv).map(([k, v]) => [k, rewriteLoopback(v)]),
        )
      : cfg.agentEnv;
    const redisUrl =
      this.o.containerRedisUrl ??
      (offHost ? rewriteLoopback(cfg.redisUrl) : cfg.redisUrl);
    const { uid, gid } = this.o.user;
    return {
      ...cfg,
      host: instance,
      redisUrl,
      agentEnv,
      agentUser: { uid, gid },
    };
  }

  async start(spec: RunnerSpec): Promise<RuntimeAgent> {
    const { agentId, config } = spec;
    const { engine } = this.o;
    // Leftovers of this slot (an exited container kept for its logs, or a stray one) go first.
    for (const c of await this.containersOf(agentId)) {
      if (c.state === 'running') await engine.stop(c.id, 10);
      await engine.remove(c.id);
    }
    const paths = this.slotPaths(config);
    ensureMountSources(paths);
    prepareOwnership(paths, this.o.user);
    // The runner registers under this name (a container on the host network has the host's hostname).
    const instance = `${hostname()}/docker-${randomBytes(4).toString('hex')}`;
    const env = [
      `SUPERVISOR_RUNNER_CONFIG=${JSON.stringify(this.containerConfig(config, instance))}`,
      `SUPERVISOR_TAKEOVER=${spec.takeover ? '1' : '0'}`,
      `SUPERVISOR_RUNNER_LOG_FILE=${RUNNER_LOG_TARGET}`,
      ...this.o.env,
    ];
    const graceSeconds = Math.max(
      1,
      Math.ceil((config.lease.killGraceMs + 15_000) / 1000),
    );
    let id: string;
    try {
      id = await engine.run({
        name: containerName(this.o.repoId, agentId),
        image: this.o.image,
        labels: {
          ...runnerSelector(this.o.repoId, agentId),
          [LABELS.repoPath]: this.o.repoRoot,
        },
        env,
        user: '0:0',
        capAdd: RUNNER_CAPABILITIES,
        mounts: [...slotMounts(paths), ...this.o.mounts],
        memoryBytes: this.o.memoryBytes,
        nanoCpus: Math.round(this.o.cpus * 1e9),
        pidsLimit: this.o.pidsLimit,
        ...(this.o.tmpSizeBytes ? { tmpSizeBytes: this.o.tmpSizeBytes } : {}),
        runnerDir: RUNNER_DIR,
        network: this.o.network,
        extraHosts:
          this.o.network === 'host'
            ? []
            : ['host.docker.internal:host-gateway'],
        stopTimeoutSeconds: graceSeconds,
        healthcheck: {
          test: HEALTHCHECK,
          intervalMs: this.o.healthIntervalMs,
          timeoutMs: Math.min(10_000, Math.max(2_000, this.o.healthIntervalMs)),
          startPeriodMs: 30_000,
          retries: 3,
        },
      });
    } catch (err) {
      throw new SupervisorError(
        'ERR_SUP_DOCKER',
        `could not start the container of ${agentId}: ${coerceError(err).message}`,
        {
          hint: 'see `docker info`, and docs/docker.md',
          cause: err,
        },
      );
    }
    const startedAt = Date.now();
    this.tracked.set(agentId, {
      agentId,
      containerId: id,
      instance,
      startedAt,
      stopping: false,
      health: 'starting',
    });
    this.o.onHealth?.(agentId, 'starting');
    this.log('container started', { agentId, containerId: id.slice(0, 12) });
    return { agentId, containerId: id, startedAt, health: 'starting' };
  }

  owns(agentId: string, registered: { host: string }): boolean {
    return this.tracked.get(agentId)?.instance === registered.host;
  }

  async stop(agentId: string, graceMs: number): Promise<void> {
    const t = this.tracked.get(agentId);
    if (t) t.stopping = true;
    const ids = t
      ? [t.containerId]
      : (await this.containersOf(agentId)).map((c) => c.id);
    // Docker sends SIGTERM (the runner hands its job back) and SIGKILL after the grace period.
    await Promise.all(
      ids.map(async (id) => {
        await this.o.engine.stop(id, Math.max(1, Math.ceil(graceMs / 1000)));
        await this.o.engine.remove(id);
      }),
    );
    if (this.tracked.get(agentId) === t) this.tracked.delete(agentId);
    this.o.onHealth?.(agentId, null);
  }

  async killAgent(
    agentId: string,
    match?: { jobId: string; attempt: number },
  ): Promise<boolean> {
    const rec = readAgentRecord(join(this.o.runDir, agentId, 'agent.json'));
    if (!rec) return false;
    if (match && (rec.jobId !== match.jobId || rec.attempt !== match.attempt))
      return false;
    const t = this.tracked.get(agentId);
    if (!t) return false;
    // The pid is the container's; the marker in its environment proves it is still that agent.
    const script =
      'tr "\\0" "\\n" < /proc/"$2"/environ | grep -qx "SUPERVISOR_RUN_MARKER=$1" && kill -KILL -- -"$2"';
    try {
      // As the agent's user: that user may read the agent's environment and signal it.
      const r = await this.o.engine.exec(
        t.containerId,
        ['sh', '-c', script, 'kill-agent', rec.marker, String(rec.pid)],
        `${this.o.user.uid}:${this.o.user.gid}`,
      );
      return r.exitCode === 0;
    } catch {
      return false;
    }
  }

  /** One pass over the repository's containers: exits, removals and health changes. */
  private poll(): Promise<void> {
    this.polling ??= this.pollOnce()
      .catch((err) =>
        this.log('docker: could not list containers', {
          error: coerceError(err).message,
        }),
      )
      .finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    if (this.closed || this.tracked.size === 0) return;
    const byId = new Map((await this.containersOf()).map((c) => [c.id, c]));
    for (const t of [...this.tracked.values()]) {
      if (t.stopping) continue;
      const c = byId.get(t.containerId);
      if (c && (c.state === 'running' || c.state === 'paused')) {
        if (c.health !== t.health) {
          t.health = c.health;
          this.o.onHealth?.(t.agentId, c.health ?? null);
        }
        continue;
      }
      await this.ended(t);
    }
  }

  private async ended(t: Tracked): Promise<void> {
    if (this.tracked.get(t.agentId) !== t || t.stopping) return;
    this.tracked.delete(t.agentId);
    const end = await this.o.engine
      .inspect(t.containerId)
      .catch(() => undefined);
    const last =
      end && end.exitCode !== 0
        ? lastLineOf(await this.o.engine.tail(t.containerId, 5).catch(() => ''))
        : '';
    const reason = exitReason(end, last, this.o.memoryBytes);
    if (end?.oomKilled && end.exitCode === 137)
      await this.failForMemory(t.agentId);
    this.o.onHealth?.(t.agentId, null);
    this.log('container ended', {
      agentId: t.agentId,
      containerId: t.containerId.slice(0, 12),
      reason,
    });
    const exit: RunnerExit = {
      agentId: t.agentId,
      code: end?.exitCode ?? null,
      signal: end?.exitCode === 137 ? 'SIGKILL' : null,
      reason,
    };
    for (const l of this.listeners) l(exit);
  }

  private async failForMemory(agentId: string): Promise<void> {
    const error = `out of memory: ${agentId}'s container was killed at its ${Math.round(this.o.memoryBytes / MiB)} MiB memory limit`;
    try {
      const jobId = await failHeldJob(this.o.queue, agentId, error);
      if (jobId)
        this.log('failed the attempt of a runner killed for memory', {
          agentId,
          jobId,
        });
    } catch (err) {
      this.log('could not fail the attempt of a runner killed for memory', {
        agentId,
        error: coerceError(err).message,
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.polling;
  }
}
