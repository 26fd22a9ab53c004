/**
 * The land service's long-lived `git cat-file --batch` (git/commit-reader.ts), against real git:
 * parents of root, plain and merge commits; nothing for a tree, a blob, a missing or malformed id;
 * objects made after it started (loose and packed); messages with multi-byte text and a
 * `parent` line in their body; a dead process replaced. And the merge state it stands in for:
 * a commit on the tip is what `rev-list` and `merge-tree` say, 0 behind and mergeable.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CommitReader } from '../../git/commit-reader.js';
import { landGit } from '../../supervisor/land/git.js';
import { mergeState } from '../../supervisor/land/merge-state.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup() {
  const repo = tempRepo();
  const commits = new CommitReader(repo.dir, () => 10_000);
  cleanups.push(repo.cleanup);
  cleanups.push(() => commits.close());
  const commit = (file: string, message: string) => {
    writeFileSync(join(repo.dir, file), `${message}\n`);
    git(repo.dir, 'add', file);
    git(repo.dir, 'commit', '-qm', message);
    return git(repo.dir, 'rev-parse', 'HEAD');
  };
  return { dir: repo.dir, commits, commit };
}

describe('CommitReader', () => {
  it("reads commits' parents with one git process, objects made after it started included", async () => {
    const w = setup();
    const root = git(w.dir, 'rev-parse', 'main');
    expect(await w.commits.parents(root)).toEqual([]);
    const a = w.commit(
      'a.txt',
      'ü → 日本 a\n\nparent 1111111111111111111111111111111111111111',
    );
    expect(await w.commits.parents(a)).toEqual([root]);
    git(w.dir, 'checkout', '-qb', 'side', root);
    const b = w.commit('b.txt', 'b');
    git(w.dir, 'checkout', '-q', 'main');
    git(w.dir, 'merge', '-q', '--no-edit', 'side');
    const merge = git(w.dir, 'rev-parse', 'HEAD');
    git(w.dir, 'repack', '-adq');
    git(w.dir, 'prune-packed');
    const c = w.commit('c.txt', 'c');
    expect(await w.commits.parents(merge)).toEqual([a, b]);
    expect(await w.commits.parents(c)).toEqual([merge]);
    expect(await w.commits.parents(a)).toEqual([root]);
    expect(w.commits.starts).toBe(1);
  });

  it('has nothing for a tree, a blob, a missing or a malformed id', async () => {
    const w = setup();
    const tree = git(w.dir, 'rev-parse', 'HEAD^{tree}');
    const blob = git(w.dir, 'rev-parse', 'HEAD:README.md');
    for (const oid of [tree, blob, '1'.repeat(40)])
      expect(await w.commits.parents(oid)).toBeUndefined();
    const main = git(w.dir, 'rev-parse', 'main');
    for (const oid of ['HEAD', `${main}\n${main}`, main.slice(0, 12)])
      expect(await w.commits.parents(oid)).toBeUndefined();
    expect(await w.commits.parents(main)).toEqual([]);
    expect(w.commits.starts).toBe(1);
  });

  it('replaces a process that died', async () => {
    const w = setup();
    const main = git(w.dir, 'rev-parse', 'main');
    const a = w.commit('a.txt', 'a');
    expect(await w.commits.parents(a)).toEqual([main]);
    const pid = (w.commits as unknown as { session: { pid: number } }).session
      .pid;
    process.kill(pid, 'SIGKILL');
    expect(await w.commits.parents(a)).toEqual([main]);
    expect(w.commits.starts).toBe(2);
  });

  it('a commit whose parent is the tip: 0 behind, mergeable, as rev-list and merge-tree say', async () => {
    const w = setup();
    const tip = git(w.dir, 'rev-parse', 'main');
    const a = w.commit('README.md', 'rewritten');
    expect(await w.commits.parents(a)).toContain(tip);
    expect(await mergeState(landGit(w.dir), tip, a)).toEqual({
      behind: 0,
      mergeable: true,
      conflictFiles: [],
    });
  });
});
