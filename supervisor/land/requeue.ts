import type { LandingFeedback } from '../../contract/job.js';
import type { Context } from '../context.js';
import { withChange } from '../store/history.js';
import type { Issue } from '../store/issues.js';
import { LandingStore, type Landing } from './landings.js';

/**
 * Sends an issue whose landing conflicted or failed its check back to the agents: open again
 * (the feeder replaces its finished job), one more requeue counted. Its branch issue/<id> stays
 * at the earlier result until a new one lands.
 */
export function requeueAfterLanding(
  ctx: Context,
  issue: Issue,
  landing: Landing,
): boolean {
  return withChange(
    ctx.db,
    {
      actor: 'lander',
      reason: `sent back to an agent (requeue ${issue.requeues + 1} of ${ctx.config.land.maxRequeues}) after landing attempt ${landing.attempt}: ${landing.state === 'conflict' ? `conflicts in ${landing.conflictFiles.join(', ')}` : 'land.check failed'}`,
    },
    () => {
      const now = ctx.issues.require(issue.id);
      if (now.status !== 'conflict' && now.status !== 'check-failed')
        return false;
      ctx.issues.update(issue.id, {
        status: 'open',
        requeues: now.requeues + 1,
      });
      return true;
    },
  );
}

/** The job data `landing` of a requeued issue: from its last landing attempt. */
export function landingFeedbackFor(
  ctx: Context,
): (issue: Issue) => LandingFeedback | undefined {
  const store = new LandingStore(ctx.db);
  return (issue) => {
    const l = store.last(issue.id);
    if (!l || (l.state !== 'conflict' && l.state !== 'check-failed'))
      return undefined;
    if (!l.sourceSha) return undefined;
    return {
      reason: l.state,
      previousResultSha: l.sourceSha,
      baseBranch: l.baseBranch,
      conflictFiles: l.conflictFiles,
      checkLog: (l.checkLog ?? '').slice(-16 * 1024),
      landAttempt: l.attempt,
    };
  };
}
