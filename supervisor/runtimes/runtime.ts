import type { RunnerConfig } from '../../contract/job.js';

export interface RunnerSpec {
  agentId: string;
  config: RunnerConfig;
  /** The predecessor is known to be dead: the new runner may take the slot over at once. */
  takeover: boolean;
}

export interface RunnerExit {
  agentId: string;
  code: number | null;
  signal: string | null;
  /** A short reason: "exited with code 1", "out of memory", ... */
  reason: string;
}

export interface RuntimeAgent {
  agentId: string;
  pid?: number;
  containerId?: string;
  health?: string;
  startedAt: number;
  /** Runtimes that scale as a whole (`scaleTo`): the slot's state and why it crashed. */
  state?: 'starting' | 'running' | 'crashed' | undefined;
  lastError?: string;
}

/**
 * Where runners run. The process runtime (child processes) is the embedded default; the
 * Docker runtime puts each runner in a container. The scaler only speaks this interface.
 */
export interface AgentRuntime {
  readonly kind: 'process' | 'docker' | 'swarm';
  /**
   * Runtimes that scale as a whole (a Swarm service) implement this instead of per-slot
   * start/stop: make `desired` runners exist (0: none), return them as slots.
   */
  scaleTo?(desired: number): Promise<RuntimeAgent[]>;
  /** Re-attaches to runners that outlived a previous supervisor; returns the slots found. */
  adopt(agentIds: readonly string[]): Promise<RuntimeAgent[]>;
  start(spec: RunnerSpec): Promise<RuntimeAgent>;
  /** Graceful stop: SIGTERM (the runner hands its job back), SIGKILL after `graceMs`. */
  stop(agentId: string, graceMs: number): Promise<void>;
  /** Kills the agent process of a slot, only if it still runs the given attempt. */
  killAgent(
    agentId: string,
    match?: { jobId: string; attempt: number },
  ): Promise<boolean>;
  /** Called once per runner that ends without being asked to. */
  onExit(listener: (exit: RunnerExit) => void): void;
  /**
   * Whether a runner that registered itself in Redis is the one this runtime started for the
   * slot (default: same pid). Containers have pids of their own, so they tell by another mark.
   */
  owns?(
    agentId: string,
    registered: { host: string; pid: number | null },
  ): boolean;
  /** Returns the last lines of a slot's runner log. */
  logFile(agentId: string): string | undefined;
  close(): Promise<void>;
}
