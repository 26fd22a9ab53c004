/**
 * The ref watch reads `main`, `issue/*` and tags from git's files (git/ref-files.ts)
 * instead of a git process: what it reads must be what `git for-each-ref` says — loose and
 * packed refs, nested tags, a loose ref overriding its packed one, a ref rewritten in place with
 * the same size a moment after it was read — and anything not plain is left to git.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RefFiles } from '../../git/ref-files.js';
import { git, tempRepo } from '../helpers/repo.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const NAMES = ['refs/heads/main', 'refs/heads/issue', 'refs/tags'];

function forEachRef(dir: string): Map<string, string> {
  const out = git(
    dir,
    'for-each-ref',
    '--format=%(refname) %(objectname)',
    ...NAMES,
  );
  return new Map(
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' ') as [string, string]),
  );
}

describe('refs read from files', () => {
  it('equal what git for-each-ref says, through packing, in-place rewrites and new refs', () => {
    const r = tempRepo();
    cleanups.push(r.cleanup);
    const dir = r.dir;
    const first = git(dir, 'rev-parse', 'HEAD');
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'two');
    const second = git(dir, 'rev-parse', 'HEAD');
    for (let i = 1; i <= 5; i++) git(dir, 'branch', `issue/${i}`, first);
    git(dir, 'tag', 'v1', first);
    git(dir, 'tag', '-a', '-m', 'annotated', 'issue/7', second);
    git(dir, 'branch', 'other', first); // not watched
    const refs = new RefFiles(join(dir, '.git'));
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
    // Packed, then some loose again on top of the packed ones.
    git(dir, 'pack-refs', '--all');
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
    git(dir, 'update-ref', 'refs/heads/issue/2', second);
    git(dir, 'branch', 'issue/6', second);
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
    // Rewritten in place with the same size, right after being read.
    const loose = join(dir, '.git', 'refs', 'heads', 'issue', '2');
    expect(refs.read(NAMES)!.get('refs/heads/issue/2')).toBe(second);
    writeFileSync(loose, `${first}\n`);
    expect(refs.read(NAMES)!.get('refs/heads/issue/2')).toBe(first);
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
    // Deleted, loose and packed.
    git(dir, 'update-ref', '-d', 'refs/heads/issue/2');
    git(dir, 'update-ref', '-d', 'refs/heads/issue/6');
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
  });

  it('never miss a ref while git pack-refs moves it from its loose file into packed-refs', async () => {
    const r = tempRepo();
    cleanups.push(r.cleanup);
    const dir = r.dir;
    const a = git(dir, 'rev-parse', 'HEAD');
    git(dir, 'commit', '-q', '--allow-empty', '-m', 'two');
    const b = git(dir, 'rev-parse', 'HEAD');
    const refs = new RefFiles(join(dir, '.git'));
    let reads = 0;
    for (let round = 0; round < 12; round++) {
      // Every ref loose again, at a value that differs from the one packed last round.
      const sha = round % 2 ? a : b;
      const names = Array.from(
        { length: 300 },
        (_, i) => `refs/heads/issue/${i + 1}`,
      );
      execFileSync('git', ['update-ref', '--stdin'], {
        cwd: dir,
        input: names.map((n) => `update ${n} ${sha}\n`).join(''),
      });
      const want = forEachRef(dir);
      const pack = new Promise<void>((resolve, reject) =>
        execFile('git', ['pack-refs', '--all'], { cwd: dir }, (err) =>
          err ? reject(err) : resolve(),
        ),
      );
      let done = false;
      void pack.finally(() => (done = true));
      while (!done) {
        let got: Map<string, string> | undefined;
        try {
          got = refs.read(NAMES);
        } catch {
          got = undefined; // a file went away while read: the caller asks git
        }
        if (got) {
          reads++;
          expect(got).toEqual(want);
        }
        await new Promise((res) => setImmediate(res));
      }
      await pack;
      expect(refs.read(NAMES)).toEqual(want);
    }
    expect(reads).toBeGreaterThan(0);
  });

  it('leaves to git what is not plain: a symbolic ref, a lock file', () => {
    const r = tempRepo();
    cleanups.push(r.cleanup);
    const dir = r.dir;
    const refs = new RefFiles(join(dir, '.git'));
    const issueDir = join(dir, '.git', 'refs', 'heads', 'issue');
    mkdirSync(issueDir, { recursive: true });
    writeFileSync(join(issueDir, '1'), 'ref: refs/heads/main\n');
    expect(refs.read(NAMES)).toBeUndefined();
    writeFileSync(join(issueDir, '1'), `${git(dir, 'rev-parse', 'HEAD')}\n`);
    expect(refs.read(NAMES)).toEqual(forEachRef(dir));
    writeFileSync(join(issueDir, '2.lock'), '');
    expect(refs.read(NAMES)).toBeUndefined();
  });
});
