import type { Context } from './context.js';
import type { Daemon, Logger } from './daemon.js';

/**
 * The optional parts a running control plane gets: per-slot environments and the dashboard.
 * Kept here so that `start` wires them in one place.
 */
export async function attachExtensions(_daemon: Daemon, _log: Logger): Promise<void> {
  // Filled in by the environment and dashboard modules.
}

/** Extra per-agent fields for `supervisor status`. */
export async function statusExtras(_ctx: Context): Promise<{ envFor?: (agentId: string) => unknown }> {
  return {};
}

/** Releases what a slot was allocated (ports, Redis DB, databases with `dropDatabases`). */
export async function releaseSlotEnv(_ctx: Context, _agentId: string, _opts: { dropDatabases: boolean }): Promise<void> {
  // Filled in by the environment module.
}
