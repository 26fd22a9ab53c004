import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { openContext, type Context } from '../../supervisor/context.js';
import { runningDaemon } from '../../supervisor/pidfile.js';
import {
  readRegistry,
  type RegisteredAgent,
} from '../../supervisor/registry.js';
import { DESIRED_KEY } from '../../supervisor/scaler.js';
import { RUNNER_NODE_FLAGS } from '../../supervisor/runtimes/process.js';
import { setSetting } from '../../supervisor/store/db.js';
import { connect, deletePrefix, REDIS_URL } from './redis.js';

export type Log = (msg: string) => void;

/** Polls `fn` until it returns something truthy. */
export async function waitUntil<T>(
  fn: () => T | Promise<T>,
  what: string,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline)
      throw new Error(`benchmark timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}

/** Environment for our supervisor: the given prefix, defaults everywhere else (what users run). */
export function supervisorEnv(
  prefix: string,
  agentCommand: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    REDIS_URL,
    SUPERVISOR_PREFIX: prefix,
    SUPERVISOR_AGENT_COMMAND: agentCommand,
    // Default max is memory ÷ 12 GiB per agent (2 here); the benchmark needs 10 slots.
    SUPERVISOR_MAX_AGENTS: '16',
    ...extra,
  };
}

/** The `supervisor` CLI, and the node flags its shebang line gives it when run as the installed bin. */
export const CLI = fileURLToPath(
  new URL('../../supervisor/cli/main.js', import.meta.url),
);

export function shebangFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\S*?(?:env\s+(?:-S\s+)?)?node\b(.*)$/.exec(first);
  return m?.[1]?.trim() ? m[1].trim().split(/\s+/) : [];
}

/**
 * A real `supervisor start` (its own process, the bin's node flags, dashboard on a free port)
 * on a repository; the benchmark talks to it as other processes do: issues and the agent count
 * through SQLite (like `supervisor issue add` and `supervisor scale`), runners through Redis.
 */
export class BinSupervisor {
  private output = '';
  readonly exited: Promise<void>;

  private constructor(
    readonly ctx: Context,
    readonly child: ChildProcess,
    readonly redis: Redis,
    readonly prefix: string,
    private readonly redisUrl: string,
  ) {
    child.stderr?.on(
      'data',
      (d: Buffer) => (this.output = (this.output + d.toString()).slice(-8000)),
    );
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(
    repoDir: string,
    prefix: string,
    agentCommand: string,
    opts: {
      agents?: number;
      env?: Record<string, string>;
      /** Another Redis than the shared one (the lost-host row's, reachable from a namespace). */
      redisUrl?: string;
    } = {},
  ): Promise<BinSupervisor> {
    const redisUrl = opts.redisUrl ?? REDIS_URL;
    const env = {
      ...supervisorEnv(prefix, agentCommand, opts.env),
      REDIS_URL: redisUrl,
      SUPERVISOR_DASHBOARD_PORT: '0',
    };
    const ctx = await openContext({ repo: repoDir, init: true, env });
    const extraFlags =
      process.env.BENCH_SUPERVISOR_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
    const child = spawn(
      process.execPath,
      [
        ...shebangFlags(CLI),
        ...extraFlags,
        CLI,
        'start',
        '--agents',
        String(opts.agents ?? 0),
      ],
      {
        cwd: repoDir,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    const sup = new BinSupervisor(
      ctx,
      child,
      connect(redisUrl),
      prefix,
      redisUrl,
    );
    await waitUntil(
      () => {
        if (child.exitCode !== null)
          throw new Error(`supervisor exited during start:\n${sup.output}`);
        const info = runningDaemon(ctx.paths.pidFile);
        return (
          info !== undefined && info.pid === child.pid && info.ready === true
        );
      },
      'the supervisor to be ready',
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    return sup;
  }

  registry(): Promise<Map<string, RegisteredAgent>> {
    return readRegistry(this.redis, this.prefix, this.ctx.queueName, 10_000);
  }

  /** Resolves once exactly `n` runners report themselves idle. */
  async idle(n: number, timeoutMs = 120_000): Promise<void> {
    await waitUntil(
      async () => {
        if (this.child.exitCode !== null)
          throw new Error(`supervisor exited:\n${this.output}`);
        const reg = await this.registry();
        return (
          reg.size === n && [...reg.values()].every((a) => a.state === 'idle')
        );
      },
      `${n} idle runners`,
      { timeoutMs, intervalMs: 10 },
    );
  }

  /** As `supervisor scale n` sets it (the supervisor notices the write at once). */
  scale(n: number): void {
    setSetting(this.ctx.db, DESIRED_KEY, String(n));
  }

  /** Adds issues in one transaction, as `supervisor issue add` (another process) does. */
  addIssues(titles: readonly string[], body = ''): number[] {
    const ids: number[] = [];
    this.ctx.db.transaction(() => {
      for (const title of titles)
        ids.push(this.ctx.issues.add({ title, body }).id);
    })();
    return ids;
  }

  /** Polls SQLite until `fn` holds. */
  until<T>(
    fn: () => T,
    what: string,
    intervalMs = 5,
    timeoutMs = 300_000,
  ): Promise<NonNullable<T>> {
    return waitUntil(
      () => {
        if (this.child.exitCode !== null)
          throw new Error(`supervisor exited:\n${this.output}`);
        return fn();
      },
      what,
      { intervalMs, timeoutMs },
    );
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
    await this.exited;
    this.redis.disconnect();
    this.ctx.close();
    await deletePrefix(this.prefix, this.redisUrl);
  }
}

export const RAW_WORKER = fileURLToPath(
  new URL('../raw/worker.js', import.meta.url),
);

/** A message from the raw worker over IPC: `type` plus row-specific fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RawMessage = any;

/** A raw BullMQ worker process (bench/raw/worker.ts) that talks back over IPC. */
export class RawWorkerProcess {
  readonly exited: Promise<void>;
  private readonly listeners = new Set<(m: RawMessage) => void>();

  constructor(readonly child: ChildProcess) {
    child.on('message', (m) => {
      for (const l of this.listeners) l(m);
    });
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  /** `wrapper`: a command that runs it elsewhere (the second host's `ip netns exec …`). */
  static async start(
    config: Record<string, unknown>,
    wrapper: readonly string[] = [],
  ): Promise<RawWorkerProcess> {
    // The node flags our runners get, so both sides of a row run the same V8 heap policy.
    const env = { ...process.env, BENCH_RAW_CONFIG: JSON.stringify(config) };
    const stdio = ['ignore', 'inherit', 'inherit', 'ipc'] as const;
    const child = wrapper.length
      ? spawn(
          wrapper[0]!,
          [
            ...wrapper.slice(1),
            process.execPath,
            ...RUNNER_NODE_FLAGS,
            RAW_WORKER,
          ],
          { env, stdio: [...stdio] },
        )
      : fork(RAW_WORKER, [], {
          execArgv: [...RUNNER_NODE_FLAGS],
          env,
          stdio: [...stdio],
        });
    const w = new RawWorkerProcess(child);
    await w.next((m) => m.type === 'ready');
    return w;
  }

  on(listener: (m: RawMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  next(
    match: (m: RawMessage) => boolean,
    timeoutMs = 120_000,
  ): Promise<RawMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error('raw worker did not answer in time'));
      }, timeoutMs);
      const off = this.on((m) => {
        if (!match(m)) return;
        clearTimeout(timer);
        off();
        resolve(m);
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.send({ type: 'stop' });
    await this.exited;
  }
}

/** Resident set size of a process in bytes (VmRSS), and its peak (VmHWM). */
export function rssOf(pid: number): { rss: number; hwm: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string) =>
      Number(
        new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ??
          Number.NaN,
      ) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN };
  }
}
