/**
 * The reset's `git clean -x` keeps the `.worktreeinclude` files by name and removes every other
 * ignored file in the same process: the next issue starts from what the separate listing and
 * removal left (tracked files, the listed files, `.env.worktree`), nothing else.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { planIncluded, resyncIncluded } from '../../agent-runner/before-job.js';
import { LocalWorktree } from '../../agent-runner/workspace.js';
import { CLEAN_KEEP_MAX } from '../../contract/worktreeinclude.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

const WEIRD = 'we*ird [x] !#.txt';

function setup(include: string, extra: Record<string, string> = {}) {
  const r = tempRepo({
    files: {
      '.gitignore': 'ignored/\n*.log\n.env*\nbuild/\ndeep/\n',
      'README.md': '# r\n',
    },
  });
  cleanups.push(r.cleanup);
  execFileSync('sh', [
    '-c',
    `printf '.supervisor/\\n.worktrees/\\n' >> "${r.dir}/.git/info/exclude"`,
  ]);
  const files: Record<string, string> = {
    'ignored/keep.txt': 'k',
    [`ignored/${WEIRD}`]: 'k',
    'deep/x/y/k.txt': 'k',
    '.env': 'SECRET=1',
    ...extra,
  };
  for (const [rel, text] of Object.entries(files)) write(r.dir, rel, text);
  writeFileSync(join(r.dir, '.worktreeinclude'), include);
  const slot = (n: number) => {
    const wt = join(r.dir, '.worktrees', `agent-00${n}`);
    git(r.dir, 'worktree', 'add', '-q', '-b', `agent/00${n}`, wt);
    return new LocalWorktree(r.dir, wt, `agent/00${n}`);
  };
  return { root: r.dir, slot };
}

function write(dir: string, rel: string, text: string): void {
  mkdirSync(join(dir, rel, '..'), { recursive: true });
  writeFileSync(join(dir, rel), text);
}

/** What an agent leaves: stray ignored and untracked files, a nested repository, an edited copy. */
function plant(wt: string): void {
  for (const rel of [
    'ignored/other.txt',
    'ignored/sub/s',
    'deep/x/y/planted',
    'deep/z/p',
    'a.log',
    '.env.local',
    '.env.worktree',
    'untracked.txt',
    'newdir/e',
  ])
    write(wt, rel, 'planted');
  write(wt, '.env', 'SECRET=edited');
  mkdirSync(join(wt, 'build', 'nested'), { recursive: true });
  git(join(wt, 'build', 'nested'), 'init', '-q');
}

const files = (wt: string) =>
  execFileSync('find', ['.', '-path', './.git', '-prune', '-o', '-print'], {
    cwd: wt,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean)
    .sort();

/** One job's reset and re-sync, the folded way (the plan's patterns) or the separate one. */
async function reset(root: string, w: LocalWorktree, folded: boolean) {
  const included = await planIncluded(root);
  if (!folded) delete included.keep;
  await w.prepare('main', included.keep);
  const lines: string[] = [];
  const failed = await resyncIncluded(
    root,
    w.path,
    { write: (s) => void lines.push(String(s)) },
    included,
  );
  expect(failed).toBeUndefined();
  return lines.join('');
}

describe("the reset's git clean", () => {
  it('leaves what the separate listing and removal left: tracked files, listed files (odd names too), .env.worktree', async () => {
    const { root, slot } = setup(
      'ignored/keep.txt\nignored/we*\ndeep/\n.env\n',
    );
    const folded = slot(1);
    const separate = slot(2);
    expect((await planIncluded(root)).keep).toBeDefined();
    for (const w of [folded, separate]) {
      await reset(root, w, w === folded);
      plant(w.path);
    }
    const log = await reset(root, folded, true);
    await reset(root, separate, false);
    // The edited copy is copied again from the main worktree.
    expect(log).toMatch(/\.worktreeinclude: 1 updated, 3 unchanged/);
    expect(files(folded.path)).toEqual(files(separate.path));
    expect(files(folded.path)).toEqual([
      '.',
      './.env',
      './.env.worktree',
      './.gitignore',
      './README.md',
      './deep',
      './deep/x',
      './deep/x/y',
      './deep/x/y/k.txt',
      './ignored',
      './ignored/keep.txt',
      `./ignored/${WEIRD}`,
    ]);
  });

  it(`lists and removes separately past ${CLEAN_KEEP_MAX} listed files (git matches every path against every pattern)`, async () => {
    const many: Record<string, string> = {};
    for (let i = 0; i <= CLEAN_KEEP_MAX; i++) many[`build/m${i}.js`] = 'm';
    const { root, slot } = setup('build/\n', many);
    expect((await planIncluded(root)).keep).toBeUndefined();
    const w = slot(1);
    await reset(root, w, true);
    plant(w.path);
    await reset(root, w, true);
    expect(files(w.path)).toContain('./build/m0.js');
    expect(files(w.path)).not.toContain('./build/nested');
    expect(files(w.path)).not.toContain('./ignored/other.txt');
  });
});
