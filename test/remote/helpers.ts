import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, AGENT_COMMAND, WatchedProcess } from '../helpers/cli.js';

export const RUNNER = join(ROOT, 'dist/agent-runner/main.js');

export interface PlainRunnerOptions {
  agentId: string;
  host: string;
  redisUrl: string;
  prefix: string;
  queueName: string;
  /** Remote git mode: where to fetch from / push to, and the runner-local cache. */
  gitUrl: string;
  pushUrl?: string;
  cacheDir: string;
  credentialsFile?: string;
  gitTimeoutMs?: number;
  baseBranch?: string;
}

/** The configuration a user writes for a runner on another host (paths derived from cacheDir). */
export function plainRunnerConfig(
  o: PlainRunnerOptions,
): Record<string, unknown> {
  return {
    agentId: o.agentId,
    host: o.host,
    redisUrl: o.redisUrl,
    prefix: o.prefix,
    queueName: o.queueName,
    baseBranch: o.baseBranch ?? 'main',
    agentCommand: AGENT_COMMAND,
    lease: {
      lockDurationMs: 2000,
      stalledIntervalMs: 1000,
      maxStalledCount: 2,
      progressTimeoutMs: 60_000,
      killGraceMs: 1000,
    },
    heartbeatMs: 300,
    git: {
      mode: 'remote',
      url: o.gitUrl,
      ...(o.pushUrl ? { pushUrl: o.pushUrl } : {}),
      cacheDir: o.cacheDir,
      ...(o.credentialsFile ? { credentialsFile: o.credentialsFile } : {}),
      timeoutMs: o.gitTimeoutMs ?? 3000,
    },
  };
}

/** A runner process started the way a user starts one on another host. */
export class RunnerProcess extends WatchedProcess {
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.running) this.child.kill(signal);
    return this.exited;
  }
}

function runnerEnv(
  config: Record<string, unknown>,
  env: Record<string, string>,
): Record<string, string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (
      v === undefined ||
      k.startsWith('SUPERVISOR_') ||
      k === 'REDIS_URL' ||
      k.startsWith('AGENT_')
    )
      continue;
    base[k] = v;
  }
  return { ...base, ...env, SUPERVISOR_RUNNER_CONFIG: JSON.stringify(config) };
}

/** Starts `node dist/agent-runner/main.js` on this host. */
export function startPlainRunner(
  config: Record<string, unknown>,
  env: Record<string, string> = {},
): RunnerProcess {
  return new RunnerProcess(
    spawn(process.execPath, [RUNNER], {
      env: runnerEnv(config, env),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/** Starts a runner through a wrapper command (e.g. `ip netns exec … unshare -m …`). */
export function startWrappedRunner(
  wrapper: string[],
  config: Record<string, unknown>,
  env: Record<string, string> = {},
): RunnerProcess {
  const [cmd, ...args] = wrapper;
  return new RunnerProcess(
    spawn(cmd!, [...args, process.execPath, RUNNER], {
      env: runnerEnv(config, env),
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}
