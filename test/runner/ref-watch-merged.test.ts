/**
 * `supervisor cleanup --merged` deletes the `issue/*` branches whose work is in the base, and it
 * may do so while agents run: a running agent's ref watch must not take that for tampering (it
 * would refuse the agent's result and put the deleted branch back). Deleting a branch whose work
 * is nowhere else stays tampering.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RefWatch } from '../../agent-runner/ref-watch.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('the ref watch', () => {
  it('lets a merged issue branch go, and reports an unmerged one deleted', async () => {
    const r = tempRepo();
    cleanups.push(r.cleanup);
    const dir = r.dir;
    const base = git(dir, 'rev-parse', 'HEAD');
    const branch = git(dir, 'symbolic-ref', '--short', 'HEAD');
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'issue 1');
    const one = git(dir, 'rev-parse', 'HEAD');
    git(dir, 'reset', '-q', '--hard', base);
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'issue 2');
    const two = git(dir, 'rev-parse', 'HEAD');
    git(dir, 'reset', '-q', '--hard', base);
    git(dir, 'update-ref', 'refs/heads/issue/1', one);
    git(dir, 'update-ref', 'refs/heads/issue/2', two);
    const watch = new RefWatch(dir, branch, 'agent/001');
    const before = await watch.snapshot();

    // While the agent runs, issue 1 lands (the base moves forward to it) and is cleaned up.
    git(dir, 'merge', '-q', '--ff-only', one);
    git(dir, 'update-ref', '-d', 'refs/heads/issue/1', one);
    expect(await watch.changes(before, undefined, base)).toEqual([]);

    // Issue 2's work is in no other branch: deleting it is a change.
    git(dir, 'update-ref', '-d', 'refs/heads/issue/2', two);
    expect(await watch.changes(before, undefined, base)).toEqual([
      { ref: 'refs/heads/issue/2', before: two, after: undefined },
    ]);
  });
});
