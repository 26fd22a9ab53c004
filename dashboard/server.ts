import type { Daemon, Logger } from '../supervisor/daemon.js';

/** Placeholder until the dashboard issue lands. */
export async function attachDashboard(_daemon: Daemon, _log: Logger): Promise<void> {}
