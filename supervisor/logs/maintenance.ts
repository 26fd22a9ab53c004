import type { Daemon, Logger } from '../daemon.js';
import { pruneLogs, rotateRunnerLogs } from './retention.js';

const ROTATE_EVERY_MS = 30_000;
const PRUNE_EVERY_MS = 3_600_000;

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * The running supervisor keeps logs bounded: runner logs rotated past `logs.runnerMaxBytes`
 * (checked every 30 s), logs older than `logs.keep` deleted at start and hourly.
 */
export function maintainLogs(daemon: Daemon, log: Logger): void {
  const { paths, config } = daemon.ctx;
  const c = config.logs;
  const rotate = () => {
    try {
      const rotated = rotateRunnerLogs(
        paths.logDir,
        c.runnerMaxBytes,
        c.runnerFiles,
      );
      if (rotated.length) log(`rotated ${rotated.join(', ')}`);
    } catch (err) {
      log('log rotation failed', { error: (err as Error).message });
    }
  };
  const prune = () => {
    try {
      const r = pruneLogs(paths.logDir, c.keep);
      if (r.files)
        log(
          `deleted ${r.files} log file${r.files === 1 ? '' : 's'} older than logs.keep (${mib(r.bytes)})`,
        );
    } catch (err) {
      log('log retention failed', { error: (err as Error).message });
    }
  };
  prune();
  rotate();
  const timers = [
    setInterval(rotate, ROTATE_EVERY_MS),
    setInterval(prune, PRUNE_EVERY_MS),
  ];
  for (const t of timers) t.unref();
  daemon.once('stopped', () => timers.forEach((t) => clearInterval(t)));
}
