import { readFileSync, readdirSync } from 'node:fs';

/** CPU and memory of one agent slot: its runner, the agent and everything they started. */
export interface AgentResources {
  /** Percent of one CPU over the sampling interval (200 = two cores busy). */
  cpuPercent: number;
  /** Resident memory of all its processes. */
  memoryBytes: number;
  processes: number;
}

/** Linux's USER_HZ: /proc times are in these ticks (100 on every mainstream architecture). */
const TICKS_PER_SECOND = 100;

interface ProcStat {
  pid: number;
  ppid: number;
  pgrp: number;
  session: number;
  /** utime + stime, in ticks. */
  cpuTicks: number;
}

function readStat(pid: number): ProcStat | undefined {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
  const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  return {
    pid,
    ppid: Number(f[1]),
    pgrp: Number(f[2]),
    session: Number(f[3]),
    cpuTicks: Number(f[11]) + Number(f[12]),
  };
}

function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(
      readFileSync(`/proc/${pid}/status`, 'utf8'),
    );
    return m?.[1] ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function allStats(): ProcStat[] {
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return [];
  }
  const out: ProcStat[] = [];
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const s = readStat(Number(n));
    if (s) out.push(s);
  }
  return out;
}

/** The pids of a slot: the runner's descendants and the agent's process group and session. */
function members(
  stats: ProcStat[],
  roots: { runnerPid: number | null; agentPid: number | null },
): ProcStat[] {
  const byParent = new Map<number, ProcStat[]>();
  for (const s of stats) {
    const list = byParent.get(s.ppid) ?? [];
    list.push(s);
    byParent.set(s.ppid, list);
  }
  const found = new Map<number, ProcStat>();
  const walk = (pid: number) => {
    for (const c of byParent.get(pid) ?? []) {
      if (found.has(c.pid)) continue;
      found.set(c.pid, c);
      walk(c.pid);
    }
  };
  for (const root of [roots.runnerPid, roots.agentPid]) {
    if (!root) continue;
    const self = stats.find((s) => s.pid === root);
    if (self) found.set(self.pid, self);
    walk(root);
  }
  // Children that left the tree (double fork) stay in the agent's group or session.
  if (roots.agentPid)
    for (const s of stats)
      if (
        (s.pgrp === roots.agentPid || s.session === roots.agentPid) &&
        !found.has(s.pid)
      )
        found.set(s.pid, s);
  return [...found.values()];
}

/**
 * Samples the CPU and memory of agent slots from /proc (Linux; elsewhere nothing). CPU % needs
 * two looks: the first call for a slot reports 0 unless `intervalMs` asks for a second look now.
 */
export class ResourceSampler {
  private last = new Map<string, { at: number; ticks: Map<number, number> }>();

  /** Slots seen so far (0: the next sample looks twice to compute CPU). */
  get size(): number {
    return this.last.size;
  }

  async sample(
    slots: Map<string, { runnerPid: number | null; agentPid: number | null }>,
    opts: { intervalMs?: number } = {},
  ): Promise<Map<string, AgentResources>> {
    const out = new Map<string, AgentResources>();
    if (process.platform !== 'linux' || slots.size === 0) return out;
    if (opts.intervalMs) {
      this.look(slots);
      await new Promise((r) => setTimeout(r, opts.intervalMs));
    }
    const now = Date.now();
    const stats = allStats();
    for (const [id, roots] of slots) {
      const procs = members(stats, roots);
      if (procs.length === 0) continue;
      const prev = this.last.get(id);
      let deltaTicks = 0;
      const ticks = new Map<number, number>();
      for (const p of procs) {
        ticks.set(p.pid, p.cpuTicks);
        const before = prev?.ticks.get(p.pid);
        // A process new since the last look counts from 0 only if it started after it.
        if (before !== undefined)
          deltaTicks += Math.max(0, p.cpuTicks - before);
      }
      const seconds = prev ? (now - prev.at) / 1000 : 0;
      this.last.set(id, { at: now, ticks });
      out.set(id, {
        cpuPercent:
          seconds > 0
            ? Math.round((deltaTicks / TICKS_PER_SECOND / seconds) * 1000) / 10
            : 0,
        memoryBytes: procs.reduce((sum, p) => sum + rssBytes(p.pid), 0),
        processes: procs.length,
      });
    }
    for (const id of this.last.keys()) if (!slots.has(id)) this.last.delete(id);
    return out;
  }

  private look(
    slots: Map<string, { runnerPid: number | null; agentPid: number | null }>,
  ): void {
    const stats = allStats();
    const now = Date.now();
    for (const [id, roots] of slots)
      this.last.set(id, {
        at: now,
        ticks: new Map(members(stats, roots).map((p) => [p.pid, p.cpuTicks])),
      });
  }
}

/** MemAvailable from /proc/meminfo (what the kernel can give without swapping), else free memory. */
export function availableMemoryBytes(fallback: number): number {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(
      readFileSync('/proc/meminfo', 'utf8'),
    );
    if (m?.[1]) return Number(m[1]) * 1024;
  } catch {
    /* not Linux */
  }
  return fallback;
}
