/**
 * The running supervisor's merge states with its commit reader (git/commit-reader.ts): a done
 * issue whose commit sits on the base tip is 0 behind and mergeable without a merge; any other
 * (the base moved, the commit conflicts, a commit we do not have) goes through `rev-list` and
 * `merge-tree` as before, with the same answers as without the reader.
 */
import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommitReader } from '../../git/commit-reader.js';
import { openContext } from '../../supervisor/context.js';
import { refreshMergeStates } from '../../supervisor/land/merge-state.js';
import { useCleanups } from '../helpers/cleanup.js';
import { testEnv } from '../helpers/cli.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

describe('merge states with the commit reader', () => {
  it('match rev-list and merge-tree, on the tip and off it', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const ctx = await openContext({
      repo: repo.dir,
      init: true,
      env: testEnv(),
    });
    cleanups.push(() => ctx.close());
    const commits = new CommitReader(repo.dir);
    cleanups.push(() => commits.close());
    const base = git(repo.dir, 'rev-parse', 'main');
    const onBranch = (name: string, file: string, text: string) => {
      git(repo.dir, 'checkout', '-qb', name, base);
      writeFileSync(join(repo.dir, file), text);
      git(repo.dir, 'add', file);
      git(repo.dir, 'commit', '-qm', name);
      const sha = git(repo.dir, 'rev-parse', 'HEAD');
      git(repo.dir, 'checkout', '-q', 'main');
      return sha;
    };
    const clean = onBranch('issue/1', 'a.txt', 'a\n');
    const conflicting = onBranch('issue/2', 'shared.txt', 'mine\n');
    const done = (title: string, commit: string) => {
      const { id } = ctx.issues.add({ title });
      ctx.issues.update(id, { status: 'done', commit });
      return id;
    };
    const a = done('clean', clean);
    const b = done('conflicts later', conflicting);
    const missing = done('gone', '1'.repeat(40));
    const state = (id: number) => {
      const i = ctx.issues.get(id)!;
      return {
        behind: i.behind,
        mergeable: i.mergeable,
        files: i.conflictFiles,
      };
    };

    expect(await refreshMergeStates(ctx, { tip: base, commits })).toBe(2);
    expect(state(a)).toEqual({ behind: 0, mergeable: true, files: [] });
    expect(state(b)).toEqual({ behind: 0, mergeable: true, files: [] });
    expect(state(missing).mergeable).toBeNull();
    expect(commits.starts).toBe(1);

    // The base moves: neither commit sits on the tip any more.
    writeFileSync(join(repo.dir, 'shared.txt'), 'theirs\n');
    git(repo.dir, 'add', 'shared.txt');
    git(repo.dir, 'commit', '-qm', 'base moves');
    const tip = git(repo.dir, 'rev-parse', 'main');
    expect(await refreshMergeStates(ctx, { tip, commits })).toBe(2);
    expect(state(a)).toEqual({ behind: 1, mergeable: true, files: [] });
    expect(state(b)).toEqual({
      behind: 1,
      mergeable: false,
      files: ['shared.txt'],
    });
  });
});
