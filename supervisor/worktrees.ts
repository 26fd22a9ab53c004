import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { agentBranch, baseRefOf } from '../contract/job.js';
import { SupervisorError } from './errors.js';
import { gitAt, type RepoPaths } from './repo.js';

export interface SlotWorktree {
  path: string;
  branch: string;
}

export function worktreeFor(paths: RepoPaths, agentId: string): SlotWorktree {
  return {
    path: join(paths.worktreesDir, agentId),
    branch: agentBranch(agentId),
  };
}

/** Creates the slot's worktree on its branch, once; a healthy existing one is reused as is. */
export async function ensureWorktree(
  paths: RepoPaths,
  agentId: string,
  baseBranch: string,
): Promise<SlotWorktree & { created: boolean }> {
  const wt = worktreeFor(paths, agentId);
  const repo = gitAt(paths.root);
  if (existsSync(join(wt.path, '.git'))) {
    try {
      const top = (
        await gitAt(wt.path).raw(['rev-parse', '--show-toplevel'])
      ).trim();
      if (top === wt.path) return { ...wt, created: false };
    } catch {
      /* broken: recreated below */
    }
  }
  try {
    rmSync(wt.path, { recursive: true, force: true });
    await repo.raw(['worktree', 'prune']);
    // The checkout runs filters: those the configuration defines are switched off.
    await gitAt(paths.root, { disarmDrivers: true }).raw([
      'worktree',
      'add',
      '--force',
      '--quiet',
      '-B',
      wt.branch,
      wt.path,
      baseRefOf(baseBranch),
    ]);
  } catch (cause) {
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `could not create the worktree of ${agentId} at ${wt.path}: ${(cause as Error).message.trim()}`,
      {
        hint: `check that branch "${baseBranch}" exists and the disk is not full`,
        cause,
      },
    );
  }
  return { ...wt, created: true };
}

/** Removes a slot's worktree and its `agent/*` branch; `issue/*` branches are never touched. */
export async function removeWorktree(
  paths: RepoPaths,
  agentId: string,
): Promise<void> {
  const wt = worktreeFor(paths, agentId);
  const repo = gitAt(paths.root);
  await repo
    .raw(['worktree', 'remove', '--force', wt.path])
    .catch(() => undefined);
  rmSync(wt.path, { recursive: true, force: true });
  await repo.raw(['worktree', 'prune']).catch(() => undefined);
  if (!wt.branch.startsWith('agent/')) return;
  await repo.raw(['branch', '-D', wt.branch]).catch(() => undefined);
}
