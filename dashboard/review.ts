import { attemptRef } from '../contract/job.js';
import { landGit } from '../supervisor/land/git.js';
import {
  pairConflicts,
  refreshMergeStates,
} from '../supervisor/land/merge-state.js';
import type { Issue } from '../supervisor/store/issues.js';
import type { Run } from '../supervisor/store/runs.js';
import type { DashboardSource } from './source.js';

/** Lines changed by a commit (from its run: the agent's work against its base). */
export interface DiffStat {
  files: number;
  insertions: number;
  deletions: number;
}

/** One issue waiting for a person's look: done (ready to land) or sent back by a landing or a failure. */
export interface ReviewItem {
  id: number;
  title: string;
  status: string;
  branch: string | null;
  commit: string | null;
  diff: DiffStat | null;
  /** Commits on the base tip the issue's commit lacks (done issues). */
  behind: number | null;
  mergeable: boolean | null;
  conflictFiles: string[];
  /** Other done issues this one conflicts with if both landed, and on which files. */
  conflictsWith: Array<{ id: number; files: string[] }>;
  error: string | null;
  /** A failed attempt's work, kept as `refs/supervisor/attempts/<issue>/<attempt>`. */
  work: { ref: string; commit: string; diff: DiffStat | null } | null;
  landAttempts: number;
  requeues: number;
}

const DONE_SHOWN = 20;
const SENT_BACK_SHOWN = 10;
/** Done issues compared pairwise (n·(n−1)/2 merge-trees, each cached by its two commits). */
const PAIRS_OF = 12;
const PAIR_CACHE_MAX = 4096;

const diffOf = (r: Run | undefined): DiffStat | null =>
  r && r.filesChanged !== null
    ? {
        files: r.filesChanged,
        insertions: r.insertions ?? 0,
        deletions: r.deletions ?? 0,
      }
    : null;

/**
 * The review section's model, read from SQLite (a bounded number of issues, whatever the history)
 * plus, for conflicts between done issues, `git merge-tree` in the object store, once per pair of
 * commits: a page that stays open costs no git process while nothing changes.
 */
export class ReviewModel {
  private readonly pairs = new Map<string, Promise<string[]>>();

  constructor(private readonly source: DashboardSource) {}

  async build(): Promise<ReviewItem[]> {
    const { ctx } = this.source;
    let done = ctx.issues.list({ status: 'done', limit: DONE_SHOWN });
    // The running supervisor keeps behind/mergeable current; `supervisor dashboard` asks itself.
    if (!this.source.inProcess && done.length > 0) {
      const n = await refreshMergeStates(ctx, {
        ids: done.map((i) => i.id),
      }).catch(() => 0);
      if (n > 0) done = ctx.issues.list({ status: 'done', limit: DONE_SHOWN });
    }
    const others = [
      ...ctx.issues.list({ status: 'landing', limit: DONE_SHOWN }),
      ...ctx.issues.recentlyFinished(SENT_BACK_SHOWN, [
        'conflict',
        'check-failed',
        'failed',
      ]),
    ];
    const conflicts = await this.conflictsAmong(done);
    return [...done, ...others].map((i) =>
      this.item(i, conflicts.get(i.id) ?? []),
    );
  }

  private item(
    i: Issue,
    conflictsWith: ReviewItem['conflictsWith'],
  ): ReviewItem {
    const runs = this.source.ctx.runs.forIssue(i.id);
    const succeeded = [...runs]
      .reverse()
      .find((r) => r.outcome === 'succeeded' && r.commitSha === i.commit);
    const failedWork = [...runs]
      .reverse()
      .find((r) => r.outcome === 'failed' && r.commitSha !== null);
    return {
      id: i.id,
      title: i.title,
      status: i.status,
      branch: i.branch,
      commit: i.commit,
      diff: diffOf(succeeded),
      behind: i.behind,
      mergeable: i.mergeable,
      conflictFiles: i.conflictFiles,
      conflictsWith,
      error: i.error,
      work:
        i.status === 'failed' && failedWork
          ? {
              ref: attemptRef(i.id, failedWork.attempt),
              commit: failedWork.commitSha!,
              diff: diffOf(failedWork),
            }
          : null,
      landAttempts: i.landAttempts,
      requeues: i.requeues,
    };
  }

  private async conflictsAmong(
    done: Issue[],
  ): Promise<Map<number, ReviewItem['conflictsWith']>> {
    const out = new Map<number, ReviewItem['conflictsWith']>();
    const withCommit = done.filter((i) => i.commit).slice(0, PAIRS_OF);
    if (withCommit.length < 2) return out;
    const git = landGit(this.source.ctx.paths.root, 60_000);
    if (this.pairs.size > PAIR_CACHE_MAX) this.pairs.clear();
    for (let x = 0; x < withCommit.length; x++)
      for (let y = x + 1; y < withCommit.length; y++) {
        const a = withCommit[x]!;
        const b = withCommit[y]!;
        const key = `${a.commit}:${b.commit}`;
        let p = this.pairs.get(key);
        if (!p) {
          p = pairConflicts(git, a.commit!, b.commit!).catch(() => []);
          this.pairs.set(key, p);
        }
        const files = await p;
        if (files.length === 0) continue;
        out.set(a.id, [...(out.get(a.id) ?? []), { id: b.id, files }]);
        out.set(b.id, [...(out.get(b.id) ?? []), { id: a.id, files }]);
      }
    return out;
  }
}
