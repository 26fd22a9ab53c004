import type { Redis } from 'ioredis';
import { RunnerEventSchema, type RunnerEvent } from '../../contract/job.js';
import { getSetting, setSetting, type Db } from '../store/db.js';

/**
 * Reads the runners' event stream from the last id persisted in SQLite, in batches. Each batch is
 * handed to `handle` (which runs it through the recorder's serial chain) with the id to persist
 * once its events are recorded, so a restart resumes where recording stopped.
 */
export class RunnerEventStream {
  private closed = false;

  constructor(
    private readonly conn: Redis,
    private readonly key: string,
    private readonly db: Db,
    private readonly handle: (
      events: RunnerEvent[],
      persist: () => void,
    ) => Promise<void>,
  ) {}

  start(): void {
    void this.read();
  }

  close(): void {
    this.closed = true;
    this.conn.disconnect();
  }

  private async read(): Promise<void> {
    let lastId = getSetting(this.db, 'events_last_id') ?? '0';
    while (!this.closed) {
      let res: Array<[string, Array<[string, string[]]>]> | null;
      try {
        res = (await this.conn.xread(
          'COUNT',
          500,
          'BLOCK',
          1000,
          'STREAMS',
          this.key,
          lastId,
        )) as typeof res;
      } catch {
        if (this.closed) return;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      const entries = res?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      const batchLast = entries[entries.length - 1]![0];
      const events: RunnerEvent[] = [];
      for (const [, fields] of entries) {
        const raw = fields[1];
        if (!raw) continue;
        const parsed = RunnerEventSchema.safeParse(safeJson(raw));
        if (parsed.success) events.push(parsed.data);
      }
      await this.handle(events, () =>
        setSetting(this.db, 'events_last_id', batchLast),
      );
      lastId = batchLast;
    }
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
