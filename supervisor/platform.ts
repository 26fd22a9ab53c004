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

/** Per-agent budget by platform (the seed's limits): Linux 12 GiB / 4 CPUs, macOS 3 GiB / 2 CPUs. */
export function detectPlatform(
  overrides: {
    memoryPerAgent?: number | undefined;
    cpusPerAgent?: number | undefined;
    maxAgents?: number | undefined;
  } = {},
): Platform {
  const platform = os.platform();
  const isMac = platform === 'darwin';
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  const memoryBytes = os.totalmem();
  const memoryPerAgentBytes = Math.min(
    overrides.memoryPerAgent ?? (isMac ? 3 : 12) * GiB,
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
