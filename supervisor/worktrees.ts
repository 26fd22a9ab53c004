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

/**
 * `git worktree add`s run in parallel in one repository (`scale N` makes N slots at once) race:
 * each reads every other worktree's admin files, and dies on a `commondir` that another add has
 * created but not yet written ("fatal: failed to read .git/worktrees/<x>/commondir: Success").
 * Seen on `scale 10` of a 5,000-file repository: the slot crashed and waited out a restart
 * backoff. A failed add is tried again, after 0.1, 0.2, 0.4 and 0.8 s (the other add writes the
 * file at once; a failure that stays costs 1.5 s more).
 */
const ADD_ATTEMPTS = 5;

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
    for (let attempt = 1; ; attempt++) {
      rmSync(wt.path, { recursive: true, force: true });
      await repo.raw(['worktree', 'prune']);
      try {
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
        break;
      } catch (err) {
        if (attempt >= ADD_ATTEMPTS) throw err;
        await new Promise((r) => setTimeout(r, 100 * 2 ** (attempt - 1)));
      }
    }
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
