/**
 * The running supervisor's look at the base tip (RefTip): no git process while the ref stays
 * where it is, and the right commit after every way git can move or store it.
 */
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { landGit, RefTip, type LandGit } from '../../supervisor/land/git.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** The landing's real git, counting the processes it starts. */
function countingGit(dir: string): { git: LandGit; runs: () => number } {
  const real = landGit(dir);
  let n = 0;
  return {
    git: {
      ...real,
      run: (args, opts) => {
        n += 1;
        return real.run(args, opts);
      },
    },
    runs: () => n,
  };
}

function commit(dir: string, msg: string): string {
  git(dir, 'commit', '-q', '--allow-empty', '-m', msg);
  return git(dir, 'rev-parse', 'HEAD');
}

describe('RefTip', () => {
  it('asks git only when the ref moved, and follows loose, packed and deleted refs', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const { dir } = repo;
    const { git: counted, runs } = countingGit(dir);
    const tip = new RefTip(counted, join(dir, '.git'));
    const ref = 'refs/heads/main';

    const first = git(dir, 'rev-parse', 'HEAD');
    expect(await tip.get(ref)).toBe(first);
    expect(runs()).toBe(1);
    for (let i = 0; i < 20; i++) expect(await tip.get(ref)).toBe(first);
    expect(runs()).toBe(1); // nothing moved: no git at all

    // A commit (a loose ref rewritten).
    const second = commit(dir, 'second');
    expect(await tip.get(ref)).toBe(second);
    expect(runs()).toBe(2);

    // Packed: the loose file goes, the value stays; then a move while packed.
    git(dir, 'pack-refs', '--all');
    // A packed-refs younger than 2 s is never trusted (a rewrite within the clock's granularity
    // can keep inode, size and mtime): git is asked each time.
    expect(await tip.get(ref)).toBe(second);
    expect(await tip.get(ref)).toBe(second);
    expect(runs()).toBe(4);
    // Once it is older, one more answer from git, then none while nothing moves.
    const packed = join(dir, '.git/packed-refs');
    const old = new Date(Date.now() - 10_000);
    utimesSync(packed, old, old);
    expect(await tip.get(ref)).toBe(second);
    expect(await tip.get(ref)).toBe(second);
    expect(runs()).toBe(5);
    git(dir, 'update-ref', ref, first);
    expect(await tip.get(ref)).toBe(first);
    // Back to the packed value (the loose file deleted, packed-refs rewritten).
    git(dir, 'pack-refs', '--all');
    git(dir, 'update-ref', ref, second);
    git(dir, 'pack-refs', '--all');
    expect(await tip.get(ref)).toBe(second);

    // A reset to an older commit with the same loose file: the content differs, git is asked.
    git(dir, 'reset', '-q', '--hard', first);
    expect(await tip.get(ref)).toBe(first);

    // Gone: undefined, and back.
    git(dir, 'checkout', '-q', '--detach');
    git(dir, 'branch', '-D', 'main');
    expect(await tip.get(ref)).toBeUndefined();
    git(dir, 'branch', 'main', second);
    expect(await tip.get(ref)).toBe(second);
  });
});
