import { describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { waitFor } from '../helpers/cli.js';
import { git, tempDir } from '../helpers/repo.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

/** A teammate's commit on the remote's main, from their own clone. */
function teammatePushes(clone: string, file: string): string {
  git(clone, 'fetch', '-q', 'origin');
  git(clone, 'reset', '-q', '--hard', 'origin/main');
  writeFileSync(join(clone, file), `${file} from a teammate\n`);
  git(clone, 'add', file);
  git(clone, 'commit', '-qm', `teammate adds ${file}`);
  git(clone, 'push', '-q', 'origin', 'HEAD:main');
  return git(clone, 'rev-parse', 'HEAD');
}

describe('a remote-tracking base (baseBranch origin/main)', () => {
  it('is fetched on a timer (behind shows a teammate’s push, new jobs start from it) and before landing; landing pushes to the remote by compare-and-swap and redoes when the remote moved', async () => {
    const remote = tempDir('sup-origin-');
    const clone = tempDir('sup-teammate-');
    cleanups.push(() => rmSync(remote, { recursive: true, force: true }));
    cleanups.push(() => rmSync(clone, { recursive: true, force: true }));
    const w = landingWorld(cleanups, {
      SUPERVISOR_BASE_BRANCH: 'origin/main',
      SUPERVISOR_LAND_FETCH_INTERVAL: '300',
    });
    git(remote, 'init', '-q', '--bare', '-b', 'main');
    git(w.dir, 'remote', 'add', 'origin', remote);
    git(w.dir, 'push', '-q', 'origin', 'main');
    git(w.dir, 'fetch', '-q', 'origin');
    git(clone, 'clone', '-q', remote, '.');
    const initial = git(w.dir, 'rev-parse', 'main');

    const a = await w.add('first', 'write: a.txt');
    await w.start(['--agents', '1']);
    const doneA = await w.waitStatus(a, ['done']);
    expect(doneA.behind).toBe(0);
    expect(doneA.runs![0].baseSha).toBe(initial);

    // A teammate pushes: the running supervisor fetches it; `behind` says so without a command.
    const t1 = teammatePushes(clone, 't1.txt');
    await waitFor(async () => ((await w.show(a)).behind === 1 ? true : false), {
      timeoutMs: 60_000,
      what: 'issue a behind by the teammate commit',
    });
    expect(git(w.dir, 'rev-parse', 'refs/remotes/origin/main')).toBe(t1);
    // A new job starts from the fresh tip.
    const b = await w.add('second', 'write: b.txt');
    const doneB = await w.waitStatus(b, ['done']);
    expect(doneB.runs![0].baseSha).toBe(t1);
    expect(git(w.dir, 'show', '--name-only', '--format=', `issue/${b}`)).toBe(
      'b.txt',
    );
    await w.cli(['stop']);

    // With no supervisor fetching any more: the teammate pushes again, and during the first
    // landing's check once more. `land` fetches first, and redoes the landing the remote refused.
    const t2 = teammatePushes(clone, 't2.txt');
    const race = tempDir('sup-race-');
    cleanups.push(() => rmSync(race, { recursive: true, force: true }));
    const marker = join(race, 'raced');
    const bases = join(race, 'bases');
    const check = `echo "$LAND_BASE_SHA" >> ${bases}; test -f ${marker} || { touch ${marker}; cd ${clone} && git fetch -q origin && git reset -q --hard origin/main && echo race > race.txt && git add race.txt && git -c user.name=t -c user.email=t@t commit -qm "teammate races the landing" && git push -q origin HEAD:main; }`;
    const landed = await w.cli(['land', '--all', '--json'], {
      SUPERVISOR_LAND_CHECK: check,
    });
    expect(landed.code, landed.stderr).toBe(0);
    const out = JSON.parse(landed.stdout) as Array<{
      issueId: number;
      result: string;
      landedSha: string;
      redone: number;
    }>;
    expect(out.map((o) => [o.issueId, o.result])).toEqual([
      [a, 'merged'],
      [b, 'merged'],
    ]);
    expect(out[0]!.redone).toBe(1);
    // The first check ran on t2: fetched before landing, not the tip of a minute ago.
    const checked = readFileSync(bases, 'utf8').trim().split('\n');
    expect(checked[0]).toBe(t2);
    expect(checked).toHaveLength(3);
    const tip = git(remote, 'rev-parse', 'main');
    expect(tip).toBe(out[1]!.landedSha);
    expect(git(w.dir, 'rev-parse', 'refs/remotes/origin/main')).toBe(tip);
    // Nothing the teammate pushed was overwritten: t1, t2 and the racing commit are all below.
    const subjects = git(remote, 'log', '--format=%s', 'main').split('\n');
    expect(subjects.slice(0, 3)).toEqual([
      'issue #2: second',
      'issue #1: first',
      'teammate races the landing',
    ]);
    for (const sha of [t1, t2])
      expect(
        git(remote, 'merge-base', '--is-ancestor', sha, 'main') === '',
      ).toBe(true);
    expect(git(remote, 'ls-tree', '--name-only', 'main').split('\n')).toEqual(
      expect.arrayContaining([
        'a.txt',
        'b.txt',
        't1.txt',
        't2.txt',
        'race.txt',
      ]),
    );
    // The user's own main is theirs: untouched.
    expect(git(w.dir, 'rev-parse', 'main')).toBe(initial);
  });
});
