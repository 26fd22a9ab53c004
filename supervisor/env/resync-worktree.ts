#!/usr/bin/env node
/**
 * The before-job step that keeps a slot's ignored files what `.worktreeinclude` says: listed
 * files re-synced from the main worktree (size and time checked, copied only when changed),
 * every other ignored file the last agent left removed. The runner runs it in the slot's
 * worktree after it claimed a job and before the agent starts.
 *   SUPERVISOR_INCLUDE_ROOT  the main worktree (the repository root)
 */
import { coerceError } from '../errors.js';
import { describeSync, resyncWorktree } from './worktreeinclude.js';

async function main(): Promise<void> {
  const root = process.env.SUPERVISOR_INCLUDE_ROOT;
  if (!root) throw new Error('SUPERVISOR_INCLUDE_ROOT must be set');
  const summary = await resyncWorktree(root, process.cwd());
  process.stdout.write(`.worktreeinclude: ${describeSync(summary)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${coerceError(err).message}\n`);
  process.exit(1);
});
