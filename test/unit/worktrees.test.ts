import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveRepo } from '../../supervisor/repo.js';
import { ensureWorktree } from '../../supervisor/worktrees.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('slot worktrees', () => {
  it('a worktree add that meets another add half-way is tried again, not failed', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    // Another `git worktree add` in progress: its admin directory and checkout exist, its
    // commondir is created but still empty (git dies reading it; prune keeps the entry).
    const outside = tempDir('sup-other-wt-');
    cleanups.push(() => rmSync(outside, { recursive: true, force: true }));
    const other = join(outside, 'wt');
    mkdirSync(other, { recursive: true });
    const admin = join(repo.dir, '.git', 'worktrees', 'other');
    mkdirSync(admin, { recursive: true });
    writeFileSync(join(admin, 'gitdir'), `${join(other, '.git')}\n`);
    writeFileSync(join(other, '.git'), `gitdir: ${admin}\n`);
    writeFileSync(join(admin, 'HEAD'), 'ref: refs/heads/main\n');
    writeFileSync(join(admin, 'commondir'), '');
    // ...which it finishes writing later: after the first attempt has failed on it, before the last.
    setTimeout(() => writeFileSync(join(admin, 'commondir'), '../..\n'), 700);
    const paths = await resolveRepo(repo.dir);
    const wt = await ensureWorktree(paths, 'agent-001', 'main');
    expect(wt.created).toBe(true);
    expect(git(wt.path, 'rev-parse', '--abbrev-ref', 'HEAD')).toBe('agent/001');
  });
});
