import type Docker from 'dockerode';
import { dockerClient } from './client.js';
import { PassThrough } from 'node:stream';

/** A container as the runtime sees it in a listing. */
export interface ContainerSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  /** created | running | paused | restarting | removing | exited | dead */
  state: string;
  /** healthy | unhealthy | starting, when the container has a health check. */
  health: string | undefined;
  createdAt: number;
}

/** What ended a container. */
export interface ContainerEnd {
  running: boolean;
  exitCode: number;
  /** This run ended because its main process was killed for memory (from the engine's events). */
  oomKilled: boolean;
  error: string;
  startedAt: number;
  user: string;
  env: string[];
}

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

export interface ContainerSpec {
  name: string;
  image: string;
  labels: Record<string, string>;
  env: string[];
  user: string;
  /** Capabilities kept (all others are dropped). @defaultValue [] */
  capAdd?: string[];
  mounts: BindMount[];
  memoryBytes: number;
  nanoCpus: number;
  pidsLimit: number;
  /** Size cap of the container's /tmp (tmpfs), bytes. */
  tmpSizeBytes?: number;
  /** A small tmpfs only root may enter (mode 0700): the runner's own files, out of the agent's reach. */
  runnerDir?: string;
  /** `host`, `bridge` or the name of a user-defined network. */
  network: string;
  extraHosts: string[];
  stopTimeoutSeconds: number;
  healthcheck: {
    test: string[];
    intervalMs: number;
    timeoutMs: number;
    startPeriodMs: number;
    retries: number;
  };
}

export interface EngineInfo {
  serverVersion: string;
  apiVersion: string;
  cpus: number;
  memoryBytes: number;
  os: string;
}

/**
 * The few Docker Engine calls the runtime needs, behind one interface (one real
 * implementation, tested against the real engine). Containers are found by label only.
 */
export interface DockerEngine {
  ping(): Promise<void>;
  info(): Promise<EngineInfo>;
  imageExists(ref: string): Promise<boolean>;
  /** The image's labels, or undefined when there is no such image. */
  imageLabels(ref: string): Promise<Record<string, string> | undefined>;
  networkExists(name: string): Promise<boolean>;
  /** Creates a bridge network with these labels unless one of that name exists. */
  ensureNetwork(name: string, labels: Record<string, string>): Promise<void>;
  /** Removes a network after disconnecting these containers; false when in use (or gone). */
  removeNetwork(name: string, disconnect?: string[]): Promise<boolean>;
  /** Connects a container to a network under an alias (nothing when it is connected already). */
  connectNetwork(name: string, id: string, alias: string): Promise<void>;
  /** The host port a container publishes `containerPort`/tcp on, if it does. */
  publishedPort(id: string, containerPort: number): Promise<number | undefined>;
  /** Every container (running or not) that carries all the given labels. */
  list(labels: Record<string, string>): Promise<ContainerSummary[]>;
  /** Creates and starts a container; returns its id. */
  run(spec: ContainerSpec): Promise<string>;
  /** The container's end state, or undefined when it no longer exists. */
  inspect(id: string): Promise<ContainerEnd | undefined>;
  /** SIGTERM (the image's stop signal), SIGKILL after `graceSeconds`; resolves once it stopped. */
  stop(id: string, graceSeconds: number): Promise<void>;
  remove(id: string): Promise<void>;
  /** Runs a command in a running container (as `user`, else its own); exit code and output. */
  exec(
    id: string,
    cmd: string[],
    user?: string,
  ): Promise<{ exitCode: number; output: string }>;
  /** The last lines of a container's output. */
  tail(id: string, lines: number): Promise<string>;
  /**
   * Runs `cmd` (entrypoint replaced) in a throw-away container of `image`, without network,
   * and returns its exit code and output (preflight: is the agent's program in the image?).
   */
  probe(
    image: string,
    cmd: string[],
  ): Promise<{ exitCode: number; output: string }>;
}

const HEALTH_RE = /\((healthy|unhealthy|health: starting)\)/;

function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}

function isNotModified(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 304;
}

/** Docker's multiplexed stdout/stderr stream as text. */
async function demuxed(
  modem: Docker['modem'],
  stream: NodeJS.ReadableStream,
): Promise<string> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  modem.demuxStream(stream, out, out);
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  return Buffer.concat(chunks).toString('utf8');
}

export class DockerodeEngine implements DockerEngine {
  readonly docker: Docker;

  constructor(docker?: Docker) {
    this.docker = docker ?? dockerClient();
  }

  async ping(): Promise<void> {
    await this.docker.ping();
  }

  async info(): Promise<EngineInfo> {
    const [info, version] = await Promise.all([
      this.docker.info(),
      this.docker.version(),
    ]);
    return {
      serverVersion: String(info.ServerVersion ?? version.Version),
      apiVersion: String(version.ApiVersion),
      cpus: Number(info.NCPU),
      memoryBytes: Number(info.MemTotal),
      os: String(info.OperatingSystem ?? ''),
    };
  }

  async imageExists(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async imageLabels(ref: string): Promise<Record<string, string> | undefined> {
    try {
      const img = await this.docker.getImage(ref).inspect();
      return (img.Config?.Labels ?? {}) as Record<string, string>;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async networkExists(name: string): Promise<boolean> {
    try {
      await this.docker.getNetwork(name).inspect();
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async ensureNetwork(
    name: string,
    labels: Record<string, string>,
  ): Promise<void> {
    if (await this.networkExists(name)) return;
    try {
      await this.docker.createNetwork({
        Name: name,
        Driver: 'bridge',
        Labels: labels,
        CheckDuplicate: true,
      });
    } catch (err) {
      // 409: another supervisor created it meanwhile.
      if ((err as { statusCode?: number }).statusCode !== 409) throw err;
    }
  }

  async removeNetwork(
    name: string,
    disconnect: string[] = [],
  ): Promise<boolean> {
    try {
      const net = this.docker.getNetwork(name);
      for (const id of disconnect)
        await net
          .disconnect({ Container: id, Force: true })
          .catch(() => undefined);
      await net.remove();
      return true;
    } catch {
      return false;
    }
  }

  async connectNetwork(name: string, id: string, alias: string): Promise<void> {
    const c = await this.docker.getContainer(id).inspect();
    if (c.NetworkSettings.Networks?.[name]) return;
    await this.docker
      .getNetwork(name)
      .connect({ Container: id, EndpointConfig: { Aliases: [alias] } });
  }

  async publishedPort(
    id: string,
    containerPort: number,
  ): Promise<number | undefined> {
    const c = await this.docker.getContainer(id).inspect();
    const port =
      c.NetworkSettings.Ports?.[`${containerPort}/tcp`]?.[0]?.HostPort;
    return port ? Number(port) : undefined;
  }

  async list(labels: Record<string, string>): Promise<ContainerSummary[]> {
    const filters = {
      label: Object.entries(labels).map(([k, v]) => `${k}=${v}`),
    };
    const found = await this.docker.listContainers({
      all: true,
      filters: JSON.stringify(filters),
    });
    return found.map((c) => ({
      id: c.Id,
      name: (c.Names[0] ?? '').replace(/^\//, ''),
      labels: c.Labels,
      state: c.State,
      health: HEALTH_RE.exec(c.Status)?.[1]?.replace('health: ', ''),
      createdAt: c.Created * 1000,
    }));
  }

  async run(spec: ContainerSpec): Promise<string> {
    const ns = (ms: number) => Math.round(ms * 1e6);
    const container = await this.docker.createContainer({
      name: spec.name,
      Image: spec.image,
      Labels: spec.labels,
      Env: spec.env,
      User: spec.user,
      StopSignal: 'SIGTERM',
      StopTimeout: spec.stopTimeoutSeconds,
      Healthcheck: {
        Test: ['CMD', ...spec.healthcheck.test],
        Interval: ns(spec.healthcheck.intervalMs),
        Timeout: ns(spec.healthcheck.timeoutMs),
        StartPeriod: ns(spec.healthcheck.startPeriodMs),
        Retries: spec.healthcheck.retries,
      },
      HostConfig: {
        Mounts: spec.mounts.map((m) => ({
          Type: 'bind' as const,
          Source: m.source,
          Target: m.target,
          ReadOnly: m.readOnly,
        })),
        Memory: spec.memoryBytes,
        MemorySwap: spec.memoryBytes,
        NanoCpus: spec.nanoCpus,
        PidsLimit: spec.pidsLimit,
        // A size-capped /tmp: filling it fails the writer (ENOSPC), not the host's disk.
        Tmpfs: {
          ...(spec.tmpSizeBytes
            ? { '/tmp': `rw,nosuid,nodev,mode=1777,size=${spec.tmpSizeBytes}` }
            : {}),
          ...(spec.runnerDir
            ? { [spec.runnerDir]: 'rw,nosuid,nodev,noexec,mode=0700,size=1m' }
            : {}),
        },
        // The supervisor's scaler restarts runners (with backoff and crash-loop detection).
        RestartPolicy: { Name: 'no' },
        NetworkMode: spec.network,
        ExtraHosts: spec.extraHosts,
        SecurityOpt: ['no-new-privileges:true'],
        CapDrop: ['ALL'],
        ...(spec.capAdd?.length ? { CapAdd: spec.capAdd } : {}),
        LogConfig: {
          Type: 'json-file',
          Config: { 'max-size': '10m', 'max-file': '3' },
        },
      },
    });
    try {
      await container.start();
    } catch (err) {
      await container.remove({ force: true }).catch(() => undefined);
      throw err;
    }
    return container.id;
  }

  /**
   * Whether this run of the container ended because the kernel killed its main process for
   * memory: Docker's OOMKilled flag is set when *any* process of the container was OOM-killed
   * (an agent child, minutes earlier) and stays set, so a later `docker kill` (137) would be
   * taken for memory. The engine's events for this run decide: an `oom` event within a moment
   * of its end, and no `kill` then.
   */
  private async diedOfOom(
    id: string,
    startedAt: number,
    finishedAt: number,
  ): Promise<boolean> {
    const since = Math.floor(Math.max(startedAt, finishedAt - 3000) / 1000);
    const until = Math.ceil((finishedAt + 1000) / 1000);
    const stream = (await this.docker.getEvents({
      since,
      until,
      filters: JSON.stringify({ container: [id], type: ['container'] }),
    })) as NodeJS.ReadableStream;
    let text = '';
    for await (const chunk of stream) text += chunk.toString();
    const events = text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as { Action?: string; timeNano?: number };
        } catch {
          return {};
        }
      });
    const near = (e: { timeNano?: number }) =>
      e.timeNano !== undefined &&
      Math.abs(e.timeNano / 1e6 - finishedAt) <= 3000;
    return (
      events.some((e) => e.Action === 'oom' && near(e)) &&
      !events.some((e) => e.Action === 'kill' && near(e))
    );
  }

  async inspect(id: string): Promise<ContainerEnd | undefined> {
    try {
      const c = await this.docker.getContainer(id).inspect();
      const finishedAt = Date.parse(c.State.FinishedAt);
      const oomKilled =
        c.State.OOMKilled &&
        !c.State.Running &&
        c.State.ExitCode === 137 &&
        Number.isFinite(finishedAt) &&
        (await this.diedOfOom(
          id,
          Date.parse(c.State.StartedAt),
          finishedAt,
        ).catch(() => c.State.OOMKilled));
      return {
        running: c.State.Running,
        exitCode: c.State.ExitCode,
        oomKilled,
        error: c.State.Error ?? '',
        startedAt: Date.parse(c.State.StartedAt),
        user: c.Config.User,
        env: c.Config.Env ?? [],
      };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async stop(id: string, graceSeconds: number): Promise<void> {
    try {
      await this.docker.getContainer(id).stop({ t: graceSeconds });
    } catch (err) {
      if (isNotFound(err) || isNotModified(err)) return;
      throw err;
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      // 409: removal already in progress.
      if (
        isNotFound(err) ||
        (err as { statusCode?: number }).statusCode === 409
      )
        return;
      throw err;
    }
  }

  async exec(
    id: string,
    cmd: string[],
    user?: string,
  ): Promise<{ exitCode: number; output: string }> {
    const exec = await this.docker.getContainer(id).exec({
      Cmd: cmd,
      AttachStdout: true,
      AttachStderr: true,
      ...(user ? { User: user } : {}),
    });
    const stream = await exec.start({ hijack: true, stdin: false });
    const output = await demuxed(this.docker.modem, stream);
    const info = await exec.inspect();
    return { exitCode: info.ExitCode ?? -1, output };
  }

  async probe(
    image: string,
    cmd: string[],
  ): Promise<{ exitCode: number; output: string }> {
    const container = await this.docker.createContainer({
      Image: image,
      Entrypoint: [cmd[0]!],
      Cmd: cmd.slice(1),
      Labels: { 'agent-supervisor.probe': '1' },
      HostConfig: { NetworkMode: 'none' },
    });
    try {
      await container.start();
      const end = (await container.wait()) as { StatusCode: number };
      const buf = (await container.logs({
        stdout: true,
        stderr: true,
        follow: false,
      })) as unknown as Buffer;
      return { exitCode: end.StatusCode, output: demuxBuffer(buf) };
    } finally {
      await container.remove({ force: true }).catch(() => undefined);
    }
  }

  async tail(id: string, lines: number): Promise<string> {
    try {
      const buf = (await this.docker.getContainer(id).logs({
        stdout: true,
        stderr: true,
        tail: lines,
        follow: false,
      })) as unknown as Buffer;
      return demuxBuffer(buf);
    } catch (err) {
      if (isNotFound(err)) return '';
      throw err;
    }
  }
}

/** Docker's multiplexed log format, already read into a buffer: 8-byte frame headers. */
export function demuxBuffer(buf: Buffer): string {
  const parts: Buffer[] = [];
  let i = 0;
  while (i + 8 <= buf.length) {
    const kind = buf[i];
    if (kind !== 0 && kind !== 1 && kind !== 2) return buf.toString('utf8'); // a TTY stream: not framed
    const len = buf.readUInt32BE(i + 4);
    parts.push(buf.subarray(i + 8, i + 8 + len));
    i += 8 + len;
  }
  return Buffer.concat(parts).toString('utf8');
}
