import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  copyIncludedFiles,
  describeSync,
  resyncWorktree,
} from '../../contract/worktreeinclude.js';
import { SupervisorError } from '../../supervisor/errors.js';
import { git, tempDir, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function repo(include: string): { dir: string; wt: string } {
  const r = tempRepo({
    files: {
      '.gitignore':
        '.env\n.env.worktree\n*.local.json\nsecrets/\nbuild/\nlink-*\n',
      'README.md': '# r\n',
      'tracked.local.txt': 'tracked\n',
    },
  });
  cleanups.push(r.cleanup);
  writeFileSync(join(r.dir, '.worktreeinclude'), include);
  const wt = join(r.dir, '.worktrees', 'agent-001');
  git(r.dir, 'worktree', 'add', '-q', '-b', 'agent/001', wt);
  return { dir: r.dir, wt };
}

async function refusal(p: Promise<unknown>): Promise<SupervisorError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SupervisorError);
  return err as SupervisorError;
}

describe('.worktreeinclude', () => {
  it('copies the ignored files it lists into a new worktree, and nothing else', async () => {
    const { dir, wt } = repo(
      '# local settings the app needs\n.env\nconfig/*.local.json\nsecrets/\nnot-ignored.txt\nbuild/\n',
    );
    writeFileSync(join(dir, '.env'), 'SECRET_KEY=dev\n');
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'app.local.json'), '{"debug":true}\n');
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'key.pem'), 'pem\n');
    writeFileSync(join(dir, 'not-ignored.txt'), 'untracked but not ignored\n');
    writeFileSync(join(dir, 'other.local.json'), 'ignored but not listed\n');
    const copied = await copyIncludedFiles(dir, wt);
    expect(copied.sort()).toEqual([
      '.env',
      'config/app.local.json',
      'secrets/key.pem',
    ]);
    expect(readFileSync(join(wt, '.env'), 'utf8')).toBe('SECRET_KEY=dev\n');
    expect(readFileSync(join(wt, 'secrets', 'key.pem'), 'utf8')).toBe('pem\n');
    expect(existsSync(join(wt, 'not-ignored.txt'))).toBe(false);
    expect(existsSync(join(wt, 'other.local.json'))).toBe(false);
    // The worktree stays clean for git: the copies are ignored there too.
    expect(git(wt, 'status', '--porcelain')).toBe('');
    // Unchanged copies are left as they are (one stat each, no rewrite).
    const ino = lstatSync(join(wt, 'secrets', 'key.pem')).ino;
    expect(await copyIncludedFiles(dir, wt)).toEqual([]);
    expect(lstatSync(join(wt, 'secrets', 'key.pem')).ino).toBe(ino);
  });

  it('re-syncs a changed source and a copy the agent edited; removes ignored files it does not list', async () => {
    const { dir, wt } = repo('.env\nsecrets/\n');
    writeFileSync(join(dir, '.env'), 'SECRET_KEY=old\n');
    mkdirSync(join(dir, 'secrets'));
    writeFileSync(join(dir, 'secrets', 'key.pem'), 'pem\n');
    expect(await resyncWorktree(dir, wt)).toEqual({
      copied: 2,
      updated: 0,
      unchanged: 0,
      removed: 0,
    });
    // The secret rotates in the main worktree (same size: the time tells).
    writeFileSync(join(dir, '.env'), 'SECRET_KEY=new\n');
    utimesSync(join(dir, '.env'), new Date(), new Date(Date.now() + 5000));
    // The agent edits a copy and leaves build output, an ignored settings file, an env file.
    writeFileSync(join(wt, 'secrets', 'key.pem'), 'tampered pem\n');
    mkdirSync(join(wt, 'build', 'deep'), { recursive: true });
    writeFileSync(join(wt, 'build', 'deep', 'out.js'), 'x\n');
    writeFileSync(join(wt, 'planted.local.json'), '{}\n');
    writeFileSync(join(wt, '.env.worktree'), 'PORT=1\n');
    writeFileSync(join(wt, 'untracked-plain.txt'), 'git clean handles me\n');
    const s = await resyncWorktree(dir, wt);
    expect(s).toEqual({ copied: 0, updated: 2, unchanged: 0, removed: 2 });
    expect(describeSync(s)).toBe('2 updated, 2 stray removed');
    expect(readFileSync(join(wt, '.env'), 'utf8')).toBe('SECRET_KEY=new\n');
    expect(readFileSync(join(wt, 'secrets', 'key.pem'), 'utf8')).toBe('pem\n');
    expect(existsSync(join(wt, 'build'))).toBe(false);
    expect(existsSync(join(wt, 'planted.local.json'))).toBe(false);
    // Ours and git's: .env.worktree stays; untracked, unignored files are the runner's clean.
    expect(existsSync(join(wt, '.env.worktree'))).toBe(true);
    expect(existsSync(join(wt, 'untracked-plain.txt'))).toBe(true);
    expect(await resyncWorktree(dir, wt)).toEqual({
      copied: 0,
      updated: 0,
      unchanged: 2,
      removed: 0,
    });
  });

  it('copies a symbolic link that stays inside the repository as a link', async () => {
    const { dir, wt } = repo('link-*\n');
    writeFileSync(join(dir, 'README.md'), '# r\n');
    symlinkSync('README.md', join(dir, 'link-readme'));
    expect(await copyIncludedFiles(dir, wt)).toEqual(['link-readme']);
    expect(lstatSync(join(wt, 'link-readme')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(wt, 'link-readme'))).toBe('README.md');
  });

  it('refuses entries that climb out of the repository or are absolute paths', async () => {
    const { dir, wt } = repo(
      '.env\n../outside.env\n/etc/passwd\n~/.ssh/id_rsa\nconfig/../../x\n',
    );
    const err = await refusal(copyIncludedFiles(dir, wt));
    expect(err.code).toBe('ERR_SUP_CONFIG');
    expect(err.message).toMatch(
      /line 2 "\.\.\/outside\.env" climbs out of the repository/,
    );
    expect(err.message).toMatch(/line 3 "\/etc\/passwd" is an absolute path/);
    expect(err.message).toMatch(
      /line 4 "~\/\.ssh\/id_rsa" names a home directory/,
    );
    expect(err.message).toMatch(/line 5 "config\/\.\.\/\.\.\/x" climbs out/);
    expect(err.hint).toMatch(/relative to its root/);
    expect(existsSync(join(wt, '.env'))).toBe(false);
  });

  it('accepts a leading slash that anchors at the repository root', async () => {
    const { dir, wt } = repo('/config/*.local.json\n');
    mkdirSync(join(dir, 'config'));
    writeFileSync(join(dir, 'config', 'db.local.json'), '{}\n');
    expect(await copyIncludedFiles(dir, wt)).toEqual(['config/db.local.json']);
  });

  it('refuses a listed file that is a symbolic link to outside the repository', async () => {
    const outside = tempDir('sup-outside-');
    writeFileSync(join(outside, 'secret'), 'not yours\n');
    const { dir, wt } = repo('link-*\n');
    symlinkSync(join(outside, 'secret'), join(dir, 'link-secret'));
    const err = await refusal(copyIncludedFiles(dir, wt));
    expect(err.message).toMatch(
      /"link-secret" is a symbolic link to .*secret, outside the repository/,
    );
    expect(existsSync(join(wt, 'link-secret'))).toBe(false);
  });
});
