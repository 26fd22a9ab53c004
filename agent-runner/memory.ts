import { readFileSync } from 'node:fs';

/** MemAvailable from /proc/meminfo: what the kernel can give without swapping (Linux only). */
export function availableMemory(): number | undefined {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(
      readFileSync('/proc/meminfo', 'utf8'),
    );
    return m?.[1] ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export const gib = (n: number): string => `${(n / 1024 ** 3).toFixed(1)} GiB`;
