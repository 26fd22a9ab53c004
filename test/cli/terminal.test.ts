import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, cliJson, runCli, testEnv, waitFor } from '../helpers/cli.js';
import { tempDir, tempRepo } from '../helpers/repo.js';

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

/** Runs a shell script in a real terminal (tmux) and returns the screen and the pane title. */
async function inTmux(
  script: string,
): Promise<{ screen: string; title: string }> {
  const sock = `slotcli-${randomBytes(4).toString('hex')}`;
  const file = join(tempDir('sup-tmux-'), 'run.sh');
  writeFileSync(file, `${script}\necho MARKER-DONE\nsleep 60\n`);
  const tmux = (...args: string[]) =>
    execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', 't', '-x', '220', '-y', '50', `sh ${file}`);
  cleanups.push(() => {
    try {
      tmux('kill-server');
    } catch {
      /* gone */
    }
  });
  const screen = await waitFor(
    () => {
      const s = tmux('capture-pane', '-p', '-t', 't');
      return s.includes('MARKER-DONE') ? s : false;
    },
    { what: 'the command in tmux', timeoutMs: 60_000 },
  );
  return { screen, title: tmux('display', '-p', '-t', 't', '#{pane_title}') };
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
    const safe = await inTmux(cmd(''));
    // Not cleared, not retitled; the escapes are visible text.
    expect(safe.screen).toContain('MARKER-BEFORE');
    expect(safe.screen).toContain('A\\x1b[2JB\\x1b]0;pwned\\x07C');
    expect(safe.title.trim()).not.toBe('pwned');
    // The same output raw: the screen is cleared and the title changed (the probe can fail).
    const raw = await inTmux(cmd('--raw'));
    expect(raw.screen).not.toContain('MARKER-BEFORE');
    expect(raw.title.trim()).toBe('pwned');
  });
});
