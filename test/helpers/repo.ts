import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function git(cwd: string, ...args: string[]): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@t',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@t',
    },
  }).trim();
}

/** A throw-away git repository with one commit on `main`. */
export function tempRepo(
  opts: { files?: Record<string, string>; empty?: boolean } = {},
): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'sup-repo-'));
  git(dir, 'init', '-q', '-b', 'main');
  if (!opts.empty) {
    for (const [name, content] of Object.entries(
      opts.files ?? { 'README.md': '# test repo\n' },
    ))
      writeFileSync(join(dir, name), content);
    git(dir, 'add', '-A');
    git(dir, 'commit', '-qm', 'initial commit');
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function tempDir(prefix = 'sup-tmp-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}
