import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist/supervisor/cli/main.js');
export const AGENT = join(ROOT, 'test/fixtures/agent.mjs');
export const AGENT_COMMAND = `node ${AGENT}`;

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A fresh Redis namespace per test, short leases, and a scripted agent. */
export function testEnv(
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    SUPERVISOR_PREFIX: `t${randomBytes(5).toString('hex')}`,
    SUPERVISOR_AGENT_COMMAND: AGENT_COMMAND,
    SUPERVISOR_MAX_AGENTS: '10',
    SUPERVISOR_LOCK_DURATION: '2000',
    SUPERVISOR_STALLED_INTERVAL: '1000',
    SUPERVISOR_HEARTBEAT: '300',
    SUPERVISOR_RECONCILE_INTERVAL: '1000',
    SUPERVISOR_FEED_INTERVAL: '100',
    SUPERVISOR_BACKOFF: '200',
    SUPERVISOR_RESTART_BACKOFF: '200',
    SUPERVISOR_KILL_GRACE: '1000',
    SUPERVISOR_STOP_GRACE: '10000',
    SUPERVISOR_DASHBOARD_PORT: '0',
    // The shared test Redis has no password: accepted explicitly where runners run in containers
    // or on other hosts (test/security/queue-isolation.test.ts checks the refusal).
    SUPERVISOR_ALLOW_UNAUTHENTICATED_REDIS: '1',
    ...extra,
  };
}

function cleanParentEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env))
    if (
      k.startsWith('SUPERVISOR_') ||
      k === 'REDIS_URL' ||
      k === 'POSTGRES_URL'
    )
      delete env[k];
  return env;
}

export function runCli(
  args: string[],
  opts: {
    cwd: string;
    env?: Record<string, string>;
    input?: string | Buffer;
    timeoutMs?: number;
  },
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: opts.cwd,
      env: { ...cleanParentEnv(), ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `supervisor ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

export async function cliJson<T = any>(
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<T> {
  const r = await runCli([...args, '--json'], opts);
  if (r.code !== 0)
    throw new Error(
      `supervisor ${args.join(' ')} exited ${r.code}: ${r.stderr}`,
    );
  return JSON.parse(r.stdout) as T;
}

/** A child process whose output the test collects and whose exit it can await. */
export class WatchedProcess {
  output = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }
}

/** A foreground `supervisor start` in the background of the test. */
export class RunningSupervisor extends WatchedProcess {
  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null)
      this.child.kill('SIGTERM');
    return this.exited;
  }
}

/** Spawns `supervisor start` without waiting for it to become ready. */
export function spawnSupervisor(
  dir: string,
  env: Record<string, string>,
  args: string[] = [],
): RunningSupervisor {
  const child = spawn(process.execPath, [CLI, 'start', ...args], {
    cwd: dir,
    env: { ...cleanParentEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new RunningSupervisor(child);
}

/** Waits until a spawned supervisor reports its control plane up (its pid file says ready). */
export async function waitReady(
  sup: RunningSupervisor,
  dir: string,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<RunningSupervisor> {
  const pidFile = join(dir, '.supervisor', 'supervisor.pid');
  await waitFor(
    () => {
      if (sup.child.exitCode !== null)
        throw new Error(
          `supervisor exited early (${sup.child.exitCode}):\n${sup.output}`,
        );
      if (!existsSync(pidFile)) return false;
      try {
        const info = JSON.parse(readFileSync(pidFile, 'utf8')) as {
          pid: number;
          ready?: boolean;
        };
        return info.pid === sup.child.pid && info.ready === true;
      } catch {
        return false;
      }
    },
    { timeoutMs, what: 'supervisor ready' },
  );
  return sup;
}

export async function startSupervisor(
  dir: string,
  env: Record<string, string>,
  args: string[] = [],
): Promise<RunningSupervisor> {
  return waitReady(spawnSupervisor(dir, env, args), dir);
}

/**
 * How long a wait gives up after, unless told: an upper bound for a stuck test, not a speed
 * claim (2-core machines under a load average of 20+ were measured taking over 30 s to start
 * a supervisor and its first agent).
 */
export const DEFAULT_WAIT_MS = 120_000;

/** Polls a condition (an event wait for things that only expose state). */
type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>;

export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<Truthy<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? DEFAULT_WAIT_MS);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Truthy<T>;
    } catch (err) {
      if ((err as Error).message.startsWith('supervisor exited early'))
        throw err;
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${(last as Error).message}` : ''}`,
      );
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}
