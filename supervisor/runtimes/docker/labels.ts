/**
 * Labels on everything the supervisor creates in Docker. Status, scale, stop, logs and
 * cleanup find containers by these, never by name.
 */
export const LABELS = {
  /** Always `agent-supervisor` (also on the compose files' containers). */
  project: 'dev.agent-supervisor.project',
  /** `runner` for agent-runner containers (`infra` for infra/docker-compose.yml). */
  role: 'dev.agent-supervisor.role',
  /** The repository's short id (the hash of its git directory, as in queue names). */
  repo: 'dev.agent-supervisor.repo',
  /** The repository's path on the host, for people reading `docker ps`. */
  repoPath: 'dev.agent-supervisor.repo-path',
  /** The slot, e.g. `agent-001`. */
  slot: 'dev.agent-supervisor.slot',
} as const;

export const PROJECT = 'agent-supervisor';

/** The labels that select the runner containers of one repository (and optionally one slot). */
export function runnerSelector(
  repoId: string,
  agentId?: string,
): Record<string, string> {
  return {
    [LABELS.project]: PROJECT,
    [LABELS.role]: 'runner',
    [LABELS.repo]: repoId,
    ...(agentId ? { [LABELS.slot]: agentId } : {}),
  };
}

/** The repository's own network, which its runner containers join unless docker.network says otherwise. */
export function repoNetworkName(repoId: string): string {
  return `agent-supervisor-${repoId}`;
}

/** The labels of a repository's network. */
export function networkLabels(repoId: string): Record<string, string> {
  return {
    [LABELS.project]: PROJECT,
    [LABELS.role]: 'network',
    [LABELS.repo]: repoId,
  };
}

/** The name a runner container gets (for `docker ps`; never used to find it). */
export function containerName(repoId: string, agentId: string): string {
  return `agent-supervisor-${repoId}-${agentId}`;
}
