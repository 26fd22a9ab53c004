/**
 * Every command with malformed, hostile and boundary arguments: usage errors exit 2, failures
 * exit 1, both say what was wrong on stderr and print nothing on stdout (also with --json), and
 * nothing is stored or started. (test/cli covers priorities, empty/long titles, big bodies and
 * agent counts of `scale`; this walks the rest of `supervisor --help`.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliJson, runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/repo.js';
import { cleanupList, isolatedRepo, runAll } from './util.js';

const cleanups = cleanupList();
afterEach(() => cleanups.run());

type Case = [args: string[], code: 1 | 2, stderr: RegExp];

describe('CLI arguments', () => {
  it('refuses malformed, hostile and boundary arguments of every command, printing nothing on stdout', async () => {
    const { dir, env } = isolatedRepo(cleanups, { SUPERVISOR_MAX_AGENTS: '4' });
    const file = join(tempDir(), 'plain-file');
    writeFileSync(file, 'not a repository\n');
    const plainDir = tempDir();
    await cliJson(['issue', 'add', 'The only issue'], { cwd: dir, env });
    const big = '99999999999999999999';
    const cases: Case[] = [
      // global
      [['--bogus', 'status'], 2, /unknown option '--bogus'/],
      [['status', '--bogus', '--json'], 2, /unknown option '--bogus'/],
      [['bogus'], 2, /unknown command 'bogus'/],
      [['--repo', file, 'status', '--json'], 1, /is not a directory/],
      [
        ['--repo', join(plainDir, 'missing'), 'issue', 'list', '--json'],
        1,
        /is not a directory/,
      ],
      [
        ['--repo', plainDir, 'issue', 'list', '--json'],
        1,
        /not inside a git repository[\s\S]*hint: run `git init`/,
      ],
      // init
      // issue add / list / show
      [['issue', 'add'], 2, /missing required argument 'title'/],
      [['issue', 'add', 'x', '--priority'], 2, /argument missing/],
      [
        ['issue', 'add', 'x', '--priority', 'URGENT', '--json'],
        2,
        /unknown priority "URGENT"[\s\S]*hint: use one of/,
      ],
      [['issue', 'add', '\n\t \r\n'], 2, /title is empty/],
      [
        ['issue', 'add', 'x', '--body-file', plainDir, '--json'],
        2,
        /cannot read --body-file.*EISDIR/,
      ],
      [
        ['issue', 'list', '--status', 'DONE', '--json'],
        2,
        /unknown status "DONE"/,
      ],
      ...['0', '-1', '1e3', ' ', big, '9007199254740993'].map((id): Case => [
        ['issue', 'show', id, '--json'],
        2,
        /positive whole number|unknown option/,
      ]),
      [
        ['issue', 'show', '99', '--json'],
        1,
        /issue #99 does not exist[\s\S]*hint:/,
      ],
      [['issue', 'bogus'], 2, /unknown command 'bogus'/],
      // start: nothing may be started by a refused start
      [
        ['start', '--agents', '-1', '--no-dashboard'],
        2,
        /unknown option|whole number/,
      ],
      [
        ['start', '--agents', big, '--no-dashboard'],
        2,
        /above the maximum of 4/,
      ],
      [
        ['start', '--max-agents', 'abc', '--no-dashboard'],
        2,
        /--max-agents must be a whole number, got "abc"/,
      ],
      [
        ['start', '--max-agents', '0', '--no-dashboard'],
        1,
        /maxAgents: Number must be greater than or equal to 1/,
      ],
      [
        ['start', '--dashboard-port', 'abc'],
        2,
        /--dashboard-port must be a whole number/,
      ],
      [
        ['start', '--dashboard-port', '99999'],
        1,
        /dashboard.port: Number must be less than or equal to 65535/,
      ],
      [
        ['start', '--dashboard-host', '0.0.0.0'],
        1,
        /reachable from other machines[\s\S]*hint: set SUPERVISOR_DASHBOARD_TOKEN/,
      ],
      [
        ['start', '--runtime', 'bogus', '--no-dashboard'],
        1,
        /runtime: Invalid enum value/,
      ],
      [
        ['start', '--agent', 'bogus', '--no-dashboard'],
        1,
        /agentPreset: Invalid enum value/,
      ],
      [
        ['start', '--progress-timeout', 'soon', '--no-dashboard'],
        1,
        /not a duration: "soon"/,
      ],
      // scale (counts themselves: test/cli)
      [['scale'], 2, /scale needs an agent count or --auto MIN\.\.MAX/],
      [
        ['scale', '1', '--timeout', 'abc'],
        2,
        /--timeout must be a number of seconds, got "abc"/,
      ],
      // status / stop / cleanup
      [['status', 'extra'], 2, /too many arguments/],
      [
        ['stop', '--timeout', 'forever', '--json'],
        2,
        /--timeout must be a number of seconds/,
      ],
      [
        ['cleanup', '--drop-databases=yes'],
        2,
        /does not take an argument|unknown option/,
      ],
      // logs: slot ids (path traversal: test/security), line counts
      [['logs', 'agent-1'], 2, /"agent-1" is not an agent id/],
      [
        ['logs', '--lines', 'abc'],
        2,
        /--lines must be a whole number, got "abc"/,
      ],
      [['logs', '--lines', big], 2, /--lines must be a whole number/],
      // dashboard / infra
      [
        ['dashboard', '--port', 'abc'],
        2,
        /--port must be a whole number, got "abc"/,
      ],
      [['dashboard', '--host', '0.0.0.0'], 1, /reachable from other machines/],
      [['infra', 'bogus'], 2, /unknown command 'bogus'/],
    ];
    const results = await runAll(
      cases.map((c) => c[0]),
      { cwd: dir, env },
    );
    cases.forEach(([args, code, stderr], i) => {
      const r = results[i]!;
      const what = `supervisor ${JSON.stringify(args)}: ${r.stderr}`;
      expect(r.code, what).toBe(code);
      expect(r.stderr, what).toMatch(stderr);
      expect(r.stdout, what).toBe('');
      // No stack traces, no "undefined"/"NaN" leaking out of a bad parse.
      expect(r.stderr, what).not.toMatch(/\n\s+at |\bNaN\b|undefined/);
    });
    // Nothing stored, nothing started, no worktree made.
    expect(
      (await cliJson<any[]>(['issue', 'list'], { cwd: dir, env })).map(
        (i) => i.title,
      ),
    ).toEqual(['The only issue']);
    expect(existsSync(join(dir, '.supervisor', 'supervisor.pid'))).toBe(false);
    expect(existsSync(join(dir, '.worktrees'))).toBe(false);
    expect(
      (await cliJson<any>(['status'], { cwd: dir, env })).supervisor.running,
    ).toBe(false);
  });

  it('takes boundary values that are valid: a title starting with "-", 1000 characters, --lines 0 and huge', async () => {
    const { dir, env } = isolatedRepo(cleanups);
    const dash = await runCli(['issue', 'add', '--json', '--', '--amend'], {
      cwd: dir,
      env,
    });
    expect(dash.code).toBe(0);
    expect(JSON.parse(dash.stdout).title).toBe('--amend');
    const long = await cliJson<any>(['issue', 'add', 'y'.repeat(1000)], {
      cwd: dir,
      env,
    });
    expect(long.title).toHaveLength(1000);
    const maxId = await runCli(
      ['issue', 'show', String(Number.MAX_SAFE_INTEGER), '--json'],
      { cwd: dir, env },
    );
    expect(maxId.code).toBe(1);
    expect(maxId.stderr).toContain(
      `#${Number.MAX_SAFE_INTEGER} does not exist`,
    );
    const logDir = join(dir, '.supervisor', 'logs');
    mkdirSync(logDir, { recursive: true });
    writeFileSync(
      join(logDir, 'agent-001.log'),
      Array.from({ length: 50 }, (_, i) => `line ${i + 1}`).join('\n') + '\n',
    );
    const none = await runCli(['logs', 'agent-001', '--lines', '0'], {
      cwd: dir,
      env,
    });
    expect(none).toMatchObject({ code: 0, stdout: '' });
    const all = await runCli(
      ['logs', '--lines', String(Number.MAX_SAFE_INTEGER)],
      { cwd: dir, env },
    );
    expect(all.code).toBe(0);
    expect(all.stdout.trim().split('\n')).toHaveLength(50);
    expect(all.stdout).toMatch(/^agent-001 \| line 1$/m);
    const stop = await cliJson<any>(['stop', '--timeout', '0.5'], {
      cwd: dir,
      env,
    });
    expect(stop).toEqual({ stopped: false, running: false });
  });
});
