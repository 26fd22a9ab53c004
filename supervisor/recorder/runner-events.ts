import { attemptRef, type RunnerEvent } from '../../contract/job.js';
import { gitAt } from '../repo.js';
import { SETTLED_STATUSES } from '../store/issues.js';
import { withOutputTail } from './output-tail.js';
import { usageFields, type Run } from '../store/runs.js';
import type { RecorderContext } from './context.js';
import type { ForeignJobs } from './foreign-jobs.js';
import { recordPause } from '../pause.js';

/** Records what runners report on the event stream: claims, releases, failed attempts, lost leases. */
export class RunnerEventRecorder {
  constructor(
    private readonly ctx: RecorderContext,
    private readonly foreign: ForeignJobs,
  ) {}

  async record(ev: RunnerEvent): Promise<void> {
    const issue = await this.foreign.issueForJob(ev.jobId, true);
    if (!issue) return;
    const { runs, issues, db } = this.ctx.o;
    const terminal = SETTLED_STATUSES.has(issue.status);
    switch (ev.type) {
      case 'claim': {
        const superseded: Run[] = [];
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            startedAt: ev.at,
            outcome: 'running',
            logPath: ev.logPath,
            baseSha: ev.baseSha ?? null,
          });
          for (const r of runs.running(ev.jobId)) {
            if (r.attempt === ev.attempt) continue;
            runs.upsert(issue.id, r.jobId, r.attempt, {
              outcome: 'lost',
              finishedAt: ev.at,
              error: `superseded: re-claimed by ${ev.agentId} (attempt ${ev.attempt})`,
              errorKind: 'superseded',
            });
            superseded.push(r);
          }
          if (!terminal)
            issues.update(issue.id, {
              status: 'in_progress',
              agent: ev.agentId,
              attempts: Math.max(issue.attempts, ev.attempt),
            });
          // A claim recorded before the feeder marked the issue queued (the supervisor died
          // between adding and marking): the job id keeps it visible to the vanished-job check.
          if (issue.jobId === null)
            issues.setJobIdIfMissing(issue.id, ev.jobId);
        })();
        for (const r of superseded)
          await this.ctx.supersede(r, `re-claimed by ${ev.agentId}`);
        break;
      }
      case 'release':
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            outcome: 'released',
            finishedAt: ev.at,
            error: ev.reason,
            ...(ev.kind ? { errorKind: ev.kind } : {}),
          });
          if (issue.status === 'in_progress' && issue.agent === ev.agentId)
            issues.update(issue.id, { status: 'queued' });
        })();
        break;
      case 'attempt-failed': {
        if (ev.kind === 'no-progress') this.ctx.stats.timeouts += 1;
        else if (ev.kind === 'out-of-memory') this.ctx.stats.oomKills += 1;
        const error = withOutputTail(ev.error, ev.logPath);
        // Git first (the work kept as a ref), then SQLite, as for results.
        const work =
          ev.work &&
          (await this.keepWork(issue.id, ev.attempt, ev.work.commitSha))
            ? ev.work
            : undefined;
        db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            outcome: 'failed',
            finishedAt: ev.at,
            error,
            errorKind: ev.kind ?? null,
            exitCode: ev.exitCode,
            baseSha: ev.baseSha ?? null,
            logPath: ev.logPath ?? null,
            ...(work
              ? {
                  commitSha: work.commitSha,
                  filesChanged: work.filesChanged,
                  insertions: work.insertions,
                  deletions: work.deletions,
                }
              : {}),
            ...usageFields(ev.usage),
          });
          if (ev.kind) runs.refineJobFailed(ev.jobId, ev.attempt, ev.kind);
          if (!terminal)
            issues.update(issue.id, {
              error,
              ...(issue.agent === ev.agentId && issue.status === 'in_progress'
                ? { status: 'queued' as const }
                : {}),
            });
        })();
        break;
      }
      case 'usage-limit': {
        // The attempt was handed back unspent: the run is released, the issue waits again, and
        // the pause is recorded with the run (one transaction).
        const pause = db.transaction(() => {
          runs.upsert(issue.id, ev.jobId, ev.attempt, {
            agent: ev.agentId,
            outcome: 'released',
            finishedAt: ev.at,
            error: `usage limit (${ev.provider}): ${ev.reason}`,
            logPath: ev.logPath ?? null,
          });
          if (issue.status === 'in_progress' && issue.agent === ev.agentId)
            issues.update(issue.id, { status: 'queued' });
          return recordPause(db, {
            kind: 'usage-limit',
            reason: ev.reason,
            since: ev.at,
            until: ev.until,
            provider: ev.provider,
            agentId: ev.agentId,
          });
        })();
        this.ctx.o.log('usage limit reported: claiming paused', {
          agentId: ev.agentId,
          provider: ev.provider,
          until: new Date(pause.until ?? ev.until).toISOString(),
        });
        break;
      }
      case 'lease-lost': {
        this.ctx.stats.leaseLosses += 1;
        runs.upsert(issue.id, ev.jobId, ev.attempt, {
          agent: ev.agentId,
          outcome: 'lost',
          finishedAt: ev.at,
          error: 'lease lost: the runner could not renew its lock',
          errorKind: 'lease-lost',
        });
        break;
      }
    }
  }

  /**
   * A failed attempt's work as `refs/supervisor/attempts/<issue>/<attempt>` (a reviewer's `git
   * diff`): only a commit this repository has (a remote runner's stays in its clone).
   */
  private async keepWork(
    issueId: number,
    attempt: number,
    sha: string,
  ): Promise<boolean> {
    const git = gitAt(this.ctx.o.repoRoot);
    try {
      if ((await git.raw(['cat-file', '-t', sha])).trim() !== 'commit')
        return false;
      await git.raw(['update-ref', attemptRef(issueId, attempt), sha]);
      return true;
    } catch {
      return false;
    }
  }
}
