import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { git, tempDir } from '../helpers/repo.js';
import { landingWorld, type IssueJson } from './helpers.js';

const cleanups = useCleanups();

/** Issues worked to done by the real pipeline (scripted agents), then the supervisor stopped. */
async function doneIssues(
  w: ReturnType<typeof landingWorld>,
  bodies: string[],
): Promise<number[]> {
  const ids: number[] = [];
  for (const [k, b] of bodies.entries())
    ids.push(await w.add(`issue ${k + 1}`, b));
  const sup = await w.start(['--agents', '2']);
  for (const id of ids) await w.waitStatus(id, ['done']);
  await sup.stop();
  return ids;
}

function config(dir: string, land: Record<string, unknown>): void {
  writeFileSync(join(dir, 'supervisor.config.json'), JSON.stringify({ land }));
  // The config file is the user's; it is not part of what lands.
  writeFileSync(
    join(dir, '.git', 'info', 'exclude'),
    'supervisor.config.json\n',
    {
      flag: 'a',
    },
  );
}

describe('supervisor land', () => {
  it('lands clean issues in order, pushes to a bare remote, holds a failed check, and refuses a dirty checkout losing nothing', async () => {
    const w = landingWorld(cleanups);
    const remote = tempDir('sup-remote-');
    cleanups.push(() => rmSync(remote, { recursive: true, force: true }));
    git(remote, 'init', '-q', '--bare');
    git(w.dir, 'remote', 'add', 'origin', remote);
    git(w.dir, 'push', '-q', 'origin', 'main');
    config(w.dir, {
      push: 'origin',
      // c.txt fails the check; everything else passes.
      check:
        'echo "checking #$LAND_ISSUE_ID (control plane: ${SUPERVISOR_PREFIX:-hidden})"; test ! -f c.txt || { echo "c.txt is not allowed" >&2; exit 1; }',
      onCheckFailure: 'hold',
    });
    const [a, b, c] = await doneIssues(w, [
      'write: a.txt',
      'write: b.txt',
      'write: c.txt',
    ]);
    const before = git(w.dir, 'rev-parse', 'main');

    // A dirty checkout of main: refused, nothing changed, nothing lost.
    writeFileSync(join(w.dir, 'README.md'), 'my unsaved work\n');
    const dirty = await w.cli(['land', String(a)]);
    expect(dirty.code).toBe(1);
    expect(dirty.stderr).toMatch(/uncommitted changes \(README\.md\)/);
    expect(dirty.stderr).toMatch(/hint: commit or stash them/);
    expect(readFileSync(join(w.dir, 'README.md'), 'utf8')).toBe(
      'my unsaved work\n',
    );
    expect(git(w.dir, 'rev-parse', 'main')).toBe(before);
    expect((await w.show(a!)).status).toBe('done');
    git(w.dir, 'checkout', '--', 'README.md');

    const dry = await w.json<any[]>(['land', '--all', '--dry-run']);
    expect(dry.map((r) => r.result)).toEqual([
      'would-land',
      'would-land',
      'would-land',
    ]);
    expect(git(w.dir, 'rev-parse', 'main')).toBe(before);

    const r = await w.cli(['land', String(b), String(a), String(c), '--json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as any[];
    expect(out.map((o) => [o.issueId, o.result])).toEqual([
      [b, 'merged'],
      [a, 'merged'],
      [c, 'check-failed'],
    ]);
    // The agent's code under check never sees the control plane's settings.
    expect(out[2].checkLog).toMatch(
      /checking #3 \(control plane: hidden\)\nc\.txt is not allowed/,
    );
    // b then a on top of the old main, each landed commit the one recorded; c never landed.
    const log = git(w.dir, 'log', '--format=%H %s', `${before}..main`)
      .split('\n')
      .map((l) => l.split(' ')[0]);
    expect(log).toEqual([out[1].landedSha, out[0].landedSha]);
    expect(existsSync(join(w.dir, 'a.txt'))).toBe(true); // fast-forwarded checkout
    expect(existsSync(join(w.dir, 'c.txt'))).toBe(false);
    expect(git(w.dir, 'status', '--porcelain')).toBe('');
    expect(git(remote, 'rev-parse', 'main')).toBe(
      git(w.dir, 'rev-parse', 'main'),
    );
    const shownA = await w.show(a!);
    expect(shownA).toMatchObject({
      status: 'merged',
      landedSha: out[1].landedSha,
      landAttempts: 1, // the refusal came before any attempt
    });
    expect(shownA.landings!.map((l) => l.state)).toEqual(['merged']);
    expect(shownA.history!.slice(-2).map((h) => [h.to, h.actor])).toEqual([
      ['landing', 'lander'],
      ['merged', 'lander'],
    ]);
    const shownC = await w.show(c!);
    expect(shownC.status).toBe('check-failed');
    expect(shownC.landings![0].checkLog).toMatch(/c\.txt is not allowed/);
    expect(shownC.error).toMatch(/land\.check failed: c\.txt is not allowed/);
    const list = await w.cli(['issue', 'list']);
    expect(list.stdout).toMatch(/merged/);
    // cleanup --merged: the branches of merged issues go, the held one stays.
    const cleaned = await w.json<any>(['cleanup', '--merged']);
    expect(cleaned.removed.sort()).toEqual([`issue/${a}`, `issue/${b}`].sort());
    expect(git(w.dir, 'branch', '--list', 'issue/*')).toMatch(
      new RegExp(`issue/${c}`),
    );
    expect(git(w.dir, 'branch', '--list', `issue/${a}`)).toBe('');
  });

  it('redoes a landing on the new tip when someone else moved the base meanwhile; nothing is overwritten', async () => {
    const w = landingWorld(cleanups);
    const flag = join(tempDir('sup-flag-'), 'moved');
    // The user's checkout is on another branch: main moves by compare-and-swap alone.
    config(w.dir, {
      check: `if [ ! -f "${flag}" ]; then touch "${flag}"; git -C "${w.dir}" branch -f main "$(git -C "${w.dir}" commit-tree -p main -m 'someone else' 'main^{tree}')"; fi`,
    });
    const [a] = await doneIssues(w, ['write: a.txt']);
    git(w.dir, 'checkout', '-q', '-b', 'elsewhere');
    const out = await w.json<any[]>(['land', String(a)]);
    expect(out[0]).toMatchObject({ result: 'merged', redone: 1 });
    const subjects = git(w.dir, 'log', '--format=%s', 'main', '-3').split('\n');
    expect(subjects[1]).toBe('someone else');
    expect(git(w.dir, 'rev-parse', 'main')).toBe(out[0].landedSha);
    expect(
      git(w.dir, 'show', '--name-only', '--format=', 'main').split('\n'),
    ).toEqual(['a.txt']);
  });

  it('a conflicting second issue is held with its files when land.onConflict is hold', async () => {
    const w = landingWorld(cleanups);
    config(w.dir, { onConflict: 'hold' });
    const [a, b] = await doneIssues(w, ['write: same.txt', 'write: same.txt']);
    const r = await w.cli(['land', '--all', '--json']);
    expect(r.code).toBe(1); // one did not land
    expect(
      (JSON.parse(r.stdout) as any[]).map((o) => [o.issueId, o.result]),
    ).toEqual([
      [a, 'merged'],
      [b, 'conflict'],
    ]);
    const list = await w.list();
    const byId = new Map(list.map((i: IssueJson) => [i.id, i]));
    expect(byId.get(a!)!.status).toBe('merged');
    expect(byId.get(b!)).toMatchObject({
      status: 'conflict',
      conflictFiles: ['same.txt'],
    });
  });
});
