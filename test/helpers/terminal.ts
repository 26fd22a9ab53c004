import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './cli.js';
import { tempDir } from './repo.js';

export interface Screen {
  /** What the pane shows, up to (not including) the end marker. */
  screen: string;
  /** The pane's title (an OSC 0 from the output changes it). */
  title: string;
}

/**
 * Runs a shell script in a real terminal (a private tmux server) of the given size and returns
 * its screen once the script has finished. `colours` keeps SGR sequences in the capture.
 * The tmux server is ended through `cleanups`.
 */
export async function inTerminal(
  script: string,
  cleanups: Array<() => unknown>,
  opts: { width?: number; height?: number; colours?: boolean } = {},
): Promise<Screen> {
  const sock = `slotcli-${randomBytes(4).toString('hex')}`;
  const file = join(tempDir('sup-tmux-'), 'run.sh');
  writeFileSync(file, `${script}\necho MARKER-DONE\nsleep 60\n`);
  const tmux = (...args: string[]) =>
    execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
  const width = String(opts.width ?? 220);
  const height = String(opts.height ?? 50);
  tmux('new-session', '-d', '-s', 't', '-x', width, '-y', height, `sh ${file}`);
  cleanups.push(() => {
    try {
      tmux('kill-server');
    } catch {
      /* already gone */
    }
  });
  const capture = opts.colours ? ['-e'] : [];
  const screen = await waitFor(
    () => {
      const s = tmux('capture-pane', ...capture, '-p', '-t', 't');
      const end = s.indexOf('MARKER-DONE');
      return end >= 0 ? s.slice(0, end) : false;
    },
    { what: 'the command in tmux', timeoutMs: 60_000 },
  );
  return { screen, title: tmux('display', '-p', '-t', 't', '#{pane_title}') };
}

/** `K='v' K2='v2'` for a shell line (values from tests: no quotes inside). */
export function envPrefix(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([k, v]) => `${k}='${v}'`)
    .join(' ');
}
