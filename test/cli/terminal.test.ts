import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cliJson, runCli, testEnv } from '../helpers/cli.js';
import { tempRepo } from '../helpers/repo.js';
import { inTerminal } from '../helpers/terminal.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

// Clear screen, retitle (OSC 0), clipboard write (OSC 52), a hidden link (OSC 8), a C1 CSI,
// and a right-to-left override.
const HOSTILE =
  'A\x1b[2JB\x1b]0;pwned\x07C\x1b]52;c;cHduZWQ=\x07D' +
  '\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\E\u009b31mF\u202eG\u2066H';
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

async function hostileRepo() {
  const repo = tempRepo();
  cleanups.push(repo.cleanup);
  const env = testEnv();
  const add = await runCli(
    ['issue', 'add', HOSTILE, '--body', `body ${HOSTILE}\nsecond line`],
    { cwd: repo.dir, env },
  );
  expect(add.code, add.stderr).toBe(0);
  return { dir: repo.dir, env };
}

describe('terminal-safe output', () => {
  it('issue show, issue list and errors escape control characters and bidi overrides; --json is exact; --raw opts out', async () => {
    const { dir, env } = await hostileRepo();
    const show = await runCli(['issue', 'show', '1'], { cwd: dir, env });
    expect(show.code).toBe(0);
    expect(show.stdout).not.toMatch(UNSAFE);
    expect(show.stdout).toContain(
      'A\\x1b[2JB\\x1b]0;pwned\\x07C\\x1b]52;c;cHduZWQ=\\x07D',
    );
    expect(show.stdout).toContain('\\x9b31mF\\u202eG\\u2066H');
    expect(show.stdout).toContain('second line'); // newlines of the body kept
    const list = await runCli(['issue', 'list'], { cwd: dir, env });
    expect(list.stdout).not.toMatch(UNSAFE);
    expect(list.stdout).toContain('A\\x1b[2JB');
    // An error quoting hostile input is escaped too.
    const bad = await runCli(['issue', 'show', '1\x1b]0;x\x07'], {
      cwd: dir,
      env,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).not.toMatch(UNSAFE);
    // --json stays exact.
    const json = await cliJson<{ title: string; body: string }>(
      ['issue', 'show', '1'],
      { cwd: dir, env },
    );
    expect(json.title).toBe(HOSTILE);
    expect(json.body).toBe(`body ${HOSTILE}\nsecond line`);
    // --raw, before or after the command, prints the text as it is.
    for (const args of [
      ['--raw', 'issue', 'show', '1'],
      ['issue', 'show', '1', '--raw'],
    ]) {
      const raw = await runCli(args, { cwd: dir, env });
      expect(raw.code).toBe(0);
      expect(raw.stdout).toContain(HOSTILE);
    }
  });

  it('in a real terminal (tmux) the sequences are shown, not obeyed; with --raw they act', async () => {
    const { dir } = await hostileRepo();
    const cmd = (extra: string) =>
      `echo MARKER-BEFORE\n${process.execPath} ${CLI} --repo ${dir} ${extra} issue show 1\n${process.execPath} ${CLI} --repo ${dir} issue list`;
    const safe = await inTerminal(cmd(''), cleanups);
    // Not cleared, not retitled; the escapes are visible text.
    expect(safe.screen).toContain('MARKER-BEFORE');
    expect(safe.screen).toContain('A\\x1b[2JB\\x1b]0;pwned\\x07C');
    expect(safe.title.trim()).not.toBe('pwned');
    // The same output raw: the screen is cleared and the title changed (the probe can fail).
    const raw = await inTerminal(cmd('--raw'), cleanups);
    expect(raw.screen).not.toContain('MARKER-BEFORE');
    expect(raw.title.trim()).toBe('pwned');
  });
});
