import { coerceError } from '../contract/errors.js';
import type { RunnerConfig } from '../contract/job.js';
import type { Log } from './current-job.js';
import { GitRemoteError } from './remote-clone.js';
import type { Workspace } from './workspace.js';

/** The slot's worktree cannot be prepared, even after a repair: the slot is broken. */
export class SlotBrokenError extends Error {
  override name = 'SlotBrokenError';
}

/**
 * Resets the workspace for a job. When that fails (an agent wrote garbage into its worktree's
 * HEAD, a stale lock, a deleted admin file), the workspace is repaired and tried once more; what
 * still fails is the slot's fault, never the (`SlotBrokenError`). A git remote that is
 * away (`GitRemoteError`) is passed on as it is: it has its own hand-back.
 */
export async function prepareWorkspace(
  workspace: Workspace,
  cfg: Pick<RunnerConfig, 'agentId' | 'baseBranch'>,
  log: Log,
  /** `git clean -e` patterns of ignored files to keep; without, ignored files stay. */
  keepIgnored?: readonly string[],
): Promise<string> {
  let first: Error;
  try {
    return await workspace.prepare(cfg.baseBranch, keepIgnored);
  } catch (err) {
    if (err instanceof GitRemoteError) throw err;
    first = coerceError(err);
  }
  const why = first.message.trim().split('\n')[0] ?? '';
  if (!workspace.repair)
    throw new SlotBrokenError(
      `${cfg.agentId}'s workspace cannot be prepared: ${why}`,
    );
  log('the worktree cannot be prepared: repairing it', { error: why });
  try {
    await workspace.repair(cfg.baseBranch);
    const baseSha = await workspace.prepare(cfg.baseBranch, keepIgnored);
    log('worktree repaired');
    return baseSha;
  } catch (err) {
    if (err instanceof GitRemoteError) throw err;
    const again = coerceError(err).message.trim().split('\n')[0] ?? '';
    throw new SlotBrokenError(
      `${cfg.agentId}'s worktree cannot be prepared (${why}), and repairing it failed (${again})`,
    );
  }
}
