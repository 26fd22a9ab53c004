import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { SupervisorError } from '../errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The merge queue is serial across processes (`supervisor land` and a running supervisor with
 * land.auto): one lock file holding the lander's pid. A lock whose process died (kill -9) is
 * taken over; what it left half done is repaired from git before anything else.
 */
export class LandLock {
  private held = false;
  readonly file: string;

  constructor(runDir: string) {
    this.file = join(runDir, 'land.lock');
  }

  tryAcquire(): boolean {
    for (let i = 0; i < 2; i++) {
      try {
        const fd = openSync(this.file, 'wx', 0o600);
        writeSync(fd, String(process.pid));
        closeSync(fd);
        this.held = true;
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = Number(readFileSafe(this.file));
      if (holder === process.pid) return false;
      if (holder > 0 && alive(holder)) return false;
      rmSync(this.file, { force: true });
    }
    return false;
  }

  async acquire(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.tryAcquire()) {
      if (Date.now() > until)
        throw new SupervisorError(
          'ERR_SUP_LAND_BUSY',
          `another lander (pid ${readFileSafe(this.file) || '?'}) holds the merge queue`,
          {
            hint: 'wait for it to finish (supervisor issue list shows issues in "landing"), then run the command again',
          },
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  release(): void {
    if (!this.held) return;
    this.held = false;
    if (Number(readFileSafe(this.file)) === process.pid)
      rmSync(this.file, { force: true });
  }
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
