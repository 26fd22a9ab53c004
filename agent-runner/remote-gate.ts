/**
 * Keeps a runner off the queue while something it needs is missing — a remote-mode runner's git
 * remote (unreachable, credentials refused), the agent's program (not installed): one probe at
 * start, then probes with exponential backoff until it is back. The runner pauses its worker on
 * `onBlocked` and resumes on `onClear`.
 */
export class RemoteGate {
  private errorText: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private delay: number;
  private closed = false;

  constructor(
    private readonly probe: () => Promise<void>,
    private readonly o: {
      onBlocked: (error: string) => void;
      onClear: () => void;
      log: (msg: string, fields?: Record<string, unknown>) => void;
      /** @defaultValue 1000 */
      minDelayMs?: number;
      /** @defaultValue 30000 */
      maxDelayMs?: number;
      /** What the log says when blocked and when clear (default: about the git remote). */
      messages?: { blocked: string; clear: string };
    },
  ) {
    this.delay = o.minDelayMs ?? 1000;
  }

  /** Why the runner does not take jobs, or undefined when the remote answers. */
  get error(): string | undefined {
    return this.errorText;
  }

  get blocked(): boolean {
    return this.errorText !== undefined;
  }

  /** Probes now; returns whether the remote answered (otherwise the gate is blocked). */
  async check(): Promise<boolean> {
    try {
      await this.probe();
      return true;
    } catch (err) {
      this.block(err as Error);
      return false;
    }
  }

  /** Stops taking jobs until a probe succeeds. */
  block(err: Error): void {
    const first = this.errorText === undefined;
    this.errorText = err.message;
    if (!first || this.closed) return;
    this.delay = this.o.minDelayMs ?? 1000;
    this.o.log(
      this.o.messages?.blocked ??
        'git remote unavailable: not taking jobs until it answers',
      {
        error: err.message,
      },
    );
    this.o.onBlocked(err.message);
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.retry(), this.delay);
    this.timer.unref();
  }

  private async retry(): Promise<void> {
    try {
      await this.probe();
    } catch (err) {
      this.errorText = (err as Error).message;
      this.delay = Math.min(this.delay * 2, this.o.maxDelayMs ?? 30_000);
      this.schedule();
      return;
    }
    if (this.closed) return;
    this.errorText = undefined;
    this.o.log(
      this.o.messages?.clear ?? 'git remote answers again: taking jobs',
    );
    this.o.onClear();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
