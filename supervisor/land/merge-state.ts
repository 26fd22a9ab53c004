import type { CommitReader } from '../../git/commit-reader.js';
import type { Context } from '../context.js';
import { withChange } from '../store/history.js';
import type { Issue } from '../store/issues.js';
import { baseRef, landGit, revParse, type LandGit } from './git.js';

export interface MergeState {
  /** Commits on the base tip that `commit` lacks. */
  behind: number;
  /** Whether `commit` merges into the base tip without conflicts. */
  mergeable: boolean;
  conflictFiles: string[];
}

/**
 * How a commit stands against the base tip, computed in the object store alone
 * (`git merge-tree --write-tree`): no worktree, no index, nothing checked out.
 */
export async function mergeState(
  git: LandGit,
  baseTip: string,
  commit: string,
): Promise<MergeState> {
  const [count, merge] = await Promise.all([
    git.ok(['rev-list', '--count', `${commit}..${baseTip}`]),
    git.run([
      'merge-tree',
      '--write-tree',
      '--name-only',
      '--no-messages',
      baseTip,
      commit,
    ]),
  ]);
  if (merge.code > 1)
    throw new Error(`git merge-tree failed: ${merge.stderr.trim()}`);
  const lines = merge.stdout.split('\n').filter(Boolean);
  const files = [...new Set(lines.slice(1))];
  return {
    behind: Number(count),
    mergeable: merge.code === 0,
    conflictFiles: merge.code === 0 ? [] : files,
  };
}

/** Files two commits would conflict on if both landed (review: done issues against each other). */
export async function pairConflicts(
  git: LandGit,
  a: string,
  b: string,
): Promise<string[]> {
  const merge = await git.run([
    'merge-tree',
    '--write-tree',
    '--name-only',
    '--no-messages',
    a,
    b,
  ]);
  if (merge.code !== 1) return [];
  return [...new Set(merge.stdout.split('\n').filter(Boolean).slice(1))];
}

/** The base tip agents and landings start from, or undefined when the base does not exist. */
export async function baseTip(ctx: Context): Promise<string | undefined> {
  const git = landGit(ctx.paths.root, 60_000);
  return revParse(git, await baseRef(git, ctx.baseBranch));
}

/**
 * Brings `behind` and `mergeable` of done issues up to date with the base tip; only issues
 * whose commit or base moved since they were last computed. Returns how many changed.
 */
export async function refreshMergeStates(
  ctx: Context,
  opts: {
    ids?: readonly number[];
    limit?: number;
    /** The base tip when the caller knows it (the running supervisor: RefTip, no git while idle). */
    tip?: string;
    /**
     * The running supervisor's commit reader: a commit whose parent is the tip is 0 behind and
     * merges cleanly (the merge base is the tip itself), known without `rev-list` or `merge-tree`.
     */
    commits?: CommitReader;
  } = {},
): Promise<number> {
  const git = landGit(ctx.paths.root, 60_000);
  const tip =
    'tip' in opts
      ? opts.tip
      : await revParse(git, await baseRef(git, ctx.baseBranch));
  if (!tip) return 0;
  // `ids`: only those issues (a page of `issue list`, `issue show`); otherwise the stale done
  // issues from an index (read-model.ts), at most `limit` per call: never the whole history.
  const stale = opts.ids
    ? opts.ids
        .map((id) => ctx.issues.get(id))
        .filter(
          (i): i is Issue =>
            i?.status === 'done' &&
            i.commit !== null &&
            (i.checkedBase !== tip || i.checkedCommit !== i.commit),
        )
    : ctx.issues.staleMergeStates(tip, opts.limit ?? 200);
  let n = 0;
  for (const i of stale) {
    let s: MergeState;
    try {
      const parents = await opts.commits
        ?.parents(i.commit!)
        .catch(() => undefined);
      s = parents?.includes(tip)
        ? { behind: 0, mergeable: true, conflictFiles: [] }
        : await mergeState(git, tip, i.commit!);
    } catch {
      continue; // a commit gc'd or unreachable: shown as unknown
    }
    // Not a change of the issue: updated_at stays (it orders "recent results").
    withChange(ctx.db, { actor: 'supervisor' }, () =>
      ctx.issues.update(
        i.id,
        {
          behind: s.behind,
          mergeable: s.mergeable,
          conflictFiles: s.conflictFiles,
          checkedBase: tip,
          checkedCommit: i.commit,
        },
        { touch: false },
      ),
    );
    n += 1;
  }
  return n;
}
