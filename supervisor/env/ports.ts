import { createServer } from 'node:net';
import type { z } from 'zod';
import type { PortsSchema } from '../config.js';
import { SupervisorError } from '../errors.js';

export type PortsConfig = z.output<typeof PortsSchema>;

const MAX_PORT = 65535;

/** Checks the port rules once, at start: offsets inside the block, rule ports inside 1..65535. */
export function validatePortsConfig(cfg: PortsConfig): void {
  const problems: string[] = [];
  for (const [name, rule] of Object.entries(cfg.names)) {
    if (typeof rule === 'number') {
      if (rule >= cfg.blockSize)
        problems.push(
          `env.ports.names.${name}: offset ${rule} is outside a block of ${cfg.blockSize} ports (0..${cfg.blockSize - 1})`,
        );
    } else if (rule.base + (lastBlockStart(cfg) - cfg.base) > MAX_PORT) {
      problems.push(
        `env.ports.names.${name}: ${rule.base} + (block start − ${cfg.base}) goes past port ${MAX_PORT} for the last of ${cfg.maxBlocks} blocks`,
      );
    }
  }
  if (cfg.base + cfg.blockSize - 1 > MAX_PORT)
    problems.push(
      `env.ports: the first block ${cfg.base}..${cfg.base + cfg.blockSize - 1} goes past port ${MAX_PORT}`,
    );
  if (problems.length) {
    throw new SupervisorError(
      'ERR_SUP_CONFIG',
      `invalid port configuration:\n  ${problems.join('\n  ')}`,
      { hint: 'fix "env.ports" in supervisor.config.json' },
    );
  }
}

/** Start ports of the blocks slots may get, in order (blocks that would pass 65535 are left out). */
export function blockStarts(cfg: PortsConfig): number[] {
  const out: number[] = [];
  for (let i = 0; i < cfg.maxBlocks; i++) {
    const start = cfg.base + i * cfg.blockSize;
    if (start + cfg.blockSize - 1 > MAX_PORT) break;
    out.push(start);
  }
  return out;
}

function lastBlockStart(cfg: PortsConfig): number {
  return blockStarts(cfg).at(-1) ?? cfg.base;
}

/**
 * The named ports of a block: `PORT` (the block start), `APP_PORT` (offset 0 unless named
 * otherwise), and every configured name — an offset inside the block, or a rule
 * `{ base: B }` giving `B + (blockStart − ports.base)` (the article's VITE_PORT pattern).
 */
export function namedPorts(
  cfg: PortsConfig,
  blockStart: number,
): Record<string, number> {
  const out: Record<string, number> = {
    PORT: blockStart,
    APP_PORT: blockStart,
  };
  for (const [name, rule] of Object.entries(cfg.names)) {
    out[name] =
      typeof rule === 'number'
        ? blockStart + rule
        : rule.base + (blockStart - cfg.base);
  }
  return out;
}

/** Every port a slot with this block would use: the whole block plus rule ports outside it. */
export function portsOfBlock(cfg: PortsConfig, blockStart: number): number[] {
  const ports = new Set<number>();
  for (let p = blockStart; p < blockStart + cfg.blockSize; p++) ports.add(p);
  for (const p of Object.values(namedPorts(cfg, blockStart))) ports.add(p);
  return [...ports].sort((a, b) => a - b);
}

/** Hosts a port is test-bound on: loopback and the wildcard address, as dev servers use both. */
export const BIND_HOSTS = ['127.0.0.1', '0.0.0.0'] as const;

/** True when nothing listens on `port` at `host` (we could bind it exclusively, and did release it). */
export function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () =>
      srv.close(() => resolve(true)),
    );
  });
}

/** The ports of `ports` that cannot be bound on every host of BIND_HOSTS. */
export async function busyPorts(ports: readonly number[]): Promise<number[]> {
  const busy: number[] = [];
  for (const p of ports) {
    for (const host of BIND_HOSTS) {
      if (!(await canBind(p, host))) {
        busy.push(p);
        break;
      }
    }
  }
  return busy;
}

/**
 * The lowest block start not overlapping `held` and not in `skip`; undefined when none is left.
 * Pure: the caller runs it inside the allocation transaction.
 */
export function pickBlock(
  cfg: PortsConfig,
  held: ReadonlyArray<readonly [number, number]>,
  skip: ReadonlySet<number>,
): number | undefined {
  for (const start of blockStarts(cfg)) {
    if (skip.has(start)) continue;
    const end = start + cfg.blockSize;
    if (held.some(([s, e]) => start < e && s < end)) continue;
    return start;
  }
  return undefined;
}

export function portsExhausted(
  cfg: PortsConfig,
  busyBlocks: ReadonlyMap<number, number[]>,
): SupervisorError {
  const starts = blockStarts(cfg);
  const last = (starts.at(-1) ?? cfg.base) + cfg.blockSize - 1;
  const busy = [...busyBlocks.entries()].map(
    ([s, ports]) =>
      `${s} (port ${ports.slice(0, 3).join(', ')}${ports.length > 3 ? ', …' : ''} in use)`,
  );
  return new SupervisorError(
    'ERR_SUP_ENV_EXHAUSTED',
    `no free port block: all ${starts.length} blocks of ${cfg.blockSize} ports in ${cfg.base}..${last} are allocated to other slots` +
      (busy.length ? ` or in use by other programs (${busy.join('; ')})` : ''),
    {
      hint: 'raise env.ports.maxBlocks or move env.ports.base in supervisor.config.json, stop the programs holding those ports, or release the blocks of removed slots with `supervisor cleanup`',
    },
  );
}
