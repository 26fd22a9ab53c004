import { textArgumentFile } from '../../git/runner.js';
import type { LandGit } from './git.js';

export type Strategy = 'rebase' | 'merge' | 'squash';

export type Candidate =
  { ok: true; sha: string } | { ok: false; conflictFiles: string[] };

/** What the issue is, for the commit messages a merge or squash makes. */
export interface IssueRef {
  id: number;
  title: string;
}

interface CommitMeta {
  sha: string;
  parents: string[];
  name: string;
  email: string;
  date: string;
  body: string;
}

/** A commit per record: ids, then author and message, NUL-separated, ended by \x01. */
// The author date in strict ISO 8601 (offset kept): one plain word, so the commit-tree that
// carries it can go through the git helper (git/spawn-helper.ts) rather than a fork.
const COMMIT_FORMAT = '%H %P%x00%an%x00%ae%x00%aI%x00%B%x01';

function parseCommits(out: string): CommitMeta[] {
  return out
    .split('\x01')
    .map((r) => r.replace(/^\n/, ''))
    .filter((r) => r.trim().length > 0)
    .map((r) => {
      const [ids = '', name = '', email = '', date = '', ...rest] =
        r.split('\0');
      const [sha = '', ...parents] = ids.trim().split(' ').filter(Boolean);
      return { sha, parents, name, email, date, body: rest.join('\0').trim() };
    });
}

/**
 * The commit that would land: the issue's commits brought onto the base tip. Merge, squash and
 * the common one-commit rebase are computed in the object store alone (`merge-tree
 * --write-tree` + `commit-tree`): no checkout, no index. A rebase of several commits runs
 * `git rebase` in the landing worktree.
 */
export async function buildCandidate(
  git: LandGit,
  worktree: () => Promise<LandGit>,
  strategy: Strategy,
  tip: string,
  source: string,
  issue: IssueRef,
): Promise<Candidate> {
  // The rebase's one commit to replay comes with what its copy needs (author, message).
  let meta: CommitMeta | undefined;
  if (strategy === 'rebase') {
    // One git log says how the issue's commits sit on the tip (a process per landing counts).
    const commits = parseCommits(
      await git.ok(['log', `--format=${COMMIT_FORMAT}`, `${tip}..${source}`]),
    );
    const linear = commits.every((c) => c.parents.length === 1);
    if (source === tip || (linear && commits.at(-1)?.parents[0] === tip))
      return { ok: true, sha: source }; // already on the tip
    if (
      !linear &&
      (await git.run(['merge-base', '--is-ancestor', tip, source])).code === 0
    )
      return { ok: true, sha: source };
    if (commits.length !== 1 || !linear || commits[0]!.sha !== source)
      return rebaseInWorktree(await worktree(), tip, source);
    meta = commits[0];
  }
  const merged = await git.run([
    'merge-tree',
    '--write-tree',
    '--name-only',
    '--no-messages',
    tip,
    source,
  ]);
  const lines = merged.stdout.split('\n').filter(Boolean);
  if (merged.code === 1)
    return { ok: false, conflictFiles: [...new Set(lines.slice(1))] };
  if (merged.code !== 0 || !lines[0])
    throw new Error(`git merge-tree failed: ${merged.stderr.trim()}`);
  const tree = lines[0];
  meta ??= parseCommits(
    await git.ok(['log', '-1', `--format=${COMMIT_FORMAT}`, source]),
  )[0];
  const body = meta?.body ?? '';
  const author = {
    GIT_AUTHOR_NAME: meta?.name ?? 'agent',
    GIT_AUTHOR_EMAIL: meta?.email ?? 'agent@localhost',
    GIT_AUTHOR_DATE: meta?.date ?? '',
  };
  const message =
    strategy === 'merge'
      ? `Merge issue #${issue.id}: ${issue.title}\n`
      : strategy === 'squash'
        ? `${issue.title} (#${issue.id})\n\n${body}\n`
        : `${body}\n`;
  const parentsArgs =
    strategy === 'merge' ? ['-p', tip, '-p', source] : ['-p', tip];
  // The message travels as one argv element, or, where this process has the git helper, as a
  // file of the helper's that git reads (`-F`): never through a shell.
  const text = message.replace(/\n+$/, '');
  const file = textArgumentFile('land-message', `${text}\n`);
  const r = await git.run(
    [
      'commit-tree',
      tree,
      ...parentsArgs,
      ...(file ? ['-F', file] : ['-m', text]),
    ],
    { env: author },
  );
  if (r.code !== 0) throw new Error(`git commit-tree failed: ${r.stderr}`);
  return { ok: true, sha: r.stdout.trim() };
}

/**
 * Several commits: `git rebase` in the landing worktree, through the one git runner (time limit,
 * no hooks or configured programs). simple-git refuses that runner's safe settings
 * (`protocol.ext.allow=never` trips its unsafe-operations guard), so every multi-commit rebase
 * failed through it; git's own exit code and the unmerged paths say what a conflict is.
 */
async function rebaseInWorktree(
  wt: LandGit,
  tip: string,
  source: string,
): Promise<Candidate> {
  await wt.ok(['checkout', '--quiet', '-f', '--detach', source]);
  const r = await wt.run(['rebase', '--quiet', '--no-autostash', tip]);
  if (r.code === 0)
    return { ok: true, sha: await wt.ok(['rev-parse', 'HEAD']) };
  const conflicted = await wt.run(['diff', '--name-only', '--diff-filter=U']);
  await wt.run(['rebase', '--abort']);
  const files = conflicted.stdout.split('\n').filter(Boolean);
  if (files.length === 0)
    throw new Error(
      `git rebase failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`,
    );
  return { ok: false, conflictFiles: files };
}
