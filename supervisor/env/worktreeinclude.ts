import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  symlinkSync,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { SupervisorError } from '../errors.js';
import { SAFE_GIT_CONFIG } from '../repo.js';

/** Lists (gitignore syntax) ignored files to copy from the main worktree into each agent worktree. */
export const INCLUDE_FILE = '.worktreeinclude';

/** Our own state lives there; never copied whatever the patterns say. */
const NEVER = ['.supervisor/', '.worktrees/', '.git/'];

const HINT =
  'list paths inside the repository, relative to its root (gitignore syntax: a leading / anchors a pattern at the repository root); ' +
  'files outside the repository are never copied into worktrees';

interface Refusal {
  what: string;
  why: string;
}

/** Checks each pattern line; returns the refusals (empty when the file is fine). */
export function checkPatterns(root: string, text: string): Refusal[] {
  const out: Refusal[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const what = `line ${i + 1} "${line}"`;
    const pattern = line.startsWith('!') ? line.slice(1) : line;
    const segments = pattern.replace(/\\/g, '/').split('/');
    if (segments.includes('..'))
      out.push({ what, why: 'climbs out of the repository with ..' });
    else if (pattern.startsWith('~'))
      out.push({ what, why: 'names a home directory' });
    else if (/^[A-Za-z]:[\\/]/.test(pattern) || pattern.startsWith('\\\\'))
      out.push({ what, why: 'is an absolute path' });
    else if (pattern.startsWith('/')) {
      // "/config/local.py" anchors at the repository root; "/etc/hosts" or "/home/me/.env"
      // is someone writing an absolute path: its first part is not in the repository but is
      // on the file system root.
      const first = segments[1] ?? '';
      if (
        first &&
        !/[*?[]/.test(first) &&
        !existsSync(join(root, first)) &&
        existsSync(`/${first}`)
      ) {
        out.push({
          what,
          why: `is an absolute path (/${first} is outside the repository)`,
        });
      }
    }
  });
  return out;
}

function inside(root: string, p: string): boolean {
  const rel = relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function refuse(refusals: Refusal[]): SupervisorError {
  return new SupervisorError(
    'ERR_SUP_CONFIG',
    `${INCLUDE_FILE} names files outside the repository, refused: ${refusals.map((r) => `${r.what} ${r.why}`).join('; ')}`,
    { hint: HINT },
  );
}

function nulList(out: string): string[] {
  return out.split('\0').filter((s) => s.length > 0);
}

/** Runs git in `cwd` (GIT_* variables of a hook or outer repository ignored), feeding `input`. */
function git(
  cwd: string,
  args: string[],
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('GIT_')) env[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(
      'git',
      [...SAFE_GIT_CONFIG.flatMap((c) => ['-c', c]), ...args],
      {
        cwd,
        env,
        stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // git may exit before reading all of it
      child.stdin.end(input);
    }
  });
}

/** Ignored files of the main worktree that `.worktreeinclude` selects (relative paths). */
export async function includedFiles(root: string): Promise<string[]> {
  const file = join(root, INCLUDE_FILE);
  if (!existsSync(file)) return [];
  const refusals = checkPatterns(root, readFileSync(file, 'utf8'));
  if (refusals.length) throw refuse(refusals);
  // Untracked files matching the patterns (only the patterns, not the standard ignores)…
  const listed = await git(root, [
    'ls-files',
    '-z',
    '--others',
    '--ignored',
    `--exclude-from=${file}`,
  ]);
  if (listed.code !== 0) {
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `cannot list the files ${INCLUDE_FILE} selects: ${listed.stderr.trim()}`,
      { hint: `check ${file}` },
    );
  }
  const matching = nulList(listed.stdout).filter(
    (p) => !NEVER.some((n) => p.startsWith(n)),
  );
  if (matching.length === 0) return [];
  // …that git itself ignores: tracked and plain untracked files are not ours to copy.
  const checked = await git(
    root,
    ['check-ignore', '-z', '--stdin'],
    `${matching.join('\0')}\0`,
  );
  if (checked.code !== 0 && checked.code !== 1) {
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `git check-ignore failed: ${checked.stderr.trim()}`,
    );
  }
  return nulList(checked.stdout);
}

/**
 * Copies the `.worktreeinclude` files into a worktree. Files already there are left alone
 * (the agent may have changed them); called at every slot start, so a worktree recreated
 * after damage gets them again. Anything resolving outside the repository is refused.
 */
export async function copyIncludedFiles(
  root: string,
  worktree: string,
): Promise<string[]> {
  const realRoot = realpathSync(root);
  const files = await includedFiles(root);
  const refusals: Refusal[] = [];
  const plan: Array<{ rel: string; src: string; link: string | undefined }> =
    [];
  for (const rel of files) {
    const src = resolve(root, rel);
    if (!inside(root, src)) {
      refusals.push({
        what: `"${rel}"`,
        why: 'resolves outside the repository',
      });
      continue;
    }
    let st;
    try {
      st = lstatSync(src);
    } catch {
      continue;
    }
    let real: string;
    try {
      real = realpathSync(src);
    } catch {
      refusals.push({ what: `"${rel}"`, why: 'is a dangling symbolic link' });
      continue;
    }
    if (!inside(realRoot, real)) {
      refusals.push({
        what: `"${rel}"`,
        why: `is a symbolic link to ${real}, outside the repository`,
      });
      continue;
    }
    if (!st.isFile() && !st.isSymbolicLink()) continue;
    plan.push({
      rel,
      src,
      link: st.isSymbolicLink() ? readlinkSync(src) : undefined,
    });
  }
  if (refusals.length) throw refuse(refusals);
  const copied: string[] = [];
  for (const { rel, src, link } of plan) {
    const dest = join(worktree, rel);
    if (!dest.startsWith(worktree + sep)) continue;
    let exists = true;
    try {
      lstatSync(dest);
    } catch {
      exists = false;
    }
    if (exists) continue;
    mkdirSync(dirname(dest), { recursive: true });
    if (link !== undefined) {
      // A link inside the repository: relative links keep pointing at the worktree's copy.
      symlinkSync(
        isAbsolute(link)
          ? join(worktree, relative(realRoot, realpathSync(src)))
          : link,
        dest,
      );
    } else {
      copyFileSync(src, dest);
    }
    copied.push(rel);
  }
  return copied;
}
