import type { Context } from '../context.js';
import { coerceError } from '../errors.js';
import { refreshMergeStates } from './merge-state.js';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

/**
 * The landing side of a running supervisor: keeps `behind` and `mergeable` of done issues in
 * step with the base tip (one rev-parse per tick when nothing moved).
 */
export class LandService {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly ctx: Context,
    private readonly log: Log,
    private readonly intervalMs = 2_000,
  ) {}

  start(): void {
    const loop = () => {
      if (this.closed) return;
      this.running = this.tick().finally(() => {
        if (!this.closed) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Runs one round now (tests, and after something landed). */
  async tick(): Promise<void> {
    try {
      await refreshMergeStates(this.ctx);
    } catch (err) {
      this.log('landing: refresh failed', { error: coerceError(err).message });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
