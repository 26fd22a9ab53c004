import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import type Docker from 'dockerode';
import { dockerClient } from './docker/client.js';
import { slotId, type RunnerConfig } from '../../contract/job.js';
import { SupervisorError, coerceError } from '../errors.js';
import { LABELS, PROJECT } from './docker/labels.js';
import { RUNNER_CAPABILITIES } from './docker.js';
import type { AgentRuntime, RunnerSpec, RuntimeAgent } from './runtime.js';

/**
 * `--runtime swarm`: the runners of a repository as one Docker Swarm service with N replicas,
 * in remote git mode (no shared filesystem: any node of the swarm can run them). The task slot
 * is the slot id (`SUPERVISOR_AGENT_ID=agent-{{.Task.Slot}}`, formatted agent-00N by the
 * runner). As in the Docker runtime, the runner is root in its task with a few capabilities and
 * runs its agent (and its git) under a uid of its own (the runner configuration's agentUser);
 * the runner configuration and the git token travel as Docker secrets only root can read, never
 * in the service's environment; resources are service limits; a changed spec (image,
 * configuration) rolls out one task at a time. Found by labels only.
 */
export const SWARM_ROLE = 'swarm-runners';
const SPEC_HASH = 'dev.agent-supervisor.spec-hash';
const IMAGE_ID = 'dev.agent-supervisor.image-id';
const CONFIG_FILE = '/run/secrets/runner-config.json';
/**
 * Where runners keep their clone inside a task: the runner's (root's) directory, outside the
 * agent's home, which the agent keeps to itself (its ~/.cache too) and which is cleared of the
 * agent's files between jobs.
 */
export const SWARM_CACHE_DIR = '/var/cache/agent-supervisor';

export interface SwarmTemplate {
  image: string;
  /** The image's id on this node: a new build under the same tag changes it and rolls the service. */
  imageId: string | undefined;
  /** Slot-independent runner configuration (the task's slot id and paths come from the runner). */
  runner: RunnerConfig;
  gitToken: string | undefined;
  /** Extra `NAME=value` environment (agent API keys the user passes through). */
  env: string[];
  memoryBytes: number;
  nanoCpus: number;
  /** `host` (default: tasks reach Redis and the dashboard as the node does) or an overlay network. */
  network: string;
  constraints: string[];
  stopGraceMs: number;
  /** The image's health check runs this often; a task counts as running once it passed. */
  healthIntervalMs: number;
  /** Processes per task container (`docker.pidsLimit`). */
  pidsLimit: number;
  /** Size cap of the task's /tmp (tmpfs), bytes. */
  tmpSizeBytes: number;
}

interface ServiceInfo {
  ID: string;
  Version: { Index: number };
  Spec: {
    Name: string;
    Labels?: Record<string, string>;
    Mode?: { Replicated?: { Replicas?: number } };
  };
  UpdateStatus?: { State?: string; Message?: string };
}

interface TaskInfo {
  ID: string;
  Slot?: number;
  DesiredState: string;
  CreatedAt: string;
  NodeID?: string;
  Status: {
    State: string;
    Err?: string;
    Message?: string;
    Timestamp?: string;
    ContainerStatus?: { ContainerID?: string };
  };
  Spec?: { ContainerSpec?: { Image?: string } };
}

export const serviceName = (repoId: string): string =>
  `agent-supervisor-${repoId}`;

export function serviceLabels(
  repoId: string,
  repoPath: string,
): Record<string, string> {
  return {
    [LABELS.project]: PROJECT,
    [LABELS.role]: SWARM_ROLE,
    [LABELS.repo]: repoId,
    [LABELS.repoPath]: repoPath,
  };
}

const filterLabels = (repoId: string) => ({
  label: [
    `${LABELS.project}=${PROJECT}`,
    `${LABELS.role}=${SWARM_ROLE}`,
    `${LABELS.repo}=${repoId}`,
  ],
});

/**
 * `supervisor cleanup`: removes the repository's swarm service and secrets, if there are any and
 * this engine is a swarm manager. Returns whether a service was removed.
 */
export async function removeSwarmService(
  repoId: string,
  repoPath: string,
  docker = dockerClient(),
): Promise<boolean> {
  const info = (await docker.info().catch(() => undefined)) as
    | { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } }
    | undefined;
  if (info?.Swarm?.LocalNodeState !== 'active' || !info.Swarm.ControlAvailable)
    return false;
  const runtime = new SwarmRuntime(docker, {
    repoId,
    repoPath,
    log: () => undefined,
    template: () => Promise.reject(new Error('cleanup only')),
  });
  return runtime.remove();
}

/** Refuses, with the command to run, when this engine is not a swarm manager. */
export async function checkSwarm(docker: Docker): Promise<void> {
  let info: {
    Swarm?: {
      LocalNodeState?: string;
      ControlAvailable?: boolean;
      NodeAddr?: string;
    };
  };
  try {
    info = (await docker.info()) as typeof info;
  } catch (err) {
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `cannot use the swarm runtime: the Docker engine does not answer (${coerceError(err).message})`,
      {
        hint: 'start Docker, or set DOCKER_HOST to a swarm manager',
        cause: err,
      },
    );
  }
  const state = info.Swarm?.LocalNodeState || 'inactive';
  if (state !== 'active') {
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      `Docker is not in swarm mode on this machine (swarm state: ${state}), so --runtime swarm has nowhere to create its service`,
      {
        hint: "make this machine a swarm manager: docker swarm init --advertise-addr <this machine's address> (other machines join with the `docker swarm join …` line it prints), or use --runtime docker or process",
      },
    );
  }
  if (!info.Swarm?.ControlAvailable) {
    throw new SupervisorError(
      'ERR_SUP_DOCKER',
      'this machine is a swarm worker, not a manager: services can only be created on a manager',
      {
        hint: 'run the supervisor on a manager node (`docker node ls` on one lists them), or promote this one: docker node promote <node>',
      },
    );
  }
}

const sha = (s: string) =>
  createHash('sha256').update(s).digest('hex').slice(0, 12);
const isNotFound = (err: unknown) =>
  (err as { statusCode?: number }).statusCode === 404;

/** Maps a task's state to a slot state. */
function slotState(t: TaskInfo): RuntimeAgent['state'] {
  if (t.Status.State === 'running') return 'running';
  if (['failed', 'rejected', 'orphaned'].includes(t.Status.State))
    return 'crashed';
  if (['shutdown', 'complete', 'remove'].includes(t.Status.State))
    return undefined;
  return 'starting';
}

export class SwarmRuntime implements AgentRuntime {
  readonly kind = 'swarm' as const;
  private lastHash: string | undefined;

  constructor(
    readonly docker: Docker,
    private readonly o: {
      repoId: string;
      repoPath: string;
      /** The service's contents; may throw (e.g. no git URL yet) — the scaler retries. */
      template: () => Promise<SwarmTemplate>;
      log: (msg: string, fields?: Record<string, unknown>) => void;
    },
  ) {}

  get name(): string {
    return serviceName(this.o.repoId);
  }

  async adopt(): Promise<RuntimeAgent[]> {
    return [];
  }

  start(spec: RunnerSpec): Promise<RuntimeAgent> {
    return Promise.reject(
      new Error(
        `the swarm runtime scales its service as a whole; ${spec.agentId} is a task slot of it`,
      ),
    );
  }

  async stop(): Promise<void> {
    /* scaleTo(0) */
  }

  async killAgent(): Promise<boolean> {
    // The runner of a superseded attempt learns it from its lock renewal and kills its agent.
    return false;
  }

  onExit(): void {
    /* swarm restarts tasks itself (restart policy) */
  }

  logFile(): string | undefined {
    return undefined;
  }

  async close(): Promise<void> {
    /* nothing held open */
  }

  /** The service of this repository, if any. */
  async find(): Promise<ServiceInfo | undefined> {
    const list = (await this.docker.listServices({
      filters: filterLabels(this.o.repoId),
    } as Docker.ServiceListOptions)) as unknown as ServiceInfo[];
    return list[0];
  }

  /** Makes the service run `desired` replicas (0: removes it); returns its tasks as slots. */
  async scaleTo(desired: number): Promise<RuntimeAgent[]> {
    const current = await this.find();
    if (desired === 0) {
      if (current) await this.remove(current);
      this.lastHash = undefined;
      return [];
    }
    const tpl = await this.o.template();
    const hash = sha(JSON.stringify({ tpl, desired }));
    if (
      !current ||
      current.Spec.Labels?.[SPEC_HASH] !== hash ||
      this.lastHash !== hash
    ) {
      const spec = await this.spec(tpl, desired, hash);
      if (!current) {
        await this.docker.createService(
          spec as unknown as Docker.CreateServiceOptions,
        );
        this.o.log('swarm service created', {
          service: this.name,
          replicas: desired,
          image: tpl.image,
        });
      } else if (current.Spec.Labels?.[SPEC_HASH] !== hash) {
        await this.docker
          .getService(current.ID)
          .update({ ...spec, version: current.Version.Index } as never);
        this.o.log('swarm service updated', {
          service: this.name,
          replicas: desired,
          image: tpl.image,
        });
      }
      this.lastHash = hash;
      await this.removeUnusedSecrets(spec).catch(() => undefined);
    }
    return this.tasks(desired);
  }

  private async secret(
    kind: 'runner' | 'git',
    data: string,
  ): Promise<{ SecretID: string; SecretName: string }> {
    const name = `${this.name}-${kind}-${sha(data)}`;
    const found = (await this.docker.listSecrets({
      filters: { name: [name] },
    })) as unknown as Array<{ ID: string; Spec: { Name: string } }>;
    const exact = found.find((s) => s.Spec.Name === name);
    if (exact) return { SecretID: exact.ID, SecretName: name };
    const created = (await this.docker.createSecret({
      Name: name,
      Labels: serviceLabels(this.o.repoId, this.o.repoPath),
      Data: Buffer.from(data).toString('base64'),
    })) as { id?: string; ID?: string };
    return { SecretID: created.id ?? created.ID ?? '', SecretName: name };
  }

  private async spec(
    tpl: SwarmTemplate,
    replicas: number,
    hash: string,
  ): Promise<Record<string, unknown>> {
    const labels = serviceLabels(this.o.repoId, this.o.repoPath);
    const config = await this.secret('runner', JSON.stringify(tpl.runner));
    // Root's only: the runner reads them; its agent, under a uid of its own, cannot.
    const secrets = [
      {
        ...config,
        File: { Name: 'runner-config.json', UID: '0', GID: '0', Mode: 0o400 },
      },
    ];
    if (tpl.gitToken)
      secrets.push({
        ...(await this.secret('git', tpl.gitToken)),
        File: { Name: 'git-token', UID: '0', GID: '0', Mode: 0o400 },
      });
    return {
      Name: this.name,
      Labels: { ...labels, [SPEC_HASH]: hash },
      TaskTemplate: {
        ContainerSpec: {
          Image: tpl.image,
          Labels: {
            ...labels,
            ...(tpl.imageId ? { [IMAGE_ID]: tpl.imageId } : {}),
          },
          Env: [
            `SUPERVISOR_RUNNER_CONFIG_FILE=${CONFIG_FILE}`,
            // Swarm fills these in per task: the slot is the slot id, the node the host shown in status.
            'SUPERVISOR_AGENT_ID=agent-{{.Task.Slot}}',
            'SUPERVISOR_HOST={{.Node.Hostname}}',
            ...tpl.env,
          ],
          Secrets: secrets,
          // The Docker runtime's hardening: the runner is root with only the capabilities it
          // needs to run its agent under the agent's uid (API 1.41, Docker 20.10); no privilege
          // gain (engines with API < 1.46 ignore NoNewPrivileges; the image's entrypoint sets
          // it itself), a size-capped /tmp.
          User: '0:0',
          CapabilityDrop: ['ALL'],
          CapabilityAdd: RUNNER_CAPABILITIES,
          Privileges: { NoNewPrivileges: true },
          Mounts: [
            {
              Type: 'tmpfs',
              Target: '/tmp',
              TmpfsOptions: { SizeBytes: tpl.tmpSizeBytes, Mode: 0o1777 },
            },
          ],
          StopGracePeriod: tpl.stopGraceMs * 1_000_000,
          StopSignal: 'SIGTERM',
          // The image's test (a fresh heartbeat in Redis), at our interval: swarm holds a task in
          // `starting` until it passes once.
          HealthCheck: {
            Interval: tpl.healthIntervalMs * 1_000_000,
            Timeout: 10_000_000_000,
            StartPeriod: 60_000_000_000,
            Retries: 3,
          },
        },
        Resources: {
          Limits: {
            MemoryBytes: tpl.memoryBytes,
            NanoCPUs: tpl.nanoCpus,
            Pids: tpl.pidsLimit,
          },
        },
        RestartPolicy: {
          Condition: 'any',
          Delay: 1_000_000_000,
          MaxAttempts: 0,
        },
        Placement: { Constraints: tpl.constraints },
        Networks: [{ Target: tpl.network }],
      },
      Mode: { Replicated: { Replicas: replicas } },
      // A new image or configuration replaces one task at a time; each runner hands its job back first.
      UpdateConfig: {
        Parallelism: 1,
        Delay: 0,
        Order: 'stop-first',
        FailureAction: 'pause',
        Monitor: 5_000_000_000,
      },
      RollbackConfig: { Parallelism: 1, Order: 'stop-first' },
    };
  }

  /** The tasks of the service, one per slot (the newest), as the scaler's slots. */
  async tasks(desired?: number): Promise<RuntimeAgent[]> {
    const all = (await this.docker.listTasks({
      filters: { service: [this.name] },
    })) as TaskInfo[];
    const newest = new Map<number, TaskInfo>();
    for (const t of all) {
      if (t.Slot === undefined) continue;
      const prev = newest.get(t.Slot);
      if (!prev || Date.parse(t.CreatedAt) > Date.parse(prev.CreatedAt))
        newest.set(t.Slot, t);
    }
    const out: RuntimeAgent[] = [];
    for (const [slot, t] of [...newest].sort((a, b) => a[0] - b[0])) {
      const state = slotState(t);
      if (
        !state ||
        (t.DesiredState !== 'running' &&
          desired !== undefined &&
          slot > desired)
      )
        continue;
      out.push({
        agentId: slotId(slot),
        startedAt: Date.parse(t.Status.Timestamp ?? t.CreatedAt),
        state,
        ...(t.Status.ContainerStatus?.ContainerID
          ? { containerId: t.Status.ContainerStatus.ContainerID }
          : {}),
        ...(state === 'crashed'
          ? {
              lastError: `task ${t.Status.State}: ${t.Status.Err ?? t.Status.Message ?? 'no reason given'}`,
            }
          : {}),
      });
    }
    return out;
  }

  /** Removes the service (its runners get SIGTERM and hand their jobs back) and its secrets. */
  async remove(svc?: ServiceInfo): Promise<boolean> {
    const s = svc ?? (await this.find());
    if (!s) return false;
    await this.docker.getService(s.ID).remove();
    this.o.log('swarm service removed', { service: this.name });
    // Secrets stay in use until the tasks' containers are gone.
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const left = await this.docker.listContainers({
        all: true,
        filters: {
          label: [`com.docker.swarm.service.id=${s.ID}`],
          status: ['running', 'restarting', 'removing', 'created'],
        },
      });
      if (left.length === 0) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await this.removeUnusedSecrets(undefined).catch(() => undefined);
    return true;
  }

  private async removeUnusedSecrets(
    spec: Record<string, unknown> | undefined,
  ): Promise<void> {
    const keep = new Set(
      JSON.stringify(spec ?? {})
        .match(/"SecretName":"([^"]+)"/g)
        ?.map((m) => m.slice(14, -1)) ?? [],
    );
    const secrets = (await this.docker.listSecrets({
      filters: filterLabels(this.o.repoId),
    })) as unknown as Array<{ ID: string; Spec: { Name: string } }>;
    for (const s of secrets) {
      if (keep.has(s.Spec.Name)) continue;
      await this.docker
        .getSecret(s.ID)
        .remove()
        .catch((err: unknown) => {
          if (!isNotFound(err)) throw err;
        });
    }
  }

  /**
   * Streams the service's logs as `agent-00N | line` (the task's slot), optionally one slot's;
   * resolves when the stream ends (never with `follow`, until `signal` aborts).
   */
  async logs(
    opts: {
      agentId?: string;
      follow: boolean;
      tail: number;
      signal?: AbortSignal;
    },
    onLine: (agentId: string, line: string) => void,
  ): Promise<void> {
    const svc = await this.find();
    if (!svc)
      throw new SupervisorError(
        'ERR_SUP_NOT_RUNNING',
        `no swarm service of this repository (${this.name})`,
        {
          hint: 'start runners with `supervisor start --runtime swarm` / `supervisor scale N`',
        },
      );
    const slots = new Map<string, number>();
    const refresh = async () => {
      for (const t of (await this.docker.listTasks({
        filters: { service: [this.name] },
      })) as TaskInfo[])
        if (t.Slot !== undefined) slots.set(t.ID, t.Slot);
    };
    await refresh();
    const raw = (await this.docker.getService(svc.ID).logs({
      stdout: true,
      stderr: true,
      follow: opts.follow,
      tail: opts.tail,
      details: true,
    } as never)) as unknown;
    const out = new PassThrough();
    if (Buffer.isBuffer(raw)) {
      // Without follow, dockerode hands over the whole (multiplexed) body at once.
      const stream = new PassThrough();
      this.docker.modem.demuxStream(stream, out, out);
      stream.end(raw);
    } else {
      const stream = raw as NodeJS.ReadableStream & { destroy?: () => void };
      this.docker.modem.demuxStream(stream, out, out);
      stream.on('end', () => out.end());
      opts.signal?.addEventListener('abort', () => {
        stream.destroy?.();
        out.end();
      });
    }
    let rest = '';
    const emit = async (line: string) => {
      const m = /^(\S*com\.docker\.swarm\.task\.id=([a-z0-9]+)\S*) (.*)$/.exec(
        line,
      );
      const taskId = m?.[2];
      if (taskId && !slots.has(taskId)) await refresh();
      const slot = taskId ? slots.get(taskId) : undefined;
      const id = slot !== undefined ? slotId(slot) : 'agent-???';
      if (!opts.agentId || opts.agentId === id) onLine(id, m ? m[3]! : line);
    };
    for await (const chunk of out as AsyncIterable<Buffer>) {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const l of parts) await emit(l);
    }
    if (rest) await emit(rest);
  }
}
