import os from 'node:os';

export interface Platform {
  os: 'linux' | 'darwin' | string;
  arch: string;
  cpus: number;
  memoryBytes: number;
  freeMemoryBytes: number;
  memoryPerAgentBytes: number;
  cpusPerAgent: number;
  maxAgents: number;
}

const GiB = 1024 ** 3;

/**
 * A CLI agent run as a process (Claude Code, Codex, Aider) with the runner and the tools it calls:
 * Anthropic lists "4 GB+ RAM" for Claude Code (docs.anthropic.com/en/docs/claude-code/setup), and
 * the runner itself stays under 100 MB (docs/agents.md).
 */
export const PROCESS_MEMORY_PER_AGENT = 4 * GiB;

/**
 * Per-agent budget by runtime and platform. Containers keep the seed's limits (Linux 12 GiB / 4
 * CPUs, macOS 3 GiB / 2 CPUs); the process runtime budgets what a CLI agent needs (4 GiB).
 */
export function detectPlatform(
  overrides: {
    memoryPerAgent?: number | undefined;
    cpusPerAgent?: number | undefined;
    maxAgents?: number | undefined;
    runtime?: string | undefined;
  } = {},
): Platform {
  const platform = os.platform();
  const isMac = platform === 'darwin';
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  const memoryBytes = os.totalmem();
  const memoryPerAgentBytes = Math.min(
    overrides.memoryPerAgent ??
      (overrides.runtime === 'process' || overrides.runtime === undefined
        ? PROCESS_MEMORY_PER_AGENT
        : (isMac ? 3 : 12) * GiB),
    memoryBytes,
  );
  // Docker refuses --cpus above the host's count, so the budget is clamped to it.
  const cpusPerAgent = Math.min(
    overrides.cpusPerAgent ?? (isMac ? 2 : 4),
    cpus,
  );
  const maxAgents =
    overrides.maxAgents ??
    Math.max(1, Math.floor(memoryBytes / memoryPerAgentBytes));
  return {
    os: platform,
    arch: os.arch(),
    cpus,
    memoryBytes,
    freeMemoryBytes: os.freemem(),
    memoryPerAgentBytes,
    cpusPerAgent,
    maxAgents,
  };
}
