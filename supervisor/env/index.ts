import type { Context } from '../context.js';
import type { Daemon, Logger } from '../daemon.js';

/**
 * Per-slot dev environments on shared infrastructure (ports, Redis DB, Postgres database).
 * Placeholder until the environments issue lands: allocates nothing.
 */
export async function attachEnvironments(_daemon: Daemon, _log: Logger): Promise<void> {}

export async function envStatus(_ctx: Context): Promise<(agentId: string) => unknown> {
  return () => undefined;
}

export async function releaseEnvironment(_ctx: Context, _agentId: string, _opts: { dropDatabases: boolean }): Promise<void> {}
