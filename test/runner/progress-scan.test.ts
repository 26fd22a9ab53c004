import { afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { changedSince } from '../../agent-runner/progress-scan.js';
import { tempDir } from '../helpers/repo.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A worktree-like tree; `since` lies after every time in it, so only what a test moves counts. */
function tree(): { dir: string; since: number } {
  const dir = tempDir('sup-scan-');
  dirs.push(dir);
  mkdirSync(join(dir, 'src/deep/er'), { recursive: true });
  mkdirSync(join(dir, '.git/objects'), { recursive: true });
  writeFileSync(join(dir, 'src/deep/er/a.ts'), 'a');
  writeFileSync(join(dir, '.git/objects/x'), 'x');
  return { dir, since: Date.now() + 60_000 };
}

describe('changedSince (the progress timeout looks for file changes only when an agent is silent)', () => {
  it('finds nothing when nothing changed after `since`', async () => {
    const { dir, since } = tree();
    expect(await changedSince(dir, since)).toBeUndefined();
  });

  it('finds a file modified deep in the tree', async () => {
    const { dir, since } = tree();
    utimesSync(
      join(dir, 'src/deep/er/a.ts'),
      new Date(since + 5000),
      new Date(since + 5000),
    );
    expect(await changedSince(dir, since)).toBeGreaterThan(since + 4000);
  });

  it('finds a deletion or a new file through the directory that held it', async () => {
    const { dir, since } = tree();
    utimesSync(
      join(dir, 'src/deep'),
      new Date(since + 5000),
      new Date(since + 5000),
    );
    expect(await changedSince(dir, since)).toBeGreaterThan(since + 4000);
  });

  it('does not look into .git', async () => {
    const { dir, since } = tree();
    utimesSync(
      join(dir, '.git/objects/x'),
      new Date(since + 5000),
      new Date(since + 5000),
    );
    utimesSync(
      join(dir, '.git/objects'),
      new Date(since + 5000),
      new Date(since + 5000),
    );
    expect(await changedSince(dir, since)).toBeUndefined();
  });

  it('answers undefined for a directory that is gone', async () => {
    const dir = tempDir('sup-scan-');
    dirs.push(dir);
    expect(await changedSince(join(dir, 'missing'), 0)).toBeUndefined();
  });
});
