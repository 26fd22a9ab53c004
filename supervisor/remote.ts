import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { RunnerGitSchema, type RunnerGit } from '../contract/job.js';
import type { Context } from './context.js';
import type { ResultRefs } from './results.js';

/** Path of the repository served by the dashboard (fetch; result pushes go to results.git). */
export const SERVED_REPO_PATH = '/git/repo.git';

/** The git remote remote runners use when no `git.remoteUrl` is configured: the dashboard's. */
export function servedGitUrl(dashboardUrl: string): string {
  return new URL(SERVED_REPO_PATH, dashboardUrl).toString();
}

/**
 * Git access of a runner this supervisor starts on this host. `shared` (default): a worktree of
 * this repository. `remote` (`git.runners`): its own clone under `.supervisor/runner-cache`,
 * exactly as on another host, fetching from `git.remoteUrl` or this repository's path and
 * pushing result refs to `git.remoteUrl` or the results repository.
 */
export function localRunnerGit(
  ctx: Context,
  agentId: string,
  results: ResultRefs,
): { git: RunnerGit; worktreePath: string } | undefined {
  const g = ctx.config.git;
  if (g.runners !== 'remote') return undefined;
  const cacheDir = join(ctx.paths.stateDir, 'runner-cache');
  const worktreePath = join(cacheDir, agentId, 'worktree');
  mkdirSync(worktreePath, { recursive: true });
  const git = RunnerGitSchema.parse({
    mode: 'remote',
    url: g.remoteUrl ?? ctx.paths.root,
    ...(g.remoteUrl ? {} : { pushUrl: results.resultsRepo }),
    cacheDir,
    timeoutMs: g.timeout,
  });
  return { git, worktreePath };
}
