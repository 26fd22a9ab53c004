import { simpleGit } from 'simple-git';
import { SAFE_GIT_CONFIG } from '../repo.js';
import type { LandGit } from './git.js';

export type Strategy = 'rebase' | 'merge' | 'squash';

export type Candidate =
  { ok: true; sha: string } | { ok: false; conflictFiles: string[] };

/** What the issue is, for the commit messages a merge or squash makes. */
export interface IssueRef {
  id: number;
  title: string;
}

/**
 * The commit that would land: the issue's commits brought onto the base tip. Merge, squash and
 * the common one-commit rebase are computed in the object store alone (`merge-tree
 * --write-tree` + `commit-tree`): no checkout, no index. A rebase of several commits runs
 * `git rebase` in the landing worktree (simple-git reports its conflicts).
 */
export async function buildCandidate(
  git: LandGit,
  worktree: () => Promise<LandGit>,
  strategy: Strategy,
  tip: string,
  source: string,
  issue: IssueRef,
): Promise<Candidate> {
  if (
    strategy === 'rebase' &&
    (await git.run(['merge-base', '--is-ancestor', tip, source])).code === 0
  )
    return { ok: true, sha: source };
  if (strategy === 'rebase') {
    const [count, parents] = await Promise.all([
      git.ok(['rev-list', '--count', `${tip}..${source}`]),
      git.ok(['rev-list', '--parents', '-n', '1', source]),
    ]);
    if (Number(count) !== 1 || parents.split(' ').length !== 2)
      return rebaseInWorktree(await worktree(), tip, source);
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
  const meta = await git.ok([
    'log',
    '-1',
    '--format=%an%x00%ae%x00%aD%x00%B',
    source,
  ]);
  const [name, email, date, ...rest] = meta.split('\0');
  const body = rest.join('\0').trim();
  const author = {
    GIT_AUTHOR_NAME: name ?? 'agent',
    GIT_AUTHOR_EMAIL: email ?? 'agent@localhost',
    GIT_AUTHOR_DATE: date ?? '',
  };
  const message =
    strategy === 'merge'
      ? `Merge issue #${issue.id}: ${issue.title}\n`
      : strategy === 'squash'
        ? `${issue.title} (#${issue.id})\n\n${body}\n`
        : `${body}\n`;
  const parentsArgs =
    strategy === 'merge' ? ['-p', tip, '-p', source] : ['-p', tip];
  // The message travels as one argv element (never through a shell).
  const r = await git.run(
    ['commit-tree', tree, ...parentsArgs, '-m', message.replace(/\n+$/, '')],
    { env: author },
  );
  if (r.code !== 0) throw new Error(`git commit-tree failed: ${r.stderr}`);
  return { ok: true, sha: r.stdout.trim() };
}

async function rebaseInWorktree(
  wt: LandGit,
  tip: string,
  source: string,
): Promise<Candidate> {
  await wt.ok(['checkout', '--quiet', '-f', '--detach', source]);
  const sg = simpleGit({
    baseDir: wt.dir,
    config: [...SAFE_GIT_CONFIG],
  }).env({
    ...Object.fromEntries(
      Object.entries(process.env).filter(
        (e): e is [string, string] =>
          e[1] !== undefined && !e[0].startsWith('GIT_'),
      ),
    ),
    GIT_COMMITTER_NAME: 'agent-supervisor',
    GIT_COMMITTER_EMAIL: 'supervisor@localhost',
    GIT_EDITOR: 'true',
  });
  try {
    await sg.rebase([tip]);
  } catch {
    const conflicted = (await sg.status()).conflicted;
    await wt.run(['rebase', '--abort']);
    return { ok: false, conflictFiles: conflicted };
  }
  return { ok: true, sha: await wt.ok(['rev-parse', 'HEAD']) };
}
