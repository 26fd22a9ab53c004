import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useCleanups } from '../helpers/cleanup.js';
import { waitFor } from '../helpers/cli.js';
import { git, tempDir } from '../helpers/repo.js';
import { LandingStore } from '../../supervisor/land/landings.js';
import { openDatabase } from '../../supervisor/store/db.js';
import { IssueStore } from '../../supervisor/store/issues.js';
import { landingWorld } from './helpers.js';

const cleanups = useCleanups();

describe('landing survives kill -9', () => {
  it('a supervisor killed during land.check: the restart redoes the landing, the base moves exactly once', async () => {
    const marks = tempDir('sup-marks-');
    const w = landingWorld(cleanups, { SUPERVISOR_LAND_AUTO: 'true' });
    writeFileSync(
      join(w.dir, 'supervisor.config.json'),
      JSON.stringify({
        land: {
          check: `echo $$ > "${marks}/check.pid"; exec sleep 60`,
        },
      }),
    );
    writeFileSync(
      join(w.dir, '.git', 'info', 'exclude'),
      'supervisor.config.json\n',
      {
        flag: 'a',
      },
    );
    const before = git(w.dir, 'rev-parse', 'main');
    const id = await w.add('lands after a crash', 'write: a.txt');
    const sup = await w.start(['--agents', '1']);
    await w.waitStatus(id, ['landing']);
    await waitFor(() => existsSync(join(marks, 'check.pid')), {
      what: 'the check running',
    });
    sup.child.kill('SIGKILL');
    await sup.exited;
    // The orphaned check is ours to end (its group outlived the supervisor we killed).
    const checkPid = Number(readFileSync(join(marks, 'check.pid'), 'utf8'));
    try {
      process.kill(-checkPid, 'SIGKILL');
    } catch {
      /* gone */
    }
    expect(git(w.dir, 'rev-parse', 'main')).toBe(before);
    expect((await w.show(id)).status).toBe('landing');
    // Restarted with a check that passes: the interrupted attempt is undone and redone.
    await w.start(['--agents', '0'], { SUPERVISOR_LAND_CHECK: 'true' });
    const merged = await w
      .waitStatus(id, ['merged'], 60_000)
      .catch(async () => {
        throw new Error(`not merged: ${JSON.stringify(await w.show(id))}`);
      });
    expect(merged.landings!.map((l: any) => l.state)).toEqual([
      'interrupted',
      'merged',
    ]);
    expect(git(w.dir, 'rev-list', '--count', `${before}..main`)).toBe('1');
    expect(git(w.dir, 'rev-parse', 'main')).toBe(merged.landedSha);
  });

  it('a lander killed after moving the base but before SQLite: the next run records the landing from git, landing nothing twice', async () => {
    const w = landingWorld(cleanups);
    const id = await w.add('half landed', 'write: a.txt');
    const sup = await w.start(['--agents', '1']);
    await w.waitStatus(id, ['done']);
    await sup.stop();
    // What a lander killed between `git update-ref` and its transaction leaves behind.
    const candidate = git(
      w.dir,
      'commit-tree',
      '-p',
      'main',
      '-m',
      'landed',
      `issue/${id}^{tree}`,
    );
    const db = openDatabase(join(w.dir, '.supervisor', 'supervisor.db'));
    try {
      const issues = new IssueStore(db);
      const l = new LandingStore(db).start({
        issueId: id,
        attempt: 1,
        strategy: 'rebase',
        baseBranch: 'main',
        baseBefore: git(w.dir, 'rev-parse', 'main'),
        sourceSha: issues.require(id).commit!,
      });
      new LandingStore(db).setCandidate(
        l.id,
        git(w.dir, 'rev-parse', 'main'),
        candidate,
      );
      issues.update(id, { status: 'landing', landAttempts: 1 });
    } finally {
      db.close();
    }
    git(w.dir, 'merge', '-q', '--ff-only', candidate);
    const r = await w.cli(['land', '--all']);
    expect(r.code).toBe(0);
    const shown = await w.show(id);
    expect(shown).toMatchObject({ status: 'merged', landedSha: candidate });
    expect(shown.landings!.map((l: any) => l.state)).toEqual(['merged']);
    expect(git(w.dir, 'rev-parse', 'main')).toBe(candidate);
  });
});
