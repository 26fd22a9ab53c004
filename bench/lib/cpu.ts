import { readFileSync, readdirSync } from 'node:fs';

/** Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const TICK_MS = 10;

interface ProcTimes {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime of the process itself, ms. */
  selfMs: number;
  /** cutime + cstime: its children it has waited for (and theirs), ms. */
  reapedMs: number;
}

function readStat(pid: number): ProcTimes | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    // Fields from state (3rd) on; utime is the 14th field overall.
    const f = stat.slice(close + 2).split(' ');
    const n = (i: number) => Number(f[i - 3]);
    return {
      pid,
      ppid: n(4),
      comm,
      selfMs: (n(14) + n(15)) * TICK_MS,
      reapedMs: (n(16) + n(17)) * TICK_MS,
    };
  } catch {
    return undefined;
  }
}

/** CPU of a process tree by role, in ms: each live process's own time and what it reaped. */
export interface TreeCpu {
  /** Keyed `<role> self` / `<role> children`; role from `roleOf`, else the command name. */
  parts: Record<string, number>;
  totalMs: number;
}

/**
 * The CPU time of `root` and every live descendant, from /proc: the live processes' own time
 * plus what each has reaped (git, shells, agents that exited), attributed to the process that
 * reaped them. Two snapshots subtracted give the tree's CPU over an interval.
 */
export function treeCpu(
  root: number,
  roleOf: (p: { pid: number; comm: string; cmdline: string }) => string = (p) =>
    p.comm,
): TreeCpu {
  const all = new Map<number, ProcTimes>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const t = readStat(pid);
    if (t) all.set(pid, t);
  }
  const children = new Map<number, ProcTimes[]>();
  for (const t of all.values()) {
    const list = children.get(t.ppid) ?? [];
    list.push(t);
    children.set(t.ppid, list);
  }
  const parts: Record<string, number> = {};
  let totalMs = 0;
  const visit = (t: ProcTimes) => {
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${t.pid}/cmdline`, 'utf8');
    } catch {
      /* gone */
    }
    const role = roleOf({ pid: t.pid, comm: t.comm, cmdline });
    parts[`${role} self`] = (parts[`${role} self`] ?? 0) + t.selfMs;
    parts[`${role} children`] = (parts[`${role} children`] ?? 0) + t.reapedMs;
    totalMs += t.selfMs + t.reapedMs;
    for (const c of children.get(t.pid) ?? []) visit(c);
  };
  const r = all.get(root);
  if (r) visit(r);
  return { parts, totalMs };
}

/** `after − before`, part by part. */
export function cpuDelta(before: TreeCpu, after: TreeCpu): TreeCpu {
  const parts: Record<string, number> = {};
  for (const k of new Set([
    ...Object.keys(before.parts),
    ...Object.keys(after.parts),
  ]))
    parts[k] = (after.parts[k] ?? 0) - (before.parts[k] ?? 0);
  return { parts, totalMs: after.totalMs - before.totalMs };
}

/** Sums of several trees (the raw pool's worker processes). */
export function cpuSum(trees: readonly TreeCpu[]): TreeCpu {
  const parts: Record<string, number> = {};
  let totalMs = 0;
  for (const t of trees) {
    totalMs += t.totalMs;
    for (const [k, v] of Object.entries(t.parts))
      parts[k] = (parts[k] ?? 0) + v;
  }
  return { parts, totalMs };
}

/** Redis's own CPU (ms), if its server runs on this host: `INFO server` gives its pid. */
export function processCpuMs(pid: number): number | undefined {
  const t = readStat(pid);
  return t && t.selfMs + t.reapedMs;
}
