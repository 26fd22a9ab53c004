/**
 * An unreadable repository or supervisor state. Tests run as root in CI, where chmod does not stop
 * reads, so the CLI runs as `nobody` (setpriv) against a repository nobody owns, with the modes
 * taken away one at a time. Each case says what cannot be read and how to fix it (before: "not a
 * git repository", "run `supervisor init`" over existing state, or a hint about a damaged file),
 * exits 1, and changes nothing. Needs root and setpriv: fails under CI without them.
 */
import { afterEach, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, cliJson, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/repo.js';
import { describeNeeds, needsRoot } from '../helpers/requirements.js';
import { cleanupList, hasCommand, isolatedRepo } from './util.js';

const cleanups = cleanupList();
afterEach(() => cleanups.run());

const NOBODY = 65534;

function chownTree(path: string, uid: number, gid: number): void {
  const r = spawnSync('chown', ['-R', `${uid}:${gid}`, path], {
    stdio: 'ignore',
  });
  if (r.status !== 0)
    throw new Error(`chown -R ${uid}:${gid} ${path} exited ${r.status}`);
}

/** The CLI as user nobody. */
function asNobody(
  args: string[],
  env: Record<string, string>,
  home: string,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'setpriv',
      [
        '--reuid=nobody',
        '--regid=nogroup',
        '--clear-groups',
        '--',
        process.execPath,
        CLI,
        ...args,
      ],
      {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describeNeeds(
  needsRoot('it runs the CLI as nobody') ??
    (hasCommand('setpriv') ? undefined : 'needs setpriv (util-linux)'),
  'unreadable repository or state (as user nobody)',
  () => {
    it('says what cannot be read and how to fix it, for each part in turn', async () => {
      const { dir, env } = isolatedRepo(cleanups);
      await cliJson(['issue', 'add', 'kept'], { cwd: dir, env });
      const home = tempDir('sup-home-');
      chownTree(home, NOBODY, NOBODY);
      // tempRepo's directory is 0700 and its parent /tmp is world-searchable.
      chownTree(dir, NOBODY, NOBODY);
      cleanups.add(() => chownTree(dir, 0, 0));
      const state = join(dir, '.supervisor');
      const db = join(state, 'supervisor.db');
      const run = (...args: string[]) =>
        asNobody(['--repo', dir, ...args], env, home);

      // Baseline: readable by its owner.
      const ok = await run('issue', 'list', '--json');
      expect(ok.code, ok.stderr).toBe(0);
      expect(JSON.parse(ok.stdout).map((i: any) => i.title)).toEqual(['kept']);

      const cases: Array<
        [
          what: string,
          path: string,
          mode: number,
          args: string[],
          says: RegExp,
          hint: RegExp,
        ]
      > = [
        [
          'repository directory',
          dir,
          0o000,
          ['status', '--json'],
          /cannot be read by this user \(EACCES\)/,
          /hint: fix its permissions \(ls -ld .*\) or run the supervisor as the repository's owner/,
        ],
        [
          '.git',
          join(dir, '.git'),
          0o000,
          ['issue', 'list', '--json'],
          /not inside a git repository \(or it cannot be read\)/,
          /hint: /,
        ],
        [
          '.supervisor',
          state,
          0o000,
          ['issue', 'add', 'new', '--json'],
          /cannot read the supervisor state in .*\.supervisor: EACCES/,
          /hint: check that .*\.supervisor is readable and writable by this user/,
        ],
        [
          'supervisor.db',
          db,
          0o000,
          ['issue', 'list', '--json'],
          /cannot open the supervisor database .*: unable to open database file/,
          /hint: check that .*supervisor\.db and its directory exist and are readable and writable/,
        ],
        [
          'supervisor.db read-only',
          db,
          0o444,
          ['issue', 'add', 'new', '--json'],
          /attempt to write a readonly database/,
          /hint: the supervisor database .* is not writable by this user/,
        ],
      ];
      for (const [what, path, mode, args, says, hint] of cases) {
        const before = statSync(path).mode & 0o777;
        chmodSync(path, mode);
        try {
          const r = await run(...args);
          expect(r.code, `${what}: ${r.stderr}`).toBe(1);
          expect(r.stdout, what).toBe('');
          expect(r.stderr, what).toMatch(says);
          expect(r.stderr, what).toMatch(hint);
          expect(r.stderr, what).not.toMatch(/run `supervisor init`/);
        } finally {
          chmodSync(path, before);
        }
      }
      // A repository owned by someone else: git's "dubious ownership", with the way to trust it.
      chownTree(dir, 0, 0);
      chmodSync(dir, 0o755);
      const foreign = await run('status');
      expect(foreign.code).toBe(1);
      expect(foreign.stderr).toMatch(
        /git says "detected dubious ownership in repository/,
      );
      expect(foreign.stderr).toMatch(
        /hint: the repository belongs to another user; .*git config --global --add safe.directory/,
      );
      // Nothing was changed by any of it.
      expect(
        (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env })).map(
          (i) => i.title,
        ),
      ).toEqual(['kept']);
      expect(
        readFileSync(join(dir, '.git', 'info', 'exclude'), 'utf8'),
      ).toMatch(/\/\.supervisor\//);
    });
  },
);
