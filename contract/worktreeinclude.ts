import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  rmdirSync,
  symlinkSync,
  utimesSync,
  type Stats,
} from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { SAFE_GIT_CONFIG } from '../git/runner.js';
import { SupervisorError } from './errors.js';

/** A slot's environment file (written by the supervisor): never removed as a stray ignored file. */
export const ENV_FILE = '.env.worktree';

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

/**
 * A git call that has not finished by then is killed and counts as failed: the runner runs the
 * re-sync in its own process before each job, so a hung git would otherwise hold the job forever
 * (as a before-job step it had the step's 120 s timeout).
 */
const GIT_TIMEOUT_MS = 120_000;

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
        timeout: GIT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({
        code,
        stdout,
        stderr:
          signal === 'SIGKILL'
            ? `git ${args[0]} killed after ${GIT_TIMEOUT_MS} ms`
            : stderr,
      }),
    );
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

/** One file `.worktreeinclude` selects, checked to stay inside the repository. */
export interface IncludedFile {
  rel: string;
  src: string;
  /** The link's target when the source is a symbolic link (inside the repository). */
  link: string | undefined;
}

/**
 * The `.worktreeinclude` files, checked: anything resolving outside the repository is refused
 * (the whole list, with every reason), so a refusal happens before a slot reserves anything.
 */
export async function planIncludedFiles(root: string): Promise<IncludedFile[]> {
  const realRoot = realpathSync(root);
  const files = await includedFiles(root);
  const refusals: Refusal[] = [];
  const plan: IncludedFile[] = [];
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
  return plan;
}

/** What one sync did, as counts (a log line names no files: one listed 6,011 of them once). */
export interface SyncSummary {
  /** Missing in the worktree: copied. */
  copied: number;
  /** Different from the source (size or modification time): copied again. */
  updated: number;
  unchanged: number;
  /** Ignored files the agent left that `.worktreeinclude` does not list: removed. */
  removed: number;
}

/**
 * Same size and modification time: rsync's quick check, so an unchanged file costs one stat.
 * A copy gets the source's time through a Date (whole ms, then float seconds), so the two
 * can differ by up to a millisecond and still be the same.
 */
function sameFile(src: Stats, dest: Stats): boolean {
  return src.size === dest.size && Math.abs(src.mtimeMs - dest.mtimeMs) < 1.5;
}

/**
 * Brings the worktree's copies of the `.worktreeinclude` files in line with the main worktree:
 * missing ones are copied, changed ones (a rotated secret, an upgraded dependency; or a copy
 * the agent edited) copied again, unchanged ones cost a stat each. Copies keep the source's
 * modification time, which is what makes the next check cheap.
 */
export function syncIncludedFiles(
  root: string,
  worktree: string,
  plan: readonly IncludedFile[],
  changed?: string[],
): SyncSummary {
  const realRoot = realpathSync(root);
  const out: SyncSummary = { copied: 0, updated: 0, unchanged: 0, removed: 0 };
  for (const { rel, src, link } of plan) {
    const dest = join(worktree, rel);
    if (!dest.startsWith(worktree + sep)) continue;
    let destSt: Stats | undefined;
    try {
      destSt = lstatSync(dest);
    } catch {
      destSt = undefined;
    }
    let target: string | undefined;
    if (link !== undefined) {
      // A link inside the repository: relative links keep pointing at the worktree's copy.
      target = isAbsolute(link)
        ? join(worktree, relative(realRoot, realpathSync(src)))
        : link;
      if (destSt?.isSymbolicLink() && readlinkSync(dest) === target) {
        out.unchanged++;
        continue;
      }
    } else if (destSt?.isFile()) {
      let srcSt;
      try {
        srcSt = lstatSync(src);
      } catch {
        continue;
      }
      if (sameFile(srcSt, destSt)) {
        out.unchanged++;
        continue;
      }
    }
    if (destSt) rmSync(dest, { recursive: true, force: true });
    mkdirSync(dirname(dest), { recursive: true });
    if (target !== undefined) symlinkSync(target, dest);
    else {
      copyFileSync(src, dest);
      const st = lstatSync(src);
      utimesSync(dest, st.atime, st.mtime);
    }
    if (destSt) out.updated++;
    else out.copied++;
    changed?.push(rel);
  }
  return out;
}

/** Plans and syncs; returns the paths copied or copied again (for tests and tools, not logs). */
export async function copyIncludedFiles(
  root: string,
  worktree: string,
): Promise<string[]> {
  const changed: string[] = [];
  syncIncludedFiles(root, worktree, await planIncludedFiles(root), changed);
  return changed;
}

/**
 * Removes what an agent left in ignored paths that `.worktreeinclude` does not list (build
 * output, caches, a planted `.env.local`): the next issue starts from the tracked files, the
 * listed files and `.env.worktree`, nothing else. Returns how many files went.
 */
export async function removeStrayIgnored(
  worktree: string,
  keep: ReadonlySet<string>,
): Promise<number> {
  const listed = await git(worktree, [
    'ls-files',
    '-z',
    '--others',
    '--ignored',
    '--exclude-standard',
  ]);
  if (listed.code !== 0) {
    throw new SupervisorError(
      'ERR_SUP_GIT',
      `cannot list the ignored files of ${worktree}: ${listed.stderr.trim()}`,
    );
  }
  let removed = 0;
  const dirs = new Set<string>();
  for (const rel of nulList(listed.stdout)) {
    if (keep.has(rel) || rel === ENV_FILE) continue;
    if (NEVER.some((n) => rel.startsWith(n))) continue;
    const abs = join(worktree, rel);
    if (!abs.startsWith(worktree + sep)) continue;
    rmSync(abs, { force: true, recursive: true });
    removed++;
    for (let d = dirname(abs); d.startsWith(worktree + sep); d = dirname(d))
      dirs.add(d);
  }
  // Directories left empty go too (deepest first); rmdir refuses non-empty ones.
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    try {
      rmdirSync(d);
    } catch {
      /* not empty */
    }
  }
  return removed;
}

/**
 * Most files the reset's `git clean` keeps by name: git matches every untracked path against
 * every pattern, so a long list (a whole `node_modules`) is listed and removed here instead
 * (`removeStrayIgnored`: one more git process, but a set lookup per file).
 */
export const CLEAN_KEEP_MAX = 100;

/** A relative path as a gitignore pattern that matches it alone (anchored, nothing special). */
function literalPattern(rel: string): string {
  return `/${rel.replace(/[\\*?[\]!# ]/g, (c) => `\\${c}`)}`;
}

/**
 * `git clean -e` patterns that keep what `removeStrayIgnored` keeps: the listed files, the
 * slot's environment file and our own state directories — so the reset's `git clean -x`
 * removes every other ignored file in the same process. Undefined when the list is too long
 * (CLEAN_KEEP_MAX) or a name cannot be a pattern (a line break): then the reset leaves ignored
 * files and `removeStrayIgnored` removes them, as before.
 */
export function cleanKeepPatterns(
  plan: readonly IncludedFile[],
): string[] | undefined {
  if (plan.length > CLEAN_KEEP_MAX) return undefined;
  if (plan.some((f) => /[\r\n]/.test(f.rel))) return undefined;
  return [
    literalPattern(ENV_FILE),
    ...NEVER.filter((n) => n !== '.git/').map((n) => `/${n}`),
    ...plan.map((f) => literalPattern(f.rel)),
  ];
}

/**
 * Prepares a worktree's ignored files for the next job: listed files synced from the main
 * worktree, anything else ignored removed.
 */
export async function resyncWorktree(
  root: string,
  worktree: string,
  /** Planned already; `strayRemoved`: the reset's `git clean` took the stray ignored files. */
  done: { plan?: readonly IncludedFile[]; strayRemoved?: boolean } = {},
): Promise<SyncSummary> {
  const plan = done.plan ?? (await planIncludedFiles(root));
  const summary = syncIncludedFiles(root, worktree, plan);
  if (!done.strayRemoved)
    summary.removed = await removeStrayIgnored(
      worktree,
      new Set(plan.map((f) => f.rel)),
    );
  return summary;
}

/** A sync summary as a short phrase (`3 copied, 1 updated, 2 stray removed, 6011 unchanged`). */
export function describeSync(s: SyncSummary): string {
  const parts = [
    s.copied ? `${s.copied} copied` : '',
    s.updated ? `${s.updated} updated` : '',
    s.removed ? `${s.removed} stray removed` : '',
    s.unchanged ? `${s.unchanged} unchanged` : '',
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'nothing to copy';
}
