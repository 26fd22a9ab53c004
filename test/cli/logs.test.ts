import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CLI,
  WatchedProcess,
  cliJson,
  runCli,
  startSupervisor,
  testEnv,
  waitFor,
} from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';
import { envPrefix, inTerminal } from '../helpers/terminal.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TIME = /^\d\d:\d\d:\d\d /;

describe('supervisor logs and everyday CLI behaviour', () => {
  it('logs: a time on every line, attempt start and end lines, --grep, --since, escaped output, colour only on a TTY', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const env = testEnv();
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    await runCli(
      [
        'issue',
        'add',
        'title with \x1b]0;pwned\x07 in it',
        '--body',
        'sleep: 450',
      ],
      { cwd: dir, env },
    );
    await waitFor(
      async () =>
        (
          await cliJson<Array<{ status: string }>>(['issue', 'list'], {
            cwd: dir,
            env,
          })
        )[0]?.status === 'done',
      { what: 'issue done', timeoutMs: 60_000 },
    );
    const all = await runCli(['logs', 'agent-001'], { cwd: dir, env });
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trimEnd().split('\n');
    for (const l of lines) expect(l).toMatch(TIME);
    const start = lines.findIndex((l) =>
      / --- agent-001 issue-1 attempt 1 \[issue-1-attempt-1\.log\]: title with \\x1b\]0;pwned\\x07 in it$/.test(
        l,
      ),
    );
    const end = lines.findIndex((l) => / --- end: agent exited 0$/.test(l));
    expect(start).toBeGreaterThanOrEqual(0);
    expect(end).toBeGreaterThan(start);
    expect(
      lines.slice(start, end).some((l) => / working… 200 ms$/.test(l)),
    ).toBe(true);
    expect(all.stdout).not.toContain('\x1b'); // no colour into a pipe, and the title escaped

    const grep = await runCli(['logs', '--grep', 'WORKING'], { cwd: dir, env });
    const got = grep.stdout.trimEnd().split('\n');
    expect(got.length).toBeGreaterThanOrEqual(2);
    for (const l of got)
      expect(l).toMatch(/^\d\d:\d\d:\d\d agent-001 \| working… \d+ ms$/);
    expect(
      (await runCli(['logs', '--since', '2099-01-01'], { cwd: dir, env }))
        .stdout,
    ).toBe('');
    expect(
      (await runCli(['logs', '--since', '1h'], { cwd: dir, env })).stdout,
    ).toContain('--- end: agent exited 0');
    const bad = await runCli(['logs', '--since', 'yesterday-ish'], {
      cwd: dir,
      env,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since must be a duration/);

    // On a terminal: colours (SGR) around our own parts, and none with NO_COLOR.
    const run = (extra: string) =>
      inTerminal(
        `cd ${dir}\n${extra} ${process.execPath} ${CLI} logs`,
        cleanups,
        {
          width: 200,
          height: 60,
          colours: true,
        },
      );
    expect((await run(envPrefix(env))).screen).toMatch(/\x1b\[\d+magent-001/);
    expect((await run(`${envPrefix(env)} NO_COLOR=1`)).screen).not.toMatch(
      /\x1b\[\d+m/,
    );
  });

  it('agent output is written once, to its attempt log; logs --follow shows it live between the attempt lines', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const env = testEnv();
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '1',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const gate = join(
      tempDir('sup-gate-'),
      `go-${randomBytes(4).toString('hex')}`,
    );
    const logDir = join(dir, '.supervisor', 'logs');
    await waitFor(() => existsSync(join(logDir, 'agent-001.log')), {
      what: "the runner's log",
    });
    const follow = new WatchedProcess(
      spawn(process.execPath, [CLI, 'logs', 'agent-001', '--follow'], {
        cwd: dir,
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    cleanups.push(() => follow.child.kill('SIGTERM'));
    await runCli(['issue', 'add', 'gated', '--body', `wait-file: ${gate}`], {
      cwd: dir,
      env,
    });
    // Followed while the agent runs: its lines arrive before it has finished.
    await waitFor(() => follow.output.includes(`waiting for ${gate}`), {
      what: "the running agent's output in logs --follow",
      timeoutMs: 60_000,
    });
    writeFileSync(gate, '');
    await waitFor(() => follow.output.includes('--- end: agent exited 0'), {
      what: "the attempt's end in logs --follow",
      timeoutMs: 60_000,
    });
    const lines = follow.output.trimEnd().split('\n');
    const start = lines.findIndex((l) =>
      / --- agent-001 issue-1 attempt 1 \[issue-1-attempt-1\.log\]: gated$/.test(
        l,
      ),
    );
    const first = lines.findIndex((l) => l.includes(`waiting for ${gate}`));
    const end = lines.findIndex((l) => l.includes('--- end: agent exited 0'));
    expect(start, follow.output).toBeGreaterThanOrEqual(0);
    expect(first).toBeGreaterThan(start);
    expect(end).toBeGreaterThan(first);
    // One copy on disk: the first "waiting" line is in exactly one file under the log directory.
    const files = (readdirSync(logDir, { recursive: true }) as string[])
      .map((f) => join(logDir, f))
      .filter((f) => statSync(f).isFile());
    const needle = `waiting for ${gate}… 0 ms`;
    const copies = files.flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .filter((l) => l.endsWith(needle))
        .map(() => f),
    );
    expect(copies).toEqual([
      join(logDir, 'agent-001', 'issue-1-attempt-1.log'),
    ]);
    // And the history view splices it in the same way.
    const history = await runCli(['logs', 'agent-001', '--grep', needle], {
      cwd: dir,
      env,
    });
    expect(history.stdout.trimEnd().split('\n')).toHaveLength(1);
  });

  it('ends quietly when the reader goes away (| head -1), and bare supervisor prints help', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const env = testEnv();
    const big = join(tempDir('sup-big-'), 'body');
    writeFileSync(big, `${'a line of the body\n'.repeat(200_000)}`);
    const add = await runCli(['issue', 'add', 'big', '--body-file', big], {
      cwd: repo.dir,
      env,
    });
    expect(add.code, add.stderr).toBe(0);
    for (const args of ['issue show 1', 'issue show 1 --raw', 'status']) {
      const r = spawnSync(
        'bash',
        ['-c', `set -o pipefail; ${process.execPath} ${CLI} ${args} | head -1`],
        { cwd: repo.dir, env: { ...process.env, ...env }, encoding: 'utf8' },
      );
      expect(r.status, `${args}: ${r.stderr}`).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout.split('\n').length).toBe(2);
    }
    const bare = await runCli([], { cwd: repo.dir, env });
    expect(bare.code).toBe(0);
    expect(bare.stdout).toMatch(/^Usage: supervisor \[options\] \[command\]/);
    expect(bare.stdout).toMatch(/\n {2}logs /);
  });
});

describe('status at 80 columns', () => {
  it('wraps long titles and notes inside their column, between words, within the width', async () => {
    const repo = tempRepo();
    cleanups.push(repo.cleanup);
    const dir = repo.dir;
    const env = testEnv();
    const sup = await startSupervisor(dir, env, [
      '--agents',
      '2',
      '--no-dashboard',
    ]);
    cleanups.push(async () => void (await sup.stop()));
    const title =
      'Refactor the configuration loader so that environment overrides are validated together with the file';
    for (let i = 0; i < 2; i++)
      await runCli(['issue', 'add', title, '--body', 'sleep: 20000'], {
        cwd: dir,
        env,
      });
    await waitFor(
      async () =>
        (
          await cliJson<{ agents: Array<{ state: string }> }>(['status'], {
            cwd: dir,
            env,
          })
        ).agents.filter((a) => a.state === 'working').length === 2,
      { what: 'two agents working', timeoutMs: 60_000 },
    );
    const check = (out: string) => {
      const lines = out.trimEnd().split('\n');
      for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
      // Every word of the title is whole on some line (none cut by a wrap).
      const words = new Set(lines.flatMap((l) => l.split(/\s+/)));
      for (const w of title.split(' ')) expect(words).toContain(w);
      expect(lines.some((l) => /^agent-001\s+working\s+#\d /.test(l))).toBe(
        true,
      );
    };
    check(
      (await runCli(['status'], { cwd: dir, env: { ...env, COLUMNS: '80' } }))
        .stdout,
    );
    // In a real 80-column terminal, the terminal's width is used.
    const { screen } = await inTerminal(
      `cd ${dir}\n${envPrefix(env)} ${process.execPath} ${CLI} status`,
      cleanups,
      { width: 80, height: 50 },
    );
    check(screen);
  });
});
