import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { agentBranch, slotId } from '../contract/job.js';

/**
 * Fills in what a runner started outside the supervisor derives for itself, before the
 * configuration is validated:
 * - its slot id from the environment: SUPERVISOR_AGENT_ID (`agent-3`, `agent-003` or `3`, e.g.
 *   from a Swarm template `agent-{{.Task.Slot}}`), or SUPERVISOR_POD_NAME (a StatefulSet pod
 *   `runners-2` is slot 3: ordinal + 1); SUPERVISOR_SLOT_OFFSET shifts either (runners on
 *   another host at agent-101…, clear of the supervisor's own slots);
 * - its host name for status: SUPERVISOR_HOST, else the machine's;
 * - Redis: SUPERVISOR_REDIS_URL, when set, replaces `redisUrl` (a Kubernetes ConfigMap key);
 * - in remote git mode, the paths it was not given, under the git cache directory.
 * Returns the input unchanged where it already says.
 */
export function completeRunnerConfig(
  input: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    host: env.SUPERVISOR_HOST || hostname(),
    ...input,
  };
  if (env.SUPERVISOR_HOST) out.host = env.SUPERVISOR_HOST;
  if (env.SUPERVISOR_REDIS_URL) out.redisUrl = env.SUPERVISOR_REDIS_URL;
  const n = slotFromEnv(env);
  if (n !== undefined) {
    out.agentId = slotId(n);
    out.branch = agentBranch(slotId(n));
  }
  const git = input.git as { mode?: string; cacheDir?: unknown } | undefined;
  if (
    git?.mode === 'remote' &&
    typeof git.cacheDir === 'string' &&
    typeof out.agentId === 'string'
  ) {
    const id = out.agentId;
    const slotDir = join(git.cacheDir, id);
    if (n !== undefined || out.worktreePath === undefined)
      out.worktreePath = join(slotDir, 'worktree');
    if (n !== undefined || out.logDir === undefined)
      out.logDir = join(slotDir, 'logs');
    if (n !== undefined || out.runDir === undefined)
      out.runDir = join(slotDir, 'run');
    out.repoPath ??= join(git.cacheDir, 'repo.git');
    out.branch ??= agentBranch(id);
  }
  return out;
}

export class SlotIdError extends Error {}

/**
 * The runner's configuration as given: JSON in SUPERVISOR_RUNNER_CONFIG, or in the file named by
 * SUPERVISOR_RUNNER_CONFIG_FILE (a Docker secret, a Kubernetes ConfigMap). Completed as above.
 */
export function readRunnerConfigInput(
  env: NodeJS.ProcessEnv = process.env,
): Record<string, unknown> {
  let raw = env.SUPERVISOR_RUNNER_CONFIG;
  const file = env.SUPERVISOR_RUNNER_CONFIG_FILE;
  if (!raw && file) {
    try {
      raw = readFileSync(file, 'utf8');
    } catch (err) {
      throw new SlotIdError(
        `cannot read SUPERVISOR_RUNNER_CONFIG_FILE ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  if (!raw)
    throw new SlotIdError(
      'SUPERVISOR_RUNNER_CONFIG (or SUPERVISOR_RUNNER_CONFIG_FILE) is not set; the supervisor starts runners with it',
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new SlotIdError(
      `the runner configuration is not valid JSON: ${(err as Error).message}`,
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new SlotIdError('the runner configuration must be a JSON object');
  return completeRunnerConfig(parsed as Record<string, unknown>, env);
}

function slotFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const offset = env.SUPERVISOR_SLOT_OFFSET
    ? Number(env.SUPERVISOR_SLOT_OFFSET)
    : 0;
  if (!Number.isInteger(offset) || offset < 0)
    throw new SlotIdError(
      `SUPERVISOR_SLOT_OFFSET must be a whole number ≥ 0, got "${env.SUPERVISOR_SLOT_OFFSET}"`,
    );
  let n: number | undefined;
  const id = env.SUPERVISOR_AGENT_ID?.trim();
  const pod = env.SUPERVISOR_POD_NAME?.trim();
  if (id) {
    const m = /^(?:agent-)?(\d{1,3})$/.exec(id);
    if (!m?.[1] || Number(m[1]) < 1)
      throw new SlotIdError(
        `SUPERVISOR_AGENT_ID must be agent-N or N with N in 1..999, got "${id}"`,
      );
    n = Number(m[1]);
  } else if (pod) {
    const m = /-(\d{1,3})$/.exec(pod);
    if (!m?.[1])
      throw new SlotIdError(
        `SUPERVISOR_POD_NAME must end in -<ordinal> (a StatefulSet pod), got "${pod}"`,
      );
    n = Number(m[1]) + 1;
  }
  if (n === undefined) return undefined;
  if (n + offset > 999)
    throw new SlotIdError(`slot ${n} + offset ${offset} is above 999`);
  return n + offset;
}
