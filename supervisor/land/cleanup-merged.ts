import { issueBranch } from '../../contract/job.js';
import type { Context } from '../context.js';
import { landGit } from './git.js';

/**
 * Deletes the `issue/<id>` branches of merged issues (their work is in the base as the landed
 * commit), and the refs of their failed attempts (`refs/supervisor/attempts/<id>/*`). Each branch goes only if it still points at the issue's recorded result
 * (`update-ref -d <ref> <old>`): a branch someone moved since is kept.
 */
export async function removeMergedBranches(
  ctx: Context,
): Promise<{ removed: string[]; kept: string[] }> {
  const git = landGit(ctx.paths.root, 60_000);
  const removed: string[] = [];
  const kept: string[] = [];
  for (const i of ctx.issues.list({ status: 'merged' })) {
    const branch = issueBranch(i.id);
    const ref = `refs/heads/${branch}`;
    if ((await git.run(['show-ref', '--verify', '--quiet', ref])).code !== 0)
      continue;
    const r = i.commit
      ? await git.run(['update-ref', '-d', ref, i.commit])
      : { code: 1 };
    (r.code === 0 ? removed : kept).push(branch);
  }
  // Failed attempts' work kept for review: done with once the issue is in the base.
  const attempts = await git.ok([
    'for-each-ref',
    '--format=%(refname) %(objectname)',
    'refs/supervisor/attempts',
  ]);
  for (const line of attempts.split('\n').filter(Boolean)) {
    const [ref, sha] = line.split(' ') as [string, string];
    const id = Number(ref.split('/')[3]);
    if (ctx.issues.get(id)?.status !== 'merged') continue;
    const r = await git.run(['update-ref', '-d', ref, sha]);
    (r.code === 0 ? removed : kept).push(ref);
  }
  return { removed, kept };
}
