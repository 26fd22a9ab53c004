/**
 * The recorder's reconcile lists the result refs remote runners pushed, every round. The local
 * results repository is read from its files (no git process per round): the list must be what
 * `git for-each-ref` says, loose and packed, without refs that are not results, in ref order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { resultRefFor } from '../../contract/job.js';
import { ResultRefs } from '../../supervisor/results.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('result refs', () => {
  it('are listed from the results repository as git lists them', async () => {
    const r = tempRepo();
    cleanups.push(r.cleanup);
    const results = new ResultRefs({
      repoRoot: r.dir,
      gitCommonDir: join(r.dir, '.git'),
      stateDir: join(r.dir, '.supervisor'),
      log: () => undefined,
    });
    expect(await results.list()).toEqual([]);
    await results.ensure();
    expect(await results.list()).toEqual([]);
    const sha = git(r.dir, 'rev-parse', 'HEAD');
    const bare = results.resultsRepo;
    const refs = [
      resultRefFor('issue-12', 1),
      resultRefFor('issue-3', 2),
      resultRefFor('foreign job', 1),
    ];
    for (const ref of refs) git(bare, 'update-ref', ref, sha);
    git(bare, 'update-ref', 'refs/supervisor/results/not-a-result', sha);
    const byGit = () =>
      git(
        bare,
        'for-each-ref',
        '--format=%(refname) %(objectname)',
        'refs/supervisor/results/',
      )
        .split('\n')
        .map((l) => l.split(' ') as [string, string])
        .filter(([ref]) => refs.includes(ref))
        .map(([ref, sha]) => ({ ref, sha }));
    expect(await results.list()).toEqual(byGit());
    expect((await results.list()).length).toBe(3);
    git(bare, 'pack-refs', '--all');
    git(bare, 'update-ref', resultRefFor('issue-40', 1), sha);
    refs.push(resultRefFor('issue-40', 1));
    expect(await results.list()).toEqual(byGit());
    expect((await results.list()).length).toBe(4);
  });
});
