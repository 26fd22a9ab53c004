import { readFileSync } from 'node:fs';

/**
 * The kernel's count of processes killed for memory in this process's cgroup (a container's
 * limit), so a runner can tell "the agent ran out of memory" from "the agent was killed".
 * Undefined where it cannot be read (macOS, no memory controller).
 */
export function oomKillCount(): number | undefined {
  const read = (file: string, key: string): number | undefined => {
    try {
      const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(
        readFileSync(file, 'utf8'),
      );
      return m?.[1] === undefined ? undefined : Number(m[1]);
    } catch {
      return undefined;
    }
  };
  // cgroup v1 (the container's memory cgroup is mounted at its root), then v2.
  const v1 = read('/sys/fs/cgroup/memory/memory.oom_control', 'oom_kill');
  if (v1 !== undefined) return v1;
  let own = '/';
  try {
    own =
      /^0::(.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1] ?? '/';
  } catch {
    /* not Linux */
  }
  return (
    read(`/sys/fs/cgroup${own === '/' ? '' : own}/memory.events`, 'oom_kill') ??
    read('/sys/fs/cgroup/memory.events', 'oom_kill')
  );
}

/** The memory limit of this process's cgroup in bytes, when there is one. */
export function memoryLimitBytes(): number | undefined {
  for (const file of [
    '/sys/fs/cgroup/memory/memory.limit_in_bytes',
    '/sys/fs/cgroup/memory.max',
  ]) {
    try {
      const v = readFileSync(file, 'utf8').trim();
      const n = Number(v);
      if (Number.isFinite(n) && n > 0 && n < 2 ** 60) return n;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function outOfMemoryMessage(): string {
  const limit = memoryLimitBytes();
  return `agent killed: out of memory${limit ? ` (the container's memory limit is ${Math.round(limit / 1024 / 1024)} MiB)` : ''}`;
}
