import { execFile } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runGit } from '../../git/runner.js';

/** Environment for git without GIT_DIR and friends inherited from a hook or an outer repository. */
export function gitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !k.startsWith('GIT_')) env[k] = v;
  return {
    ...env,
    GIT_AUTHOR_NAME: 'bench',
    GIT_AUTHOR_EMAIL: 'bench@local',
    GIT_COMMITTER_NAME: 'bench',
    GIT_COMMITTER_EMAIL: 'bench@local',
    ...extra,
  };
}

/** Runs git (argv, no shell) through the one git runner; resolves with trimmed stdout. */
export async function git(cwd: string, args: string[]): Promise<string> {
  try {
    return (
      await runGit(args, {
        cwd,
        env: {
          GIT_AUTHOR_NAME: 'bench',
          GIT_AUTHOR_EMAIL: 'bench@local',
          GIT_COMMITTER_NAME: 'bench',
          GIT_COMMITTER_EMAIL: 'bench@local',
        },
        timeoutMs: 600_000,
      })
    ).stdout.trim();
  } catch (err) {
    throw new Error(
      `git ${args.join(' ')} in ${cwd}: ${(err as Error).message}`,
    );
  }
}

export function sh(
  cwd: string,
  command: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', command],
      { cwd, env },
      (err, _stdout, stderr) =>
        err
          ? reject(new Error(`${command}: ${stderr || err.message}`))
          : resolve(),
    );
  });
}

export interface TempRepo {
  dir: string;
  cleanup(): void;
}

/**
 * A throw-away repository on `main` with `files` small source files spread over directories
 * of 100, like a real project tree.
 */
export async function makeRepo(files: number): Promise<TempRepo> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'sup-bench-')));
  await git(dir, ['init', '-q', '-b', 'main']);
  writeFileSync(join(dir, 'README.md'), '# benchmark repository\n');
  for (let i = 0; i < files; i++) {
    const sub = join(
      dir,
      'src',
      `m${String(Math.floor(i / 100)).padStart(3, '0')}`,
    );
    if (i % 100 === 0) mkdirSync(sub, { recursive: true });
    writeFileSync(
      join(sub, `f${i}.ts`),
      `export const v${i} = ${i};\n// ${'x'.repeat(200)}\n`,
    );
  }
  await git(dir, ['add', '-A']);
  await git(dir, ['commit', '-qm', 'initial commit']);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
