/**
 * The runner keeps its answer to "which diff/merge/filter drivers does the configuration
 * define" (they are switched off on every checkout and commit) while no configuration file
 * changed. Whatever an agent does to the files git reads, the next answer must name its driver:
 * an in-place rewrite of the same size with the old modification time put back, a worktree
 * pointed at another repository, and an included file (never cached).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cachedDriverOverrides } from '../../git/driver-cache.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** Waits until files written now count as settled (their change time over a second old). */
const settle = () => new Promise((r) => setTimeout(r, 1_200));

function worktreeRepo(): { dir: string; wt: string; config: string } {
  const r = tempRepo();
  cleanups.push(r.cleanup);
  const wt = join(r.dir, '.worktrees', 'agent-001');
  git(r.dir, 'worktree', 'add', '-q', '-b', 'agent/001', wt, 'main');
  // A driver of the same name length as the one planted later: the file keeps its size.
  git(r.dir, 'config', 'filter.aaaaa.clean', 'cat');
  return { dir: r.dir, wt, config: join(r.dir, '.git', 'config') };
}

describe('cached driver overrides', () => {
  it('an in-place rewrite of the same size, with its modification time put back, is seen', async () => {
    const { wt, config } = worktreeRepo();
    await settle();
    expect(await cachedDriverOverrides(wt)).toContain('filter.aaaaa.clean=');
    // Answered from the cache now; then the agent swaps the driver's name in place.
    expect(await cachedDriverOverrides(wt)).toContain('filter.aaaaa.clean=');
    const before = statSync(config, { bigint: true });
    const times = `${config}.times`;
    writeFileSync(times, '');
    execFileSync('touch', ['-r', config, times]); // keeps the nanoseconds, unlike utimes
    const text = readFileSync(config, 'utf8').replace('aaaaa', 'canry');
    writeFileSync(config, text);
    execFileSync('touch', ['-r', times, config]);
    const now = statSync(config, { bigint: true });
    expect([now.ino, now.size, now.mtimeNs]).toEqual([
      before.ino,
      before.size,
      before.mtimeNs,
    ]);
    const after = await cachedDriverOverrides(wt);
    expect(after).toContain('filter.canry.clean=');
    expect(after).toContain('filter.canry.required=false');
  });

  it('a worktree pointed at another repository is asked about again', async () => {
    const { wt } = worktreeRepo();
    await settle();
    expect(await cachedDriverOverrides(wt)).not.toContain(
      'filter.evil.smudge=',
    );
    const other = tempRepo();
    cleanups.push(other.cleanup);
    git(other.dir, 'config', 'filter.evil.smudge', 'touch /tmp/pwned');
    // A fake admin directory whose commondir is the other repository's git directory.
    const admin = join(other.dir, '.git', 'worktrees', 'fake');
    mkdirSync(admin, { recursive: true });
    writeFileSync(join(admin, 'commondir'), '../..\n');
    writeFileSync(
      join(admin, 'HEAD'),
      `${git(other.dir, 'rev-parse', 'HEAD')}\n`,
    );
    writeFileSync(join(admin, 'gitdir'), `${join(wt, '.git')}\n`);
    writeFileSync(join(wt, '.git'), `gitdir: ${admin}\n`);
    expect(await cachedDriverOverrides(wt)).toContain('filter.evil.smudge=');
  });

  it('a configuration with an include is never kept: a driver in the included file is seen', async () => {
    const { dir, wt } = worktreeRepo();
    const extra = join(dir, 'extra.gitconfig');
    writeFileSync(extra, '[core]\n\tquotepath = false\n');
    git(dir, 'config', 'include.path', extra);
    await settle();
    expect(await cachedDriverOverrides(wt)).not.toContain(
      'diff.evil.textconv=',
    );
    writeFileSync(extra, '[diff "evil"]\n\ttextconv = touch /tmp/pwned\n');
    expect(await cachedDriverOverrides(wt)).toContain('diff.evil.textconv=');
  });
});
