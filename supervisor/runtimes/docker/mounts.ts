import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { BindMount } from './engine.js';

/** Everything of one slot that its container sees, at the same absolute paths as on the host. */
export interface SlotPaths {
  /** The main worktree (exists in the container only as the parent of the mounts below). */
  repoRoot: string;
  gitCommonDir: string;
  worktree: string;
  /** The worktree's admin directory in the git directory (`.git/worktrees/<name>`). */
  adminDir: string;
  /** The slot's directory of per-run logs. */
  logDir: string;
  /** The runner's own log (`.supervisor/logs/agent-00N.log`, which `supervisor logs` reads). */
  logFile: string;
  runDir: string;
}

/** The admin directory a linked worktree's `.git` file points to. */
export function worktreeAdminDir(worktree: string): string {
  const text = readFileSync(join(worktree, '.git'), 'utf8');
  const m = /^gitdir:\s*(.+?)\s*$/m.exec(text);
  if (!m?.[1])
    throw new Error(`${worktree}/.git is not a worktree's .git file`);
  return isAbsolute(m[1]) ? m[1] : resolve(worktree, m[1]);
}

/**
 * The slot's own `refs/heads/agent` and its reflogs: a directory of its own on the host, which
 * the container sees in place of the repository's. Its agent (and its runner) can move only
 * `agent/<its number>` and never sees or touches another slot's branch; the host's `agent/*`
 * branches are not the containers' to move. The result commit reaches the host by the job's
 * result (the supervisor publishes `issue/<id>`), not by a branch.
 */
export function privateAgentRefs(p: SlotPaths): {
  refs: string;
  logs: string;
} {
  const base = `${p.runDir.replace(/\/+$/, '')}.git-refs`;
  return { refs: join(base, 'heads-agent'), logs: join(base, 'logs-agent') };
}

/**
 * A directory only root may enter (a tmpfs, mode 0700) in every runner container: the runner's
 * own files live there, out of its agent's reach (the agent runs under a uid of its own).
 */
export const RUNNER_DIR = '/run/agent-supervisor';
/**
 * Where the runner's log file is mounted: not at its host path (the agent could append to it
 * and forge what `supervisor logs` shows, or fill it), but inside RUNNER_DIR.
 */
export const RUNNER_LOG_TARGET = `${RUNNER_DIR}/runner.log`;

/** Writable places in the git directory: the object store and the slot's admin directory. */
function gitWritable(p: SlotPaths): string[] {
  return [join(p.gitCommonDir, 'objects'), p.adminDir];
}

/**
 * The bind mounts of a slot. The git directory is read-only (so `main`, `issue/*`, tags,
 * packed-refs, config and hooks cannot be changed from inside) with writable mounts on top of
 * it only for what the slot's git needs: objects, its worktree admin directory, and the slot's
 * private `refs/heads/agent` and reflogs (see privateAgentRefs). Other slots' worktrees and
 * branches and the main worktree are not mounted; the runner's log is mounted where only the
 * runner reaches it (RUNNER_LOG_TARGET).
 */
export function slotMounts(p: SlotPaths): BindMount[] {
  const rw = (path: string): BindMount => ({
    source: path,
    target: path,
    readOnly: false,
  });
  const own = privateAgentRefs(p);
  return [
    rw(p.worktree),
    { source: p.gitCommonDir, target: p.gitCommonDir, readOnly: true },
    ...gitWritable(p).map(rw),
    {
      source: own.refs,
      target: join(p.gitCommonDir, 'refs', 'heads', 'agent'),
      readOnly: false,
    },
    {
      source: own.logs,
      target: join(p.gitCommonDir, 'logs', 'refs', 'heads', 'agent'),
      readOnly: false,
    },
    rw(p.logDir),
    { source: p.logFile, target: RUNNER_LOG_TARGET, readOnly: false },
    rw(p.runDir),
  ];
}

/** Creates what the mounts need on the host (Docker refuses a missing bind source). */
export function ensureMountSources(p: SlotPaths): void {
  const own = privateAgentRefs(p);
  for (const d of [...gitWritable(p), own.refs, own.logs, p.logDir, p.runDir])
    mkdirSync(d, { recursive: true });
  // The mount points of the private refs, inside the read-only git directory.
  for (const d of [
    join(p.gitCommonDir, 'refs', 'heads', 'agent'),
    join(p.gitCommonDir, 'logs', 'refs', 'heads', 'agent'),
  ])
    mkdirSync(d, { recursive: true });
  // The host's `git pack-refs` / `gc` removes ref directories it leaves empty: a mounted one
  // would be swapped for a new directory the container never sees. Git ignores dot files there.
  for (const d of [
    join(p.gitCommonDir, 'refs', 'heads', 'agent'),
    join(p.gitCommonDir, 'logs', 'refs', 'heads', 'agent'),
  ]) {
    if (!existsSync(join(d, '.keep')))
      closeSync(openSync(join(d, '.keep'), 'a'));
  }
  if (!existsSync(p.logFile)) closeSync(openSync(p.logFile, 'a'));
}

/** Credentials mounted read-only into the container's home, each only when present on the host. */
export function credentialMounts(
  home: string,
  containerHome: string,
  env: NodeJS.ProcessEnv,
): { mounts: BindMount[]; env: string[] } {
  const mounts: BindMount[] = [];
  const extraEnv: string[] = [];
  const add = (name: string) => {
    const source = join(home, name);
    if (existsSync(source))
      mounts.push({
        source,
        target: join(containerHome, name),
        readOnly: true,
      });
  };
  add('.claude');
  add('.codex');
  add('.gitconfig');
  const sock = env.SSH_AUTH_SOCK;
  let hasSock = false;
  try {
    hasSock = Boolean(sock) && statSync(sock!).isSocket();
  } catch {
    hasSock = false;
  }
  if (hasSock) {
    // The agent socket gives the container signing without the keys themselves.
    mounts.push({
      source: sock!,
      target: '/run/ssh-agent.sock',
      readOnly: false,
    });
    extraEnv.push('SSH_AUTH_SOCK=/run/ssh-agent.sock');
    const knownHosts = join(home, '.ssh', 'known_hosts');
    if (existsSync(knownHosts))
      mounts.push({
        source: knownHosts,
        target: join(containerHome, '.ssh', 'known_hosts'),
        readOnly: true,
      });
  } else {
    add('.ssh');
  }
  return { mounts, env: extraEnv };
}

/** Parses `docker.mounts` entries: `/host/path:/container/path[:ro]`. */
export function parseExtraMount(spec: string): BindMount {
  const parts = spec.split(':');
  const ro = parts[parts.length - 1] === 'ro';
  if (ro || parts[parts.length - 1] === 'rw') parts.pop();
  const [source, target = source] = parts.length === 1 ? [parts[0]!] : parts;
  if (
    !source ||
    !isAbsolute(source) ||
    !target ||
    !isAbsolute(target) ||
    parts.length > 2
  ) {
    throw new Error(
      `"${spec}" is not a mount: use /host/path[:/container/path][:ro]`,
    );
  }
  return { source, target, readOnly: ro };
}

// --- who the container runs as --------------------------------------------------------------

export interface ContainerUser {
  uid: number;
  gid: number;
  /**
   * The repository belongs to root: the container runs as a dedicated uid, and the slot's
   * writable paths are handed to it (contents owned by it, top directories kept root's and
   * made group-writable, so the host's root git does not see "dubious ownership").
   */
  dedicated: boolean;
  /** The supervisor can (and must) change ownership of the slot's paths before a start. */
  prepare: boolean;
}

export const DEFAULT_AGENT_UID = 1000;

/**
 * Non-root always: the supervisor's own uid when it is not root (a developer's machine, macOS);
 * as root, the repository owner's uid, or a dedicated uid (1000, the image's `agent` user) when
 * root owns the repository too (CI).
 */
export function chooseUser(
  gitCommonDir: string,
  configured: string | undefined,
  proc: { uid: number; gid: number },
): ContainerUser {
  const asRoot = proc.uid === 0;
  if (configured) {
    const [uid, gid] = configured.split(':').map(Number) as [number, number];
    const owner = statSync(gitCommonDir);
    return { uid, gid, dedicated: owner.uid === 0, prepare: asRoot };
  }
  if (!asRoot)
    return { uid: proc.uid, gid: proc.gid, dedicated: false, prepare: false };
  const owner = statSync(gitCommonDir);
  if (owner.uid !== 0)
    return { uid: owner.uid, gid: owner.gid, dedicated: false, prepare: true };
  return {
    uid: DEFAULT_AGENT_UID,
    gid: DEFAULT_AGENT_UID,
    dedicated: true,
    prepare: true,
  };
}

/** lchown of everything below `dir` (never following symlinks); `dir` itself is left alone. */
function chownContents(
  dir: string,
  uid: number,
  gid: number,
  skip: ReadonlySet<string> = new Set(),
): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (skip.has(path)) continue;
    const st = lstatSync(path);
    if (st.uid !== uid || st.gid !== gid) lchownSync(path, uid, gid);
    if (e.isDirectory()) chownContents(path, uid, gid);
  }
}

/** A top directory the host's root git checks: root keeps it, the agent's group may write it. */
function shareDir(dir: string, gid: number): void {
  lchownSync(dir, 0, gid);
  chmodSync(dir, (statSync(dir).mode & 0o7777) | 0o2070);
}

function groupWritableTree(dir: string, gid: number): void {
  const st = lstatSync(dir);
  if (!st.isDirectory()) return;
  if (st.gid !== gid) lchownSync(dir, st.uid, gid);
  if ((st.mode & 0o2070) !== 0o2070)
    chmodSync(dir, (st.mode & 0o7777) | 0o2070);
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) groupWritableTree(join(dir, e.name), gid);
}

/**
 * Makes a slot's writable paths writable by the container's user (run as root before each
 * start, while no container of the slot runs). Symlinks are never followed.
 */
export function prepareOwnership(p: SlotPaths, user: ContainerUser): void {
  if (!user.prepare) return;
  const { uid, gid } = user;
  const git = p.gitCommonDir;
  const own = privateAgentRefs(p);
  if (user.dedicated) {
    // The worktree's .git file stays root's: the agent can delete it (the runner repairs that)
    // but not point it elsewhere.
    chownContents(p.worktree, uid, gid, new Set([join(p.worktree, '.git')]));
    // (A .git the runner rewrote after an agent deleted it is the container's: give it back.)
    if (existsSync(join(p.worktree, '.git')))
      lchownSync(join(p.worktree, '.git'), 0, 0);
    for (const d of [p.worktree, p.adminDir]) shareDir(d, gid);
    chownContents(p.adminDir, uid, gid);
    for (const d of [own.refs, own.logs]) {
      lchownSync(d, uid, gid);
      chownContents(d, uid, gid);
    }
    // Objects are written by the host's git (root) and every container: a shared group, and git
    // told to keep new directories group-writable (core.sharedRepository).
    groupWritableTree(join(git, 'objects'), gid);
    ensureSharedRepository(git);
  } else {
    for (const d of [p.worktree, p.adminDir, own.refs, own.logs]) {
      lchownSync(d, uid, gid);
      chownContents(d, uid, gid);
    }
    chownContents(join(git, 'objects'), uid, gid);
  }
  for (const d of [p.logDir, p.runDir]) {
    lchownSync(d, uid, gid);
    chownContents(d, uid, gid);
  }
  // The runner's own log stays the supervisor's (root's here): the runner is root in its
  // container and writes it there; an earlier version gave it to the agent's user.
  lchownSync(p.logFile, 0, 0);
}

function ensureSharedRepository(gitDir: string): void {
  const run = (args: string[]) =>
    execFileSync('git', ['--git-dir', gitDir, ...args], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  let current = '';
  try {
    current = run(['config', '--get', 'core.sharedRepository']);
  } catch {
    current = '';
  }
  if (
    !['group', 'true', 'all', 'world', 'everybody'].includes(current) &&
    !/^0[0-7]{3}$/.test(current)
  ) {
    run(['config', 'core.sharedRepository', 'group']);
  }
}

/** The slot's paths, from the runner configuration the scaler prepared. */
export function slotPaths(o: {
  repoRoot: string;
  gitCommonDir: string;
  worktree: string;
  logDir: string;
  runDir: string;
  agentId: string;
}): SlotPaths {
  return {
    repoRoot: o.repoRoot,
    gitCommonDir: o.gitCommonDir,
    worktree: o.worktree,
    adminDir: worktreeAdminDir(o.worktree),
    logDir: o.logDir,
    logFile: join(dirname(o.logDir), `${basename(o.logDir)}.log`),
    runDir: o.runDir,
  };
}
