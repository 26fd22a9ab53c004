import { describe, expect, it } from 'vitest';
import { existsSync, writeFileSync } from 'node:fs';
import { useSpawnHelper } from '../../git/runner.js';
import { join } from 'node:path';
import { buildCandidate } from '../../supervisor/land/candidate.js';
import { landGit } from '../../supervisor/land/git.js';
import { useCleanups } from '../helpers/cleanup.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups = useCleanups();

function commit(dir: string, file: string, text: string): string {
  writeFileSync(join(dir, file), text);
  git(dir, 'add', file);
  git(dir, 'commit', '-qm', `edit ${file}`);
  return git(dir, 'rev-parse', 'HEAD');
}

/** A repository with main moved on by one commit since `issue` branched off it. */
function world() {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const dir = repo.dir;
  const base = git(dir, 'rev-parse', 'main');
  const tip = commit(dir, 'main.txt', 'main moved\n');
  git(dir, 'checkout', '-q', '-b', 'issue', base);
  const lander = landGit(dir);
  const wtDir = join(dir, '.land-wt');
  git(dir, 'worktree', 'add', '-q', '--detach', wtDir, tip);
  const worktree = async () => landGit(wtDir);
  const issue = { id: 7, title: 'the issue' };
  const build = (strategy: 'rebase' | 'merge' | 'squash', source: string) =>
    buildCandidate(lander, worktree, strategy, tip, source, issue);
  return { dir, base, tip, build };
}

const files = (dir: string, sha: string) =>
  git(dir, 'ls-tree', '--name-only', sha).split('\n').sort();
const parents = (dir: string, sha: string) =>
  git(dir, 'rev-list', '--parents', '-n', '1', sha).split(' ').slice(1);

describe('the candidate commit that would land', () => {
  it('rebase: one commit replayed in the object store (author kept), several rebased, and a commit already on the tip as is', async () => {
    const w = world();
    const one = commit(w.dir, 'a.txt', 'a\n');
    const c1 = await w.build('rebase', one);
    expect(c1.ok).toBe(true);
    if (!c1.ok) return;
    expect(parents(w.dir, c1.sha)).toEqual([w.tip]);
    expect(files(w.dir, c1.sha)).toEqual(['README.md', 'a.txt', 'main.txt']);
    expect(git(w.dir, 'log', '-1', '--format=%s|%an', c1.sha)).toBe(
      'edit a.txt|t',
    );

    const two = commit(w.dir, 'b.txt', 'b\n');
    const c2 = await w.build('rebase', two);
    expect(c2.ok).toBe(true);
    if (!c2.ok) return;
    expect(git(w.dir, 'rev-list', '--count', `${w.tip}..${c2.sha}`)).toBe('2');
    expect(files(w.dir, c2.sha)).toEqual([
      'README.md',
      'a.txt',
      'b.txt',
      'main.txt',
    ]);

    // Already built on the tip: lands as it is, no new commit.
    git(w.dir, 'checkout', '-q', '-b', 'on-tip', w.tip);
    const onTip = commit(w.dir, 'c.txt', 'c\n');
    expect(await w.build('rebase', onTip)).toEqual({ ok: true, sha: onTip });
    const twoOnTip = commit(w.dir, 'd.txt', 'd\n');
    expect(await w.build('rebase', twoOnTip)).toEqual({
      ok: true,
      sha: twoOnTip,
    });
    expect(await w.build('rebase', w.tip)).toEqual({ ok: true, sha: w.tip });
  });

  it('merge and squash, and conflicts named by file for each strategy', async () => {
    const w = world();
    const one = commit(w.dir, 'a.txt', 'a\n');
    const m = await w.build('merge', one);
    expect(m.ok).toBe(true);
    if (!m.ok) return;
    expect(parents(w.dir, m.sha)).toEqual([w.tip, one]);
    expect(git(w.dir, 'log', '-1', '--format=%s', m.sha)).toBe(
      'Merge issue #7: the issue',
    );
    const s = await w.build('squash', one);
    expect(s.ok).toBe(true);
    if (!s.ok) return;
    expect(parents(w.dir, s.sha)).toEqual([w.tip]);
    expect(git(w.dir, 'log', '-1', '--format=%s', s.sha)).toBe(
      'the issue (#7)',
    );

    const clash = commit(w.dir, 'main.txt', 'the issue says otherwise\n');
    for (const strategy of ['rebase', 'merge', 'squash'] as const)
      expect(await w.build(strategy, clash), strategy).toEqual({
        ok: false,
        conflictFiles: ['main.txt'],
      });
    // Several commits, one of them conflicting: the rebase in the worktree says so too.
    const more = commit(w.dir, 'e.txt', 'e\n');
    expect(await w.build('rebase', more)).toEqual({
      ok: false,
      conflictFiles: ['main.txt'],
    });
  });
  // Last: the helper stays on for the rest of this file's process.
  it('through the git helper (as `supervisor start` runs it), the same commits: message from a file, author and date as plain words', async () => {
    const w = world();
    git(w.dir, 'config', 'user.name', 'agent-001');
    const one = commit(w.dir, 'a.txt', 'a\n');
    const title = `it's $(touch /tmp/sup-pwned) "q"\n\n  indented  \n#not a comment`;
    const build = (strategy: 'rebase' | 'merge' | 'squash') =>
      buildCandidate(
        landGit(w.dir),
        async () => landGit(join(w.dir, '.land-wt')),
        strategy,
        w.tip,
        one,
        { id: 7, title },
      );
    // A commit without its committer line (the time it was made).
    const content = (sha: string) =>
      git(w.dir, 'cat-file', 'commit', sha).replace(/^committer .*\n/m, '');
    const direct: string[] = [];
    for (const s of ['rebase', 'merge', 'squash'] as const) {
      const c = await build(s);
      if (!c.ok) throw new Error(`${s} did not build`);
      direct.push(content(c.sha));
    }
    const helperDir = join(w.dir, '.supervisor', 'git-helper');
    useSpawnHelper(helperDir);
    const helped: string[] = [];
    for (const s of ['rebase', 'merge', 'squash'] as const) {
      const c = await build(s);
      if (!c.ok) throw new Error(`${s} did not build`);
      helped.push(content(c.sha));
    }
    expect(helped).toEqual(direct);
    expect(direct[2]).toContain(`${title} (#7)`);
    // The message went to git as the helper's file.
    expect(existsSync(join(helperDir, 'land-message'))).toBe(true);
    expect(existsSync('/tmp/sup-pwned')).toBe(false);
  });
});
