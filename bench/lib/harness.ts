import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openContext, type Context } from '../../supervisor/context.js';
import { Daemon } from '../../supervisor/daemon.js';
import { readRegistry, type RegisteredAgent } from '../../supervisor/registry.js';
import { ProcessRuntime } from '../../supervisor/runtimes/process.js';
import { openDatabase, type Db } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { deletePrefix, REDIS_URL } from './redis.js';

export type Log = (msg: string) => void;

/** Polls `fn` until it returns something truthy. */
export async function waitUntil<T>(fn: () => T | Promise<T>, what: string, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`benchmark timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}

/** Environment for our supervisor: the given prefix, defaults everywhere else (what users run). */
export function supervisorEnv(prefix: string, agentCommand: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL,
    SUPERVISOR_PREFIX: prefix,
    SUPERVISOR_AGENT_COMMAND: agentCommand,
    // Default max is memory ÷ 12 GiB per agent (2 here); the benchmark needs 10 slots.
    SUPERVISOR_MAX_AGENTS: '16',
    ...extra,
  };
}

/**
 * Our control plane in this process (as `supervisor start` runs it, without per-slot dev
 * environments), plus a second SQLite connection that adds issues the way the CLI does.
 */
export class OursHandle {
  private constructor(
    readonly ctx: Context,
    readonly daemon: Daemon,
    readonly writerDb: Db,
    readonly writer: IssueStore,
    readonly prefix: string,
    readonly log: string[],
  ) {}

  static async start(repoDir: string, prefix: string, agentCommand: string, opts: { agents?: number; env?: Record<string, string>; runnerScript?: string } = {}): Promise<OursHandle> {
    const ctx = await openContext({ repo: repoDir, init: true, env: supervisorEnv(prefix, agentCommand, opts.env) });
    const log: string[] = [];
    const runtime = opts.runnerScript ? new ProcessRuntime({ logDir: ctx.paths.logDir, runDir: ctx.paths.runDir, runnerScript: opts.runnerScript }) : undefined;
    const daemon = await Daemon.start(ctx, { agents: opts.agents ?? 0, log: (m, f) => log.push(`${m}${f ? ` ${JSON.stringify(f)}` : ''}`), ...(runtime ? { runtime } : {}) });
    const writerDb = openDatabase(ctx.paths.dbFile);
    return new OursHandle(ctx, daemon, writerDb, new IssueStore(writerDb), prefix, log);
  }

  registry(): Promise<Map<string, RegisteredAgent>> {
    return readRegistry(this.daemon.redis, this.prefix, this.ctx.queueName, 10_000);
  }

  /** Resolves once exactly `n` runners report themselves idle. */
  async idle(n: number, timeoutMs = 120_000): Promise<void> {
    await waitUntil(
      async () => {
        const reg = await this.registry();
        return reg.size === n && [...reg.values()].every((a) => a.state === 'idle');
      },
      `${n} idle runners`,
      { timeoutMs, intervalMs: 10 },
    );
  }

  /** Adds issues in one transaction from the second connection (like `supervisor issue add`). */
  addIssues(titles: readonly string[], body = ''): number[] {
    const ids: number[] = [];
    this.writerDb.transaction(() => {
      for (const title of titles) ids.push(this.writer.add({ title, body }).id);
    })();
    return ids;
  }

  async stop(): Promise<void> {
    await this.daemon.stop();
    this.writerDb.close();
    this.ctx.close();
    await deletePrefix(this.prefix);
  }
}

export const RAW_WORKER = fileURLToPath(new URL('../raw/worker.js', import.meta.url));

/** A raw BullMQ worker process (bench/raw/worker.ts) that talks back over IPC. */
export class RawWorkerProcess {
  readonly exited: Promise<void>;
  private readonly listeners = new Set<(m: any) => void>();

  constructor(readonly child: ChildProcess) {
    child.on('message', (m) => {
      for (const l of this.listeners) l(m);
    });
    this.exited = new Promise((r) => child.once('exit', () => r()));
  }

  static async start(config: Record<string, unknown>): Promise<RawWorkerProcess> {
    const child = fork(RAW_WORKER, [], { env: { ...process.env, BENCH_RAW_CONFIG: JSON.stringify(config) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const w = new RawWorkerProcess(child);
    await w.next((m) => m.type === 'ready');
    return w;
  }

  on(listener: (m: any) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  next(match: (m: any) => boolean, timeoutMs = 120_000): Promise<any> {
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
    const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: Number.NaN, hwm: Number.NaN };
  }
}
